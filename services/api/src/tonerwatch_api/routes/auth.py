"""REST /auth and /me: tokens for a username and password, logout, who am I."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import ERRORS, Viewer, app_state, client_ip
from tonerwatch_api.domain.access import password_login, revoke_token_hash
from tonerwatch_api.domain.login_limits import too_many_message
from tonerwatch_api.schemas.common import MeOut, TokenForm, TokenOut, error_response
from tonerwatch_api.security import new_token

router = APIRouter(prefix="/api/v1")


@router.post(
    "/auth/token",
    response_model=TokenOut,
    tags=["auth"],
    responses={
        401: error_response(401, "Wrong username or password", "wrong username or password"),
        429: error_response(
            429,
            "Too many failed logins for the user or address; see Retry-After",
            too_many_message(60),
        ),
    },
)
async def login_token(request: Request, form: Annotated[TokenForm, Form()]) -> TokenOut:
    """OAuth2 password flow: exchange username and password for a bearer token."""
    username, password, scope = form.username, form.password, form.scope
    st = app_state(request)
    ip = client_ip(request)
    attempt = await st.login_limiter.start(username, ip)
    if (wait := attempt.retry_after) is not None:
        # Refused before the password is checked: a guess made now would not be tried at all.
        raise HTTPException(429, too_many_message(wait), headers={"Retry-After": str(wait)})
    scopes = [s for s in scope.split() if s in ("read", "write")] or ["read"]
    token = new_token()
    now = datetime.now(UTC)
    expires = now + timedelta(hours=st.settings.token_ttl_h)

    def login(s: Session) -> bool:
        return password_login(
            s, username, password, token, kind="access", scopes=scopes, expires_at=expires
        )

    if not await run_tx(st.engine, login):
        await st.login_limiter.failed(attempt)
        raise HTTPException(
            401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"}
        )
    await st.login_limiter.succeeded(attempt)
    return TokenOut(access_token=token, expires_at=expires)


@router.post("/auth/logout", status_code=204, tags=["auth"], responses=ERRORS)
async def logout(request: Request, who: Viewer) -> Response:
    """Revoke the token (or session) used for this request."""
    now = datetime.now(UTC)
    await run_tx(app_state(request).engine, lambda s: revoke_token_hash(s, who.token_hash, now))
    return Response(status_code=204)


@router.get("/me", response_model=MeOut, tags=["auth"], responses=ERRORS)
async def me(who: Viewer) -> MeOut:
    """Return who the caller is."""
    return MeOut(
        username=who.username,
        role=who.role,
        tenant_id=who.tenant_id,
        scopes=sorted(who.scopes),
        acting_from=who.home_tenant_id,
    )
