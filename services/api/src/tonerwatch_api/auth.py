"""Who is calling: bearer tokens (OAuth2 password flow) and UI session cookies, roles and scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer

from tonerwatch_api.db import run_tx
from tonerwatch_api.security import Role, csrf_ok, role_at_least
from tonerwatch_api.state import app_state
from tonerwatch_api.store import Principal, authenticate

SESSION_COOKIE = "tw_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def principal_from(request: Request, bearer: str | None) -> tuple[Principal | None, bool]:
    """Return the principal of a bearer token or session cookie (and whether the cookie was used)."""
    token = bearer
    via_cookie = False
    if not token:
        token = request.cookies.get(SESSION_COOKIE)
        via_cookie = bool(token)
    if not token:
        return None, False
    now = datetime.now(UTC)
    engine = app_state(request).engine
    found = await run_tx(engine, lambda s: authenticate(s, token, now))
    return found, via_cookie


async def current_principal(
    request: Request, bearer: Annotated[str | None, Depends(oauth2)]
) -> Principal:
    """Return the authenticated caller or answer 401; cookie-authenticated writes need X-CSRF-Token."""
    principal, via_cookie = await principal_from(request, bearer)
    if principal is None:
        raise HTTPException(
            401,
            "not authenticated: send 'Authorization: Bearer <token>' (get one from "
            "POST /api/v1/auth/token) — a token may also be expired or revoked",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if via_cookie and request.method not in SAFE_METHODS:
        given = request.headers.get("X-CSRF-Token")
        if not csrf_ok(app_state(request).secret, principal.token_hash, given):
            raise HTTPException(
                403, "missing or wrong X-CSRF-Token for a cookie-authenticated write"
            )
    return principal


def need(role: Role, scope: str = "read") -> Callable[..., Awaitable[Principal]]:
    """Return a dependency that admits callers with at least role and the token scope."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if scope not in principal.scopes:
            raise HTTPException(403, f"this token lacks the {scope!r} scope")
        if not role_at_least(principal.role, role):
            raise HTTPException(403, f"needs role {role} or higher (you are {principal.role})")
        return principal

    return check


Viewer = Annotated[Principal, Depends(need("viewer", "read"))]
Operator = Annotated[Principal, Depends(need("operator", "write"))]
Admin = Annotated[Principal, Depends(need("admin", "write"))]
