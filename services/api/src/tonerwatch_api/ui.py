"""Server-rendered web UI: login, fleet dashboard, printer page, alerts; forms protected against CSRF."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlmodel import Session, select

from tonerwatch_api import orders, store
from tonerwatch_api.api import client_ip, publish_outbox
from tonerwatch_api.auth import SESSION_COOKIE, principal_from
from tonerwatch_api.db import run_tx
from tonerwatch_api.groups import PrinterGroup, printer_groups, tenant_groups
from tonerwatch_api.history import (
    CounterPoint,
    LevelPoint,
    choose_resolution,
    counter_history,
    level_history,
)
from tonerwatch_api.login_limits import too_many_message
from tonerwatch_api.models import User
from tonerwatch_api.retention import policy_from
from tonerwatch_api.schemas import AlertOut, PrinterIn, PrinterOut, PrinterPatch
from tonerwatch_api.security import csrf_ok, csrf_token, new_token, role_at_least, verify_password
from tonerwatch_api.state import AppState, app_state
from tonerwatch_api.store import Principal, Scope
from tonerwatch_api.views import (
    STATUS_LABEL,
    chart_series,
    colorant_hex,
    counter_chart,
    level_bar,
)

HERE = Path(__file__).resolve().parent
LOGIN_CSRF_COOKIE = "tw_login_csrf"
router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")


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


templates.env.filters["ago"] = ago
templates.env.globals["STATUS_LABEL"] = STATUS_LABEL


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
    return templates.TemplateResponse(request, name, ctx, status_code=status)


def error_page(request: Request, status: int, message: str) -> Response:
    """Return an HTML error page."""
    return templates.TemplateResponse(
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


# --- login ---------------------------------------------------------------------------------------


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

    def work(s: Session) -> bool:
        user = s.exec(select(User).where(User.username == username)).first()
        if user is None or user.disabled or not verify_password(user.password_hash, password):
            verify_password(None, password)  # same cost whether or not the user exists
            return False
        store.issue_token(
            s, user, token, kind="session", scopes=("read", "write"), expires_at=expires
        )
        return True

    if not await run_tx(st.engine, work):
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
    await run_tx(
        app_state(request).engine, lambda s: store.revoke_token_hash(s, who.token_hash, now)
    )
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


# --- pages ---------------------------------------------------------------------------------------


def bars(p: PrinterOut) -> list[Any]:
    """Return the level bars of a printer's supplies."""
    return [
        level_bar(
            s.description, s.percent, s.state, s.supply_class, s.colour, s.colour_hex, s.part_number
        )
        for s in p.supplies
    ]


DASHBOARD_PAGE = 50  # printers per dashboard page: attention first, so page 1 is what matters


def user_responsibility(session: Session, who: Principal) -> Scope:
    """Return the sites and printer groups the user answers for (neither: everything)."""
    return store.responsibility(session, who.user_id)


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


def _group_id(value: str) -> int | None:
    """Return the group id a filter parameter names (None: no group filter, or not a number)."""
    return int(value) if value.isdecimal() and len(value) < 12 else None


