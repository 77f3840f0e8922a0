"""Who may see what: principals, tokens, responsibility scopes, the audit log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, true
from sqlmodel import Session, col, select

from tonerwatch_api.db.alerting import UserAlerting
from tonerwatch_api.db.groups import PrinterGroupMember
from tonerwatch_api.db.models import ApiToken, AuditEntry, Printer, Tenant, User
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.security import token_hash, verify_password


def user_scope(session: Session, user_id: int) -> list[str]:
    """Return the sites a user is responsible for (see user_groups: both empty, every site)."""
    row = session.get(UserAlerting, user_id)
    return list(row.sites or []) if row else []


def user_groups(session: Session, user_id: int) -> list[int]:
    """Return the printer groups a user is responsible for."""
    row = session.get(UserAlerting, user_id)
    return list(row.groups or []) if row else []


@dataclass(frozen=True)
class Scope:
    """What a user answers for: printers of these sites, and these printer groups' printers."""

    sites: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()

    @property
    def everything(self) -> bool:
        """Return whether no site nor group is chosen, which means every site of the tenant."""
        return not self.sites and not self.groups


@dataclass(frozen=True)
class Principal:
    """Who is calling: user, role, tenant, token scopes and how they authenticated."""

    user_id: int
    username: str
    role: str
    tenant_id: str
    scopes: frozenset[str]
    via: str  # "bearer" or "session"
    token_hash: str
    # Set when a provider acts in a customer tenant (tenant_id): the provider's own tenant.
    home_tenant_id: str | None = None

    @property
    def own_tenant_id(self) -> str:
        """Return the tenant the user belongs to (not the one they act in)."""
        return self.home_tenant_id or self.tenant_id


class NotProvider(Exception):
    """Someone other than a provider asked to act in another tenant."""


def act_in(session: Session, who: Principal, tenant_id: str) -> Principal:
    """Return who acting in tenant_id: only a provider may leave their own tenant (NotProvider),
    and only into a tenant that exists (NotFound); every domain call then scopes to it."""
    home = who.own_tenant_id
    if tenant_id == home:
        return replace(who, tenant_id=home, home_tenant_id=None)
    if who.role != "provider":
        raise NotProvider(f"only a provider may act in another tenant (you are {who.role})")
    if session.get(Tenant, tenant_id) is None:
        raise NotFound(f"tenant {tenant_id!r} not found")
    return replace(who, tenant_id=tenant_id, home_tenant_id=home)


def authenticate(session: Session, token: str, now: datetime) -> Principal | None:
    """Return the principal behind a bearer or session token, None when unknown/expired/revoked."""
    digest = token_hash(token)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled or _tenant_disabled(session, user.tenant_id):
        return None
    # One write a minute at most: last_used_at is for humans, not an audit trail.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
        session.add(row)
    who = Principal(
        user_id=user.id or 0,
        username=user.username,
        role=user.role,
        tenant_id=user.tenant_id,
        scopes=frozenset(row.scopes.split()),
        via="session" if row.kind == "session" else "bearer",
        token_hash=digest,
    )
    if row.acting_tenant_id and user.role == "provider":
        try:
            return act_in(session, who, row.acting_tenant_id)
        except NotFound:
            return who  # the customer was deleted meanwhile: back home
    return who


def still_allowed(session: Session, who: Principal, now: datetime) -> str | None:
    """Return why who's token no longer admits them (revoked, expired, user disabled or deleted,
    tenant disabled, role lowered), or None while it still does.

    Long-lived answers (the live alert stream) ask this again for every frame they send."""
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == who.token_hash)).first()
    if row is None or row.revoked_at is not None:
        return "logged out"
    if row.expires_at is not None and row.expires_at <= now:
        return "session expired"
    user = session.get(User, who.user_id)
    if user is None:
        return "user deleted"
    if user.disabled:
        return "user disabled"
    if _tenant_disabled(session, user.tenant_id) or _tenant_disabled(session, who.tenant_id):
        return "tenant disabled"
    if user.role != who.role:
        return "role changed"
    return None


def _tenant_disabled(session: Session, tenant_id: str) -> bool:
    tenant = session.get(Tenant, tenant_id)
    return tenant is not None and tenant.disabled


