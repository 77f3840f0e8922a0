"""Users of a tenant: listed, created, changed (role, password, disabled) and deleted, never the last admin."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from tonerwatch_api.db.alerting import UserAlerting
from tonerwatch_api.db.models import ApiToken, Tenant, User
from tonerwatch_api.db.tx import create_user
from tonerwatch_api.domain.access import Principal, audit
from tonerwatch_api.domain.alert_settings import (
    reannounce,
    set_user_alerting,
    sites_mailing,
    tenant_user,
)
from tonerwatch_api.domain.errors import Conflict
from tonerwatch_api.listing import Listing, Page, field
from tonerwatch_api.schemas.alert_settings import UserAlertingIn
from tonerwatch_api.schemas.common import UserIn, UserOut, UserPage, UserPatch
from tonerwatch_api.security import Role, hash_password

# Who counts as a tenant's admin (a provider is its tenant's admin and more).
ADMINS = ("admin", "provider")

USERS = Listing(
    fields={
        "id": field(col(User.id), "int"),
        "username": field(col(User.username), "str"),
        "role": field(col(User.role), "str"),
        "created_at": field(col(User.created_at), "datetime"),
    },
    default="username",
)


def user_out(u: User) -> UserOut:
    """Return the user as the api shows it (never the password hash)."""
    return UserOut(
        id=u.id or 0,
        username=u.username,
        role=u.role,
        tenant_id=u.tenant_id,
        disabled=u.disabled,
        created_at=u.created_at,
    )


def user_page(
    session: Session,
    tenant_id: str,
    page: Page,
    *,
    role: Role | None = None,
    disabled: bool | None = None,
    q: str | None = None,
) -> UserPage:
    """Return one page of the tenant's users matching the filters."""
    base = select(User).where(User.tenant_id == tenant_id)
    if role:
        base = base.where(User.role == role)
    if disabled is not None:
        base = base.where(User.disabled == disabled)
    if q:
        base = base.where(
            func.lower(col(User.username)).contains(q.strip().lower(), autoescape=True)
        )
    rows, nxt = USERS.fetch(session, base, page.order, page.cursor, page.limit)
    return UserPage(items=[user_out(u) for u in rows], next_cursor=nxt)


def add_user(session: Session, who: Principal, body: UserIn, source: str) -> UserOut:
    """Create a user in who's tenant (with their alert mail and responsibility); return it."""
    if session.exec(select(User).where(User.username == body.username)).first() is not None:
        raise Conflict(f"username {body.username!r} is taken")
    user = create_user(session, body.username, body.password, body.role, who.tenant_id)
    audit(session, who, "user.create", body.username, role=body.role)
    if body.email or body.responsible_sites or body.responsible_groups:
        profile = UserAlertingIn(
            email=body.email,
            responsible_sites=body.responsible_sites,
            responsible_groups=body.responsible_groups,
        )
        set_user_alerting(session, who, user, profile, source)
    return user_out(user)


def change_user(
    session: Session, who: Principal, user_id: int, body: UserPatch, source: str
) -> UserOut:
    """Change a user's role, password or disabled flag (a new password or disabling ends sessions)."""
    user = tenant_user(session, who.tenant_id, user_id)
    demoted = body.role is not None and body.role not in ADMINS
    if user.role in ADMINS and (demoted or body.disabled) and _last_admin(session, user):
        raise Conflict("the tenant's last active admin cannot be demoted or disabled")
    changed: dict[str, object] = {}
    if body.role is not None and body.role != user.role:
        user.role = changed["role"] = body.role
    if body.disabled is not None and body.disabled != user.disabled:
        user.disabled = changed["disabled"] = body.disabled
    if body.password is not None:
        user.password_hash = hash_password(body.password)
        changed["password"] = "changed"  # never the password itself
    if body.password is not None or body.disabled:
        _revoke_all(session, user)
    session.add(user)
    if "disabled" in changed:
        # A disabled user gets no alert mail: the alerter hears the sites' new recipients.
        reannounce(session, sites_mailing(session, user), source)
    if changed:
        audit(session, who, "user.update", user.username, **changed)
    return user_out(user)


def remove_user(session: Session, who: Principal, user_id: int, source: str) -> None:
    """Delete a user with their sessions and tokens (not yourself, not the last admin)."""
    user = tenant_user(session, who.tenant_id, user_id)
    if user.id == who.user_id:
        raise Conflict("you cannot delete yourself; another admin can")
    if user.role in ADMINS and _last_admin(session, user):
        raise Conflict("the tenant's last active admin cannot be deleted")
    mailed = sites_mailing(session, user)
    tokens: Sequence[ApiToken] = session.exec(
        select(ApiToken).where(ApiToken.user_id == user.id)
    ).all()
    for t in tokens:
        session.delete(t)
    profile = session.get(UserAlerting, user.id)
    if profile is not None:
        session.delete(profile)
    session.delete(user)
    reannounce(session, mailed, source)
    audit(session, who, "user.delete", user.username)


def _last_admin(s: Session, user: User) -> bool:
    # Lock the tenant's row first: two admins demoting each other at once are serialized, and
    # the second counts after the first committed (PostgreSQL; SQLite writes one at a time).
    s.exec(select(Tenant.id).where(Tenant.id == user.tenant_id).with_for_update()).first()
    others = s.exec(
        select(func.count())
        .select_from(User)
        .where(
            User.tenant_id == user.tenant_id,
            col(User.role).in_(ADMINS),
            col(User.disabled).is_(False),
            User.id != user.id,
        )
    ).one()
    return int(others) == 0


def _revoke_all(s: Session, user: User) -> None:
    now = datetime.now(UTC)
    live = select(ApiToken).where(ApiToken.user_id == user.id, col(ApiToken.revoked_at).is_(None))
    for t in s.exec(live).all():
        t.revoked_at = now
        s.add(t)


def tenant_users(session: Session, tenant_id: str) -> list[User]:
    """Return the tenant's users by username."""
    q = select(User).where(User.tenant_id == tenant_id).order_by(col(User.username))
    return list(session.exec(q).all())
