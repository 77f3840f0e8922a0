"""Customer tenants, managed by the provider: created with a first site and admin, listed, renamed,
disabled (users and tokens refused, data kept) and deleted only when empty."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from tonerwatch_api.db.alerting import UserAlerting
from tonerwatch_api.db.groups import PrinterGroup
from tonerwatch_api.db.models import ApiToken, Site, Tenant, User
from tonerwatch_api.db.tx import DEFAULT_TENANT
from tonerwatch_api.domain.access import Principal, audit
from tonerwatch_api.domain.errors import Conflict, NotFound
from tonerwatch_api.domain.sites import add_site
from tonerwatch_api.domain.users import add_user
from tonerwatch_api.listing import Listing, Page, field
from tonerwatch_api.schemas.common import UserIn
from tonerwatch_api.schemas.tenants import (
    TenantCreated,
    TenantIn,
    TenantOut,
    TenantPage,
    TenantPatch,
)
from tonerwatch_api.security import generate_password

# The provider's own tenant: where the bootstrap user 'admin' lives (never disabled nor deleted).
PROVIDER_TENANT = DEFAULT_TENANT

TENANTS = Listing(
    fields={
        "id": field(col(Tenant.id), "str"),
        "name": field(col(Tenant.name), "str"),
        "created_at": field(col(Tenant.created_at), "datetime"),
    },
    default="id",
)


def _counts(session: Session, column: Any, ids: list[str]) -> dict[str, int]:
    tenant_col = col(column)
    q = select(tenant_col, func.count()).where(tenant_col.in_(ids)).group_by(tenant_col)
    return {str(t): int(n) for t, n in session.exec(q).all()}


def _outs(session: Session, tenants: list[Tenant]) -> list[TenantOut]:
    ids = [t.id for t in tenants]
    sites = _counts(session, Site.tenant_id, ids)
    users = _counts(session, User.tenant_id, ids)
    return [
        TenantOut(
            id=t.id,
            name=t.name,
            disabled=t.disabled,
            provider=t.id == PROVIDER_TENANT,
            sites=sites.get(t.id, 0),
            users=users.get(t.id, 0),
            created_at=t.created_at,
        )
        for t in tenants
    ]


def tenant_page(
    session: Session, page: Page, *, disabled: bool | None = None, q: str | None = None
) -> TenantPage:
    """Return one page of every tenant (the provider's own among them) matching the filters."""
    base = select(Tenant)
    if disabled is not None:
        base = base.where(Tenant.disabled == disabled)
    if q:
        needle = q.strip().lower()
        base = base.where(
            func.lower(col(Tenant.name)).contains(needle, autoescape=True)
            | col(Tenant.id).contains(needle, autoescape=True)
        )
    rows, nxt = TENANTS.fetch(session, base, page.order, page.cursor, page.limit)
    return TenantPage(items=_outs(session, list(rows)), next_cursor=nxt)


def one_tenant(session: Session, tenant_id: str) -> TenantOut:
    """Return one tenant with its counts."""
    return _outs(session, [_tenant(session, tenant_id)])[0]


def _tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id!r} not found")
    return tenant


def _at_home(who: Principal) -> Principal:
    # Tenant management is the provider's business: audited in the provider's own tenant.
    return replace(who, tenant_id=who.own_tenant_id, home_tenant_id=None)


def add_tenant(session: Session, who: Principal, body: TenantIn, source: str) -> TenantCreated:
    """Create a customer tenant with its first site and admin when given; return them (with the
    admin's password when it was generated: shown this once)."""
    if session.get(Tenant, body.id) is not None:
        raise Conflict(f"tenant id {body.id!r} is taken")
    session.add(Tenant(id=body.id, name=body.name))
    session.flush()
    audit(session, _at_home(who), "tenant.create", body.id, name=body.name)
    inside = replace(who, tenant_id=body.id, home_tenant_id=who.own_tenant_id)
    site = add_site(session, inside, body.site, source) if body.site else None
    admin, generated = None, None
    if body.admin is not None:
        generated = None if body.admin.password else generate_password()
        first = UserIn(
            username=body.admin.username,
            password=body.admin.password or generated or "",
            role="admin",
            email=body.admin.email,
        )
        admin = add_user(session, inside, first, source)
    return TenantCreated(
        tenant=one_tenant(session, body.id), site=site, admin=admin, admin_password=generated
    )


def change_tenant(session: Session, who: Principal, tenant_id: str, body: TenantPatch) -> TenantOut:
    """Rename a tenant and/or (re-)enable it; the provider's own tenant cannot be disabled."""
    tenant = _tenant(session, tenant_id)
    home = _at_home(who)
    if body.name is not None and body.name != tenant.name:
        tenant.name = body.name
        audit(session, home, "tenant.rename", tenant.id, name=body.name)
    if body.disabled is not None and body.disabled != tenant.disabled:
        if body.disabled and tenant.id == PROVIDER_TENANT:
            raise Conflict("the provider's own tenant cannot be disabled")
        tenant.disabled = body.disabled
        audit(session, home, "tenant.disable" if body.disabled else "tenant.enable", tenant.id)
    session.add(tenant)
    session.flush()
    return one_tenant(session, tenant.id)


def remove_tenant(session: Session, who: Principal, tenant_id: str) -> None:
    """Delete an empty tenant (no sites, no printer groups) with its users; never the provider's."""
    tenant = _tenant(session, tenant_id)
    if tenant.id == PROVIDER_TENANT:
        raise Conflict("the provider's own tenant cannot be deleted")
    if session.exec(select(Site.id).where(Site.tenant_id == tenant.id)).first() is not None:
        raise Conflict(f"tenant {tenant.id!r} still has sites; delete them first")
    groups = select(PrinterGroup.id).where(PrinterGroup.tenant_id == tenant.id)
    if session.exec(groups).first() is not None:
        raise Conflict(f"tenant {tenant.id!r} still has printer groups; delete them first")
    users = session.exec(select(User).where(User.tenant_id == tenant.id)).all()
    ids = [u.id for u in users]
    for token in session.exec(select(ApiToken).where(col(ApiToken.user_id).in_(ids))).all():
        session.delete(token)
    for profile in session.exec(select(UserAlerting).where(col(UserAlerting.user_id).in_(ids))):
        session.delete(profile)
    session.flush()
    for user in users:
        session.delete(user)
    session.flush()
    session.delete(tenant)
    audit(session, _at_home(who), "tenant.delete", tenant.id, users=len(users))