@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request, q: str = "", site: str = "", page: int = 1, scope: str = "", group: str = ""
) -> Response:
    """Every printer with its supplies, those needing attention first, a page at a time."""
    who = await ui_user(request)
    st = app_state(request)
    page = max(page, 1)
    group_id = _group_id(group)
    group = str(group_id) if group_id is not None else ""

    def work(s: Session) -> dict[str, Any]:
        mine = my_scope(s, who, scope, site, group)
        fleet = store.fleet_page(
            s,
            who.tenant_id,
            site_id=site or None,
            search=q or None,
            offset=(page - 1) * DASHBOARD_PAGE,
            limit=DASHBOARD_PAGE,
            group_ids=[group_id] if group_id is not None else None,
            scope=mine,
        )
        return {
            "fleet": fleet,
            "sites": store.tenant_sites(s, who.tenant_id),
            "groups": tenant_groups(s, who.tenant_id),
            "mine": mine,
            "responsible": user_responsibility(s, who),
        }

    ctx = await run_tx(st.engine, work)
    fleet, mine, responsible = ctx["fleet"], ctx["mine"], ctx["responsible"]
    chosen = ([site] if site else [], [group] if group else [])
    # Without a filter the dashboard shows the user's sites and groups: the exports say "mine".
    exports = (*chosen, not (site or group) and mine is not None)
    return render(
        request,
        "dashboard.html",
        who,
        printers=[(p, bars(p)) for p in fleet.printers],
        total=fleet.total,
        page=page,
        pages=max(1, -(-fleet.total // DASHBOARD_PAGE)),
        sites=ctx["sites"],
        groups=ctx["groups"],
        q=q,
        site=site,
        group=group,
        counts=defaultdict(int, fleet.counts),
        mine=scope_labels(mine, ctx["groups"]),
        responsible=scope_labels(responsible, ctx["groups"]),
        scope_noun=scope_noun(responsible),
        export_query=export_query(q, *exports),
        meters_query=export_query("", *exports),
    )


def export_query(
    q: str, sites: Sequence[str], groups: Sequence[str] = (), mine: bool = False
) -> str:
    """Return the query string making the CSV exports match what the dashboard shows."""
    params: list[tuple[str, str]] = [("site", x) for x in sites] + [("group", g) for g in groups]
    params += [("scope", "mine")] if mine else []
    params += [("q", q)] if q else []
    return "?" + urlencode(params) if params else ""


@router.get("/printers/new", response_class=HTMLResponse)
async def new_printer_page(request: Request) -> Response:
    """The form to add a printer by address."""
    who = await ui_user(request)
    sites = await run_tx(app_state(request).engine, lambda s: store.tenant_sites(s, who.tenant_id))
    return render(request, "printer_new.html", who, sites=sites, errors=[], values={})


@router.post("/printers/new")
async def new_printer_submit(request: Request) -> Response:
    """Add a printer from the form."""
    who = await ui_user(request)
    st = app_state(request)
    data = await _check_csrf(request, who)
    if not role_at_least(who.role, "operator"):
        return error_page(request, 403, "adding printers needs the operator role")
    fields = {k: v for k, v in data.items() if k in PrinterIn.model_fields and v.strip() != ""}
    if "interval_s" in fields:
        fields["interval_s"] = (
            str(float(fields["interval_s"]) * 60)
            if _is_number(fields["interval_s"])
            else fields["interval_s"]
        )
    try:
        body = PrinterIn.model_validate(fields)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        sites = await run_tx(st.engine, lambda s: store.tenant_sites(s, who.tenant_id))
        safe = {k: v for k, v in data.items() if k not in ("community", "csrf")}
        return render(
            request, "printer_new.html", who, status=422, sites=sites, errors=errors, values=safe
        )
    try:
        printer = await run_tx(
            st.engine,
            lambda s: store.add_printer(
                s, who, body, st.settings.default_site, st.source, st.settings.default_interval_s
            ),
        )
    except store.Conflict as exc:
        sites = await run_tx(st.engine, lambda s: store.tenant_sites(s, who.tenant_id))
        safe = {k: v for k, v in data.items() if k not in ("community", "csrf")}
        return render(
            request,
            "printer_new.html",
            who,
            status=409,
            sites=sites,
            errors=[str(exc)],
            values=safe,
        )
    await publish_outbox(st)
    return RedirectResponse(f"/printers/{printer.id}", status_code=303)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


@router.get("/printers/{printer_id}", response_class=HTMLResponse)
async def printer_page(request: Request, printer_id: str) -> Response:
    """One printer: identity, supplies, level history, alerts, settings."""
    who = await ui_user(request)
    st = app_state(request)
    end = datetime.now(UTC)
    start = end - timedelta(days=14)

    res = choose_resolution(start, end, end, policy_from(st.settings))

    def work(s: Session) -> dict[str, Any]:
        # One transaction (one connection, one thread hop) for everything the page shows.
        p = store.get_printer(s, who.tenant_id, printer_id)
        return {
            "printer": store.printers_out(s, [p])[0],
            "history": level_history(s, p.id, start, end, res, limit=20000),
            "counters": counter_history(s, p.id, start, end, res, limit=20000),
            "alerts": store.find_alerts(
                s, who.tenant_id, open_only=False, printer_id=p.id, limit=50
            ),
            "orders": orders.printer_orders(s, who.tenant_id, p.id),
            "groups": tenant_groups(s, who.tenant_id),
            "member_of": printer_groups(s, [p.id]).get(p.id, []),
        }

    page = await run_tx(st.engine, work)
    printer: PrinterOut = page["printer"]
    history: list[LevelPoint] = page["history"]
    counters: list[CounterPoint] = page["counters"]
    alerts, printer_orders = page["alerts"], page["orders"]
    all_groups, member_of = page["groups"], page["member_of"]
    points: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for r in history:
        if r.percent is not None:
            points[r.supply_index].append((r.at, r.percent))
    labels = {
        s.index: (s.description, colorant_hex(s.colour, s.colour_hex))
        for s in printer.supplies
        if s.supply_class != "receptacle"
    }
    points = {k: v for k, v in points.items() if k in labels}
    first = min((v[0][0] for v in points.values() if v), default=start)
    series = chart_series(points, labels, first, end)
    pages: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for c in counters:
        for name in ("lifetime_pages", "mono_pages", "colour_pages"):
            value = getattr(c, name)
            if value is not None:
                pages[name].append((c.at, value))
    counter_start = min((c.at for c in counters), default=start)
    counter = counter_chart(pages, counter_start, end)
    return render(
        request,
        "printer.html",
        who,
        p=printer,
        bars=bars(printer),
        series=series,
        alerts=alerts,
        chart_start=first,
        chart_end=end,
        counter=counter,
        counter_start=counter_start,
        orders=printer_orders,
        show_printer=False,
        groups=all_groups,
        member_of=member_of,
        is_admin=role_at_least(who.role, "admin"),
    )


@router.post("/printers/{printer_id}/settings")
async def printer_settings(request: Request, printer_id: str) -> Response:
    """Save a printer's name, location, interval and monitoring switch."""
    who = await ui_user(request)
    st = app_state(request)
    data = await _check_csrf(request, who)
    if not role_at_least(who.role, "operator"):
        return error_page(request, 403, "changing printers needs the operator role")
    if data.get("action") == "delete":
        await run_tx(st.engine, lambda s: store.delete_printer(s, who, printer_id, st.source))
        await publish_outbox(st)
        return RedirectResponse("/", status_code=303)
    try:
        patch = PrinterPatch(
            name=data.get("name") or None,
            location=data.get("location") or None,
            interval_s=float(data["interval_min"]) * 60
            if _is_number(data.get("interval_min", ""))
            else None,
            monitored=data.get("monitored") == "on",
        )
    except ValidationError as exc:
        return error_page(request, 422, "; ".join(e["msg"] for e in exc.errors()))
    await run_tx(st.engine, lambda s: store.patch_printer(s, who, printer_id, patch, st.source))
    await publish_outbox(st)
    return RedirectResponse(f"/printers/{printer_id}", status_code=303)


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, show: str = "open", scope: str = "") -> Response:
    """Alerts: open ones, or all recent; of the user's responsible sites unless scope=all."""
    who = await ui_user(request)
    open_only = show != "all"

    def work(s: Session) -> tuple[list[AlertOut], list[str], Scope, list[str]]:
        mine = my_scope(s, who, scope)
        found = store.find_alerts(s, who.tenant_id, open_only=open_only, limit=500, scope=mine)
        responsible = user_responsibility(s, who)
        groups = tenant_groups(s, who.tenant_id)
        return found, scope_labels(mine, groups), responsible, scope_labels(responsible, groups)

    alerts, mine, responsible, responsible_names = await run_tx(app_state(request).engine, work)
    return render(
        request,
        "alerts.html",
        who,
        alerts=alerts,
        show="open" if open_only else "all",
        mine=mine,
        responsible=responsible_names,
        scope_noun=scope_noun(responsible),
    )


@router.post("/alerts/{alert_id}/ack")
async def acknowledge(request: Request, alert_id: int) -> Response:
    """Acknowledge an alert from a page, then go back there."""
    who = await ui_user(request)
    data = await _check_csrf(request, who)
    if not role_at_least(who.role, "operator"):
        return error_page(request, 403, "acknowledging needs the operator role")
    await run_tx(app_state(request).engine, lambda s: store.acknowledge(s, who, alert_id))
    return RedirectResponse(_safe_next(data.get("back")) or "/alerts", status_code=303)