def switch_session(session: Session, who: Principal, tenant_id: str) -> Principal:
    """Make who's session act in tenant_id from now on (its own tenant: back home); return who
    acting there."""
    acting = act_in(session, who, tenant_id)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == who.token_hash)).first()
    if row is not None:
        row.acting_tenant_id = acting.home_tenant_id and acting.tenant_id
        session.add(row)
    audit(session, acting, "tenant.switch", acting.tenant_id)
    return acting


def issue_token(
    session: Session,
    user: User,
    token: str,
    *,
    kind: str,
    scopes: Sequence[str],
    expires_at: datetime | None,
    name: str | None = None,
) -> ApiToken:
    """Store (the hash of) a new token for user; return the row."""
    row = ApiToken(
        user_id=user.id or 0,
        token_hash=token_hash(token),
        kind=kind,
        name=name,
        scopes=" ".join(scopes),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row


def revoke_token_hash(session: Session, digest: str, now: datetime) -> None:
    """Revoke the token with this hash (logout)."""
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
        session.add(row)


def audit(
    session: Session, who: Principal | None, action: str, target: str | None, **detail: Any
) -> None:
    """Record a change (never pass secrets in detail)."""
    session.add(
        AuditEntry(
            username=who.username if who else None,
            tenant_id=who.tenant_id if who else None,
            actor_tenant_id=who.home_tenant_id if who else None,
            action=action,
            target=target,
            detail=detail or None,
        )
    )


def responsibility(session: Session, user_id: int) -> Scope:
    """Return the sites and printer groups a user answers for (neither: everything)."""

    return Scope(tuple(user_scope(session, user_id)), tuple(user_groups(session, user_id)))


def responsibility_of(session: Session, who: Principal) -> Scope:
    """Return what who answers for where they act: a provider in a customer's tenant answers for
    none of its sites or groups in particular, so everything of it."""
    if who.home_tenant_id is not None:
        return Scope()
    return responsibility(session, who.user_id)


def in_scope(scope: Scope, site_column: Any, printer_column: Any) -> ColumnElement[bool]:
    """Return the condition: the row's site or printer (through its groups) is the user's."""
    if scope.everything:
        return true()
    # site_column may be an expression (an alert's own site or its printer's), not only a column.
    by_site: ColumnElement[bool] = site_column.in_(list(scope.sites))
    if not scope.groups:
        return by_site
    return or_(by_site, printer_column.in_(_group_members(scope.groups)))


def _group_members(group_ids: Sequence[int]) -> Any:
    """Return the select of the printer ids in any of group_ids."""

    return select(PrinterGroupMember.printer_id).where(
        col(PrinterGroupMember.group_id).in_(list(group_ids))
    )


def members_of(session: Session, group_ids: Iterable[int]) -> dict[int, set[str]]:
    """Return the live printers of each group (every tenant's group id is unique)."""
    ids = list(group_ids)
    out: dict[int, set[str]] = {g: set() for g in ids}
    if not ids:
        return out
    q = (
        select(PrinterGroupMember.group_id, PrinterGroupMember.printer_id)
        .join(Printer, col(Printer.id) == col(PrinterGroupMember.printer_id))
        .where(col(PrinterGroupMember.group_id).in_(ids), col(Printer.removed_at).is_(None))
    )
    for gid, pid in session.exec(q).all():
        out[gid].add(pid)
    return out


def sites_of_groups(session: Session, group_ids: Iterable[int]) -> set[str]:
    """Return the sites holding a live printer of one of group_ids."""
    ids = list(group_ids)
    if not ids:
        return set()
    q = (
        select(Printer.site_id)
        .join(PrinterGroupMember, col(PrinterGroupMember.printer_id) == col(Printer.id))
        .where(col(PrinterGroupMember.group_id).in_(ids), col(Printer.removed_at).is_(None))
        .distinct()
    )
    return set(session.exec(q).all())


def password_login(
    session: Session,
    username: str,
    password: str,
    secret: str,
    *,
    kind: str,
    scopes: Sequence[str],
    expires_at: datetime,
) -> bool:
    """Store a token with this secret when username and password match an enabled user; return
    whether they did (one password check either way: an unknown name costs the same)."""
    user = session.exec(select(User).where(User.username == username)).first()
    if not verify_password(user.password_hash if user else None, password) or user is None:
        return False
    if user.disabled or _tenant_disabled(session, user.tenant_id):
        return False
    issue_token(session, user, secret, kind=kind, scopes=scopes, expires_at=expires_at)
    return True
