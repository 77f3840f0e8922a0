"""UI login and logout."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import SESSION_COOKIE, app_state, client_ip
from tonerwatch_api.domain.access import password_login, revoke_token_hash
from tonerwatch_api.domain.login_limits import too_many_message
from tonerwatch_api.security import new_token
from tonerwatch_api.ui.common import (
    LOGIN_CSRF_COOKIE,
    _check_csrf,
    _cookie_secure,
    _safe_next,
    render,
    ui_user,
)

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/", error: str | None = None) -> Response:
    """The login form (double-submit CSRF cookie)."""
    return _login_form(request, _safe_next(next), error)


def _login_form(
    request: Request, next_url: str, error: str | None, status: int = 200, message: str = ""
) -> Response:
    st = app_state(request)
    token = secrets.token_urlsafe(24)
    resp = render(
        request,
        "login.html",
        None,
        status=status,
        next=next_url,
        login_csrf=token,
        error=error,
        message=message,
    )
    resp.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(request, st),
        path="/login",
    )
    return resp


@router.post("/login")
async def login_submit(request: Request) -> Response:
    """Check the password, start a session, go where the user wanted."""
    st = app_state(request)
    form = await request.form()
    data = {k: v for k, v in form.items() if isinstance(v, str)}
    next_url = _safe_next(data.get("next"))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not secrets.compare_digest(cookie, data.get("login_csrf", "")):
        return RedirectResponse(f"/login?next={quote(next_url)}&error=expired", status_code=303)
    username, password = data.get("username", ""), data.get("password", "")
    ip = client_ip(request)
    attempt = await st.login_limiter.start(username, ip)
    if (wait := attempt.retry_after) is not None:
        # Refused before the password is checked, so guessing gains nothing while blocked.
        resp = _login_form(request, next_url, "throttled", 429, too_many_message(wait))
        resp.headers["Retry-After"] = str(wait)
        return resp
    token = new_token()
    expires = datetime.now(UTC) + timedelta(hours=st.settings.session_ttl_h)

    def login(s: Session) -> bool:
        return password_login(
            s,
            username,
            password,
            token,
            kind="session",
            scopes=("read", "write"),
            expires_at=expires,
        )

    if not await run_tx(st.engine, login):
        await st.login_limiter.failed(attempt)
        return RedirectResponse(f"/login?next={quote(next_url)}&error=invalid", status_code=303)
    await st.login_limiter.succeeded(attempt)
    resp = RedirectResponse(next_url, status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(st.settings.session_ttl_h * 3600),
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(request, st),
        path="/",
    )
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session."""
    who = await ui_user(request)
    await _check_csrf(request, who)
    now = datetime.now(UTC)
    await run_tx(app_state(request).engine, lambda s: revoke_token_hash(s, who.token_hash, now))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
