"""REST /users."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from tonerwatch_api.db.alerting import UserAlerting
from tonerwatch_api.db.models import ApiToken, User
from tonerwatch_api.db.tx import create_user as make
from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import (
    CONFLICT,
    ERRORS,
    Admin,
    Page,
    UserId,
    app_state,
    change,
    page_of,
)
from tonerwatch_api.domain.access import audit
from tonerwatch_api.domain.alert_settings import (
    reannounce,
    set_user_alerting,
    sites_mailing,
    tenant_user,
)
from tonerwatch_api.domain.errors import Conflict
from tonerwatch_api.listing import Listing, field
from tonerwatch_api.schemas.alert_settings import UserAlertingIn
from tonerwatch_api.schemas.common import (
    UserIn,
    UserOut,
    UserPage,
    UserPatch,
)
from tonerwatch_api.security import hash_password

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")


def _user_out(u: User) -> UserOut:
    return UserOut(
        id=u.id or 0,
        username=u.username,
        role=u.role,
        tenant_id=u.tenant_id,
        disabled=u.disabled,
        created_at=u.created_at,
    )


USERS = Listing(
    fields={
        "id": field(col(User.id), "int"),
        "username": field(col(User.username), "str"),
        "role": field(col(User.role), "str"),
        "created_at": field(col(User.created_at), "datetime"),
    },
    default="username",
)
UsersAsked = Annotated[Page, page_of(USERS, "Users", limit=100, most=500)]


@router.get("/users", response_model=UserPage, tags=["users"], responses=ERRORS)
async def list_users(
    request: Request,
    who: Admin,
    page: UsersAsked,
    role: Annotated[
        Literal["admin", "operator", "viewer"] | None, Query(description="Only this role")
    ] = None,
    disabled: Annotated[bool | None, Query(description="Only (not) disabled users")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of the username")] = None,
) -> UserPage:
    """Return the users of the caller's tenant, a page at a time."""

    def work(s: Session) -> UserPage:
        base = select(User).where(User.tenant_id == who.tenant_id)
        if role:
            base = base.where(User.role == role)
        if disabled is not None:
            base = base.where(User.disabled == disabled)
        if q:
            base = base.where(
                func.lower(col(User.username)).contains(q.strip().lower(), autoescape=True)
            )
        rows, nxt = USERS.fetch(s, base, page.order, page.cursor, page.limit)
        return UserPage(items=[_user_out(u) for u in rows], next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


@router.get("/users/{user_id}", response_model=UserOut, tags=["users"], responses=ERRORS)
async def get_user(request: Request, user_id: UserId, who: Admin) -> UserOut:
    """Return one user of the caller's tenant."""
    return await run_tx(
        app_state(request).engine,
        lambda s: _user_out(tenant_user(s, who.tenant_id, user_id)),
    )


@router.patch(
    "/users/{user_id}", response_model=UserOut, tags=["users"], responses={**ERRORS, **CONFLICT}
)
async def update_user(request: Request, user_id: UserId, body: UserPatch, who: Admin) -> UserOut:
    """Change a user's role, password or disabled flag (a new password or disabling ends sessions)."""
    st = app_state(request)

    def work(s: Session) -> UserOut:
        user = tenant_user(s, who.tenant_id, user_id)
        demoted = body.role is not None and body.role != "admin"
        if user.role == "admin" and (demoted or body.disabled) and _last_admin(s, user):
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
            _revoke_all(s, user)
        s.add(user)
        if "disabled" in changed:
            # A disabled user gets no alert mail: the alerter hears the sites' new recipients.
            reannounce(s, sites_mailing(s, user), st.source)
        if changed:
            audit(s, who, "user.update", user.username, **changed)
        return _user_out(user)

    out = await change(st, work)
    return out


@router.delete(
    "/users/{user_id}", status_code=204, tags=["users"], responses={**ERRORS, **CONFLICT}
)
async def delete_user(request: Request, user_id: UserId, who: Admin) -> Response:
    """Delete a user with their sessions and tokens (not yourself, not the last admin)."""
    st = app_state(request)

    def work(s: Session) -> None:
        user = tenant_user(s, who.tenant_id, user_id)
        if user.id == who.user_id:
            raise Conflict("you cannot delete yourself; another admin can")
        if user.role == "admin" and _last_admin(s, user):
            raise Conflict("the tenant's last active admin cannot be deleted")
        mailed = sites_mailing(s, user)
        for t in s.exec(select(ApiToken).where(ApiToken.user_id == user.id)).all():
            s.delete(t)
        profile = s.get(UserAlerting, user.id)
        if profile is not None:
            s.delete(profile)
        s.delete(user)
        reannounce(s, mailed, st.source)
        audit(s, who, "user.delete", user.username)

    await change(st, work)
    return Response(status_code=204)


def _last_admin(s: Session, user: User) -> bool:
    others = s.exec(
        select(func.count())
        .select_from(User)
        .where(
            User.tenant_id == user.tenant_id,
            User.role == "admin",
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


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    tags=["users"],
    responses={**ERRORS, **CONFLICT},
)
async def create_user(request: Request, body: UserIn, who: Admin) -> UserOut:
    """Create a user in the caller's tenant."""

    def work(s: Session) -> UserOut:
        if s.exec(select(User).where(User.username == body.username)).first() is not None:
            raise Conflict(f"username {body.username!r} is taken")

        user = make(s, body.username, body.password, body.role, who.tenant_id)
        audit(s, who, "user.create", body.username, role=body.role)
        if body.email or body.responsible_sites or body.responsible_groups:
            profile = UserAlertingIn(
                email=body.email,
                responsible_sites=body.responsible_sites,
                responsible_groups=body.responsible_groups,
            )
            set_user_alerting(s, who, user, profile, st.source)
        return _user_out(user)

    st = app_state(request)
    out = await change(st, work)
    return out
