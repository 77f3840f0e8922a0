"""What every UI page shares: templates, the signed-in user, CSRF, scope labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from tonerwatch_api.db.groups import PrinterGroup
from tonerwatch_api.deps import AppState, app_state, principal_from
from tonerwatch_api.domain.access import Principal, Scope, responsibility_of
from tonerwatch_api.security import csrf_ok, csrf_token, role_at_least
from tonerwatch_api.ui.views import STATUS_LABEL, days_left

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates
    from jinja2 import Environment

HERE = Path(__file__).resolve().parent
LOGIN_CSRF_COOKIE = "tw_login_csrf"

_templates: Jinja2Templates | None = None
_template_setups: list[Callable[[Environment], None]] = []


def templates() -> Jinja2Templates:
    """Return the UI's templates, made at the first page: a process serving only the API never imports Jinja."""
    global _templates
    if _templates is None:
        from fastapi.templating import Jinja2Templates

        made = Jinja2Templates(directory=HERE / "templates")
        for setup in _template_setups:
            setup(made.env)
        _templates = made
    return _templates


def template_setup(setup: Callable[[Environment], None]) -> Callable[[Environment], None]:
    """Register filters and globals to add to the templates' environment when it is made."""
    _template_setups.append(setup)
    if _templates is not None:
        setup(_templates.env)
    return setup


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """Return how long ago value was, in words a person reads at a glance."""
    if value is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 60:
        return "just now"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''} ago"
    return "just now"


@template_setup
def _common_filters(env: Environment) -> None:
    env.filters["ago"] = ago
    env.globals["STATUS_LABEL"] = STATUS_LABEL
    env.globals["days_left"] = lambda s: days_left(
        s.days_to_empty,
        s.days_to_empty_low,
        s.days_to_empty_high,
        receptacle=s.supply_class == "receptacle",
    )


class LoginRequired(Exception):
    """The page needs a logged-in user; the handler redirects to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


async def ui_user(request: Request) -> Principal:
    """Return the logged-in user of a page, or raise LoginRequired."""
    principal, _ = await principal_from(request, None)
    if principal is None or principal.via != "session":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return principal


def login_redirect(exc: LoginRequired) -> Response:
    """Return the redirect to the login page, coming back to where the user was."""
    return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)


def _safe_next(value: str | None) -> str:
    # Only same-site paths: an open redirect after login would help phishing.
    if not value or not value.startswith("/") or value.startswith("//") or urlsplit(value).netloc:
        return "/"
    return value


def render(
    request: Request, name: str, who: Principal | None, status: int = 200, **ctx: Any
) -> HTMLResponse:
    """Return a page with the common context (user, CSRF token, role checks)."""
    st = app_state(request)
    ctx.update(
        user=who,
        csrf=csrf_token(st.secret, who.token_hash) if who else "",
        can_write=bool(who and role_at_least(who.role, "operator")),
    )
    return templates().TemplateResponse(request, name, ctx, status_code=status)


def error_page(request: Request, status: int, message: str) -> Response:
    """Return an HTML error page."""
    return templates().TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "user": None, "csrf": "", "can_write": False},
        status_code=status,
    )


def _cookie_secure(request: Request, st: AppState) -> bool:
    if st.settings.cookie_secure is not None:
        return st.settings.cookie_secure
    public = st.settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


async def _check_csrf(request: Request, who: Principal) -> dict[str, str]:
    form = await request.form()
    data = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_ok(app_state(request).secret, who.token_hash, data.get("csrf")):
        raise HTTPException(
            403, "the form expired or came from elsewhere; reload the page and retry"
        )
    return data


def user_responsibility(session: Session, who: Principal) -> Scope:
    """Return the sites and printer groups the user answers for (neither: everything)."""
    return responsibility_of(session, who)


def my_scope(session: Session, who: Principal, scope: str, *filters: str) -> Scope | None:
    """Return what a page defaults to: the user's sites and groups; None for every printer.

    A printer is the user's when its site or one of its groups is among theirs.
    """
    if scope == "all" or any(filters):
        return None  # the toggle, or an explicit filter, shows beyond the user's own
    mine = user_responsibility(session, who)
    return None if mine.everything else mine


def scope_labels(scope: Scope | None, groups: Sequence[PrinterGroup]) -> list[str]:
    """Return the names a page shows for a scope: site ids, then group names."""
    if scope is None:
        return []
    names = {g.id: g.name for g in groups}
    return [*scope.sites, *(names[g] for g in scope.groups if g in names)]


def scope_noun(scope: Scope) -> str:
    """Return what a scope is made of, in words ("sites", "groups", "sites and groups")."""
    if scope.sites and scope.groups:
        return "sites and groups"
    return "groups" if scope.groups else "sites"
