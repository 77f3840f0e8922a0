"""REST /users."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import CONFLICT, ERRORS, Admin, UserId, app_state, change, page_of
from tonerwatch_api.domain.alert_settings import tenant_user
from tonerwatch_api.domain.users import (
    USERS,
    add_user,
    change_user,
    remove_user,
    user_out,
    user_page,
)
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.common import UserIn, UserOut, UserPage, UserPatch

router = APIRouter(prefix="/api/v1")


UsersAsked = Annotated[Page, page_of(USERS, "Users", limit=100, most=500)]


@router.get("/users", response_model=UserPage, tags=["users"], responses=ERRORS)
async def list_users(
    request: Request,
    who: Admin,
    page: UsersAsked,
    role: Annotated[
        Literal["provider", "admin", "operator", "viewer"] | None,
        Query(description="Only this role"),
    ] = None,
    disabled: Annotated[bool | None, Query(description="Only (not) disabled users")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of the username")] = None,
) -> UserPage:
    """Return the users of the caller's tenant, a page at a time."""
    return await run_tx(
        app_state(request).engine,
        lambda s: user_page(s, who.tenant_id, page, role=role, disabled=disabled, q=q),
    )


@router.get("/users/{user_id}", response_model=UserOut, tags=["users"], responses=ERRORS)
async def get_user(request: Request, user_id: UserId, who: Admin) -> UserOut:
    """Return one user of the caller's tenant."""
    return await run_tx(
        app_state(request).engine,
        lambda s: user_out(tenant_user(s, who.tenant_id, user_id)),
    )


@router.patch(
    "/users/{user_id}", response_model=UserOut, tags=["users"], responses={**ERRORS, **CONFLICT}
)
async def update_user(request: Request, user_id: UserId, body: UserPatch, who: Admin) -> UserOut:
    """Change a user's role, password or disabled flag (a new password or disabling ends sessions)."""
    st = app_state(request)
    return await change(st, lambda s: change_user(s, who, user_id, body, st.source))


@router.delete(
    "/users/{user_id}", status_code=204, tags=["users"], responses={**ERRORS, **CONFLICT}
)
async def delete_user(request: Request, user_id: UserId, who: Admin) -> Response:
    """Delete a user with their sessions and tokens (not yourself, not the last admin)."""
    st = app_state(request)
    await change(st, lambda s: remove_user(s, who, user_id, st.source))
    return Response(status_code=204)


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    tags=["users"],
    responses={**ERRORS, **CONFLICT},
)
async def create_user(request: Request, body: UserIn, who: Admin) -> UserOut:
    """Create a user in the caller's tenant."""
    st = app_state(request)
    return await change(st, lambda s: add_user(s, who, body, st.source))
