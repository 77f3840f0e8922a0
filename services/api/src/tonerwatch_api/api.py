"""REST API /api/v1: auth, sites, printers, readings, alerts, tokens, users, export, discovery, network, live events."""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import func
from sqlmodel import Session, col, select

from tonerwatch_api import alert_settings as alerting
from tonerwatch_api import discovery_jobs as jobs
from tonerwatch_api import store
from tonerwatch_api.alert_settings import UserAlertingIn
from tonerwatch_api.auth import Admin, Operator, Viewer, current_principal
from tonerwatch_api.db import run_tx
from tonerwatch_api.discovery_jobs import DiscoveryJobIn, DiscoveryJobOut, DiscoveryJobPage
from tonerwatch_api.history import Resolution, choose_resolution, counter_history
from tonerwatch_api.listing import CURSOR_HELP, Listing, field
from tonerwatch_api.live import sse, toast
from tonerwatch_api.login_limits import too_many_message
from tonerwatch_api.meters import (
    PRINTERS_PER_QUERY,
    MeterResolution,
    csv_cell,
    daily_rows,
    meter_csv,
    raw_rows,
)
from tonerwatch_api.models import Alert, ApiToken, AuditEntry, Printer, Site, User
from tonerwatch_api.network_usage import UsageOut, usage
from tonerwatch_api.params import AlertRowId, JobId, PrinterId, SiteId, TokenId, UserId
from tonerwatch_api.retention import policy_from
from tonerwatch_api.schemas import (
    AlertOut,
    AlertPage,
    ApiTokenIn,
    ApiTokenOut,
    ApiTokenPage,
    AuditOut,
    AuditPage,
    CounterOut,
    MeOut,
    PrinterIn,
    PrinterOut,
    PrinterPage,
    PrinterPatch,
    ReadingOut,
    SiteIn,
    SiteOut,
    SitePage,
    SitePatch,
    TokenForm,
    TokenOut,
    UserIn,
    UserOut,
    UserPage,
    UserPatch,
    error_response,
)
from tonerwatch_api.security import hash_password, new_token, verify_password
from tonerwatch_api.state import AppState, app_state
from tonerwatch_api.store import Principal
from tonerwatch_shared.events import Event

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")

ERRORS: dict[int | str, dict[str, object]] = {
    401: error_response(
        401,
        "Not authenticated: no bearer token (or session), or it expired or was revoked",
        "not authenticated: send 'Authorization: Bearer <token>' (get one from "
        "POST /api/v1/auth/token) — a token may also be expired or revoked",
    ),
    403: error_response(
        403, "Role or scope too small", "needs role operator or higher (you are viewer)"
    ),
    404: error_response(404, "Not found (or another tenant's)", "printer 'p-3f2a9c01de' not found"),
}
# Answers of the changes that can clash with what is stored (a taken id or address, the last admin).
CONFLICT: dict[int | str, dict[str, object]] = {
    409: error_response(
        409, "Conflicts with what is stored; the error says with what", "site id 'acme-hq' is taken"
    ),
}


async def publish_outbox(st: AppState) -> None:
    """Publish what the last change queued; a failure is retried by the outbox loop."""
    try:
        await st.outbox.flush()
    except Exception as exc:
        log.warning("publishing queued events failed, the outbox loop retries: %r", exc)


# --- auth ----------------------------------------------------------------------------------------


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

    def work(s: Session) -> bool:
        user = s.exec(select(User).where(User.username == username)).first()
        if not verify_password(user.password_hash if user else None, password) or user is None:
            return False
        if user.disabled:
            return False
        store.issue_token(s, user, token, kind="access", scopes=scopes, expires_at=expires)
        return True

    if not await run_tx(st.engine, work):
        await st.login_limiter.failed(attempt)
        raise HTTPException(
            401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"}
        )
    await st.login_limiter.succeeded(attempt)
    return TokenOut(access_token=token, expires_at=expires)


def client_ip(request: Request) -> str | None:
    """Return the caller's address as the server sees it (uvicorn applies X-Forwarded-For
    from the proxies it trusts, --forwarded-allow-ips)."""
    return request.client.host if request.client else None


@router.post("/auth/logout", status_code=204, tags=["auth"], responses=ERRORS)
async def logout(request: Request, who: Viewer) -> Response:
    """Revoke the token (or session) used for this request."""
    now = datetime.now(UTC)
    await run_tx(
        app_state(request).engine, lambda s: store.revoke_token_hash(s, who.token_hash, now)
    )
    return Response(status_code=204)


@router.get("/me", response_model=MeOut, tags=["auth"], responses=ERRORS)
async def me(who: Viewer) -> MeOut:
    """Return who the caller is."""
    return MeOut(
        username=who.username, role=who.role, tenant_id=who.tenant_id, scopes=sorted(who.scopes)
    )


# --- sites ---------------------------------------------------------------------------------------


SITES = Listing(
    fields={
        "id": field(col(Site.id), "str"),
        "name": field(col(Site.name), "str"),
        "created_at": field(col(Site.created_at), "datetime"),
    },
    default="id",
)


@router.get("/sites", response_model=SitePage, tags=["sites"], responses=ERRORS)
async def list_sites(
    request: Request,
    who: Viewer,
    sort: Annotated[str | None, Query(max_length=100, description=SITES.describe())] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Sites per page")] = 100,
    cursor: Annotated[str | None, Query(max_length=1000, description=CURSOR_HELP)] = None,
) -> SitePage:
    """Return the tenant's sites with their printer counts, a page at a time."""
    order = SITES.parse_sort(sort)

    def work(s: Session) -> SitePage:
        base = select(Site).where(Site.tenant_id == who.tenant_id)
        rows, nxt = SITES.fetch(s, base, order, cursor, limit)
        counts = store.site_printer_counts(s, who.tenant_id)
        items = [
            SiteOut(
                id=x.id,
                name=x.name,
                tenant_id=x.tenant_id,
                printers=counts.get(x.id, 0),
                poll_interval_s=x.poll_interval_s,
            )
            for x in rows
        ]
        return SitePage(items=items, next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


@router.post(
    "/sites",
    response_model=SiteOut,
    status_code=201,
    tags=["sites"],
    responses={**ERRORS, **CONFLICT},
)
async def create_site(request: Request, body: SiteIn, who: Admin) -> SiteOut:
    """Create a site in the caller's tenant (its id becomes part of NATS subjects)."""

    st = app_state(request)

    def work(s: Session) -> SiteOut:
        if s.get(Site, body.id) is not None:
            raise store.Conflict(f"site id {body.id!r} is taken")
        site = Site(
            id=body.id,
            tenant_id=who.tenant_id,
            name=body.name or body.id,
            poll_interval_s=body.poll_interval_s,
        )
        s.add(site)
        s.flush()
        if alerting.responsible_emails(s, site):
            # Users responsible for every site are mailed about this one too: tell the alerter.
            alerting.announce(s, site, st.source)
        store.audit(s, who, "site.create", site.id)
        return SiteOut(
            id=site.id,
            name=site.name,
            tenant_id=site.tenant_id,
            poll_interval_s=site.poll_interval_s,
        )

    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


@router.get("/sites/{site_id}", response_model=SiteOut, tags=["sites"], responses=ERRORS)
async def get_site(request: Request, site_id: SiteId, who: Viewer) -> SiteOut:
    """Return one site."""

    def work(s: Session) -> SiteOut:
        site = store.get_site(s, who.tenant_id, site_id)
        n = store.site_printer_counts(s, who.tenant_id).get(site.id, 0)
        return SiteOut(
            id=site.id,
            name=site.name,
            tenant_id=site.tenant_id,
            printers=n,
            poll_interval_s=site.poll_interval_s,
        )

    return await run_tx(app_state(request).engine, work)


@router.patch("/sites/{site_id}", response_model=SiteOut, tags=["sites"], responses=ERRORS)
async def rename_site(request: Request, site_id: SiteId, body: SitePatch, who: Admin) -> SiteOut:
    """Rename a site and/or set its printers' poll interval (null: back to the default)."""
    st = app_state(request)

    def work(s: Session) -> SiteOut:
        site = store.get_site(s, who.tenant_id, site_id)
        if body.name is not None:
            site.name = body.name
            s.add(site)
            store.audit(s, who, "site.rename", site.id, name=body.name)
        if "poll_interval_s" in body.model_fields_set:
            store.set_site_interval(
                s, site, body.poll_interval_s, st.source, st.settings.default_interval_s
            )
            store.audit(s, who, "site.interval", site.id, poll_interval_s=body.poll_interval_s)
        return SiteOut(
            id=site.id,
            name=site.name,
            tenant_id=site.tenant_id,
            poll_interval_s=site.poll_interval_s,
        )

    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


@router.delete(
    "/sites/{site_id}", status_code=204, tags=["sites"], responses={**ERRORS, **CONFLICT}
)
async def delete_site(request: Request, site_id: SiteId, who: Admin) -> Response:
    """Delete an empty site (one that never held printers)."""
    st = app_state(request)

    def work(s: Session) -> None:
        site = store.get_site(s, who.tenant_id, site_id)
        if site.id == st.settings.default_site:
            raise store.Conflict("the default site cannot be deleted")
        if s.exec(select(Printer.id).where(Printer.site_id == site.id)).first() is not None:
            raise store.Conflict(
                f"site {site.id!r} has printers (or their history); remove them first"
            )
        s.delete(site)
        store.audit(s, who, "site.delete", site.id)

    await run_tx(st.engine, work)
    return Response(status_code=204)


# --- printers ------------------------------------------------------------------------------------


PRINTERS = Listing(
    fields={
        "id": field(col(Printer.id), "str"),
        "name": field(col(Printer.name), "str"),
        "address": field(col(Printer.address), "str"),
        "site_id": field(col(Printer.site_id), "str"),
        "vendor": field(col(Printer.vendor), "str"),
        "model": field(col(Printer.model), "str"),
        "serial": field(col(Printer.serial), "str"),
        "location": field(col(Printer.location), "str"),
        "status": field(col(Printer.status), "str"),
        "last_seen_at": field(col(Printer.last_seen_at), "datetime"),
        "lifetime_pages": field(col(Printer.lifetime_pages), "int"),
        "created_at": field(col(Printer.created_at), "datetime"),
    },
    default="id",
)
PrinterStatus = Literal["critical", "offline", "attention", "pending", "ok", "paused"]


@router.get("/printers", response_model=PrinterPage, tags=["printers"], responses=ERRORS)
async def list_printers(
    request: Request,
    who: Viewer,
    site: Annotated[
        list[str] | None,
        Query(max_length=64, description="Only these sites (repeat the parameter for several)"),
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Search name, address, model, serial, location"),
    ] = None,
    status: Annotated[
        list[PrinterStatus] | None,
        Query(description="Only these statuses (repeat the parameter for several)"),
    ] = None,
    monitored: Annotated[bool | None, Query(description="Only (un)monitored printers")] = None,
    group: Annotated[
        list[int] | None,
        Query(description="Only printers of these groups (GET /groups; repeat for several)"),
    ] = None,
    sort: Annotated[str | None, Query(max_length=100, description=PRINTERS.describe())] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Printers per page")] = 100,
    cursor: Annotated[str | None, Query(max_length=1000, description=CURSOR_HELP)] = None,
) -> PrinterPage:
    """Return the tenant's printers with supplies, sorted and filtered, a page at a time."""
    order = PRINTERS.parse_sort(sort)

    def work(s: Session) -> PrinterPage:
        base = store.printers_query(
            who.tenant_id,
            site_ids=site,
            search=q,
            statuses=status or (),
            monitored=monitored,
            group_ids=group,
        )
        rows, nxt = PRINTERS.fetch(s, base, order, cursor, limit)
        return PrinterPage(items=store.printers_out(s, rows), next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


@router.post(
    "/printers",
    response_model=PrinterOut,
    status_code=201,
    tags=["printers"],
    responses={**ERRORS, **CONFLICT},
)
async def add_printer(request: Request, body: PrinterIn, who: Operator) -> PrinterOut:
    """Add a printer by address; the poller is told (PrinterConfigured) and starts polling it."""
    st = app_state(request)

    def work(s: Session) -> PrinterOut:
        printer = store.add_printer(
            s, who, body, st.settings.default_site, st.source, st.settings.default_interval_s
        )
        return store.printers_out(s, [printer])[0]

    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


@router.get(
    "/printers/{printer_id}", response_model=PrinterOut, tags=["printers"], responses=ERRORS
)
async def get_printer(request: Request, printer_id: PrinterId, who: Viewer) -> PrinterOut:
    """Return one printer with its supplies."""

    def work(s: Session) -> PrinterOut:
        return store.printers_out(s, [store.get_printer(s, who.tenant_id, printer_id)])[0]

    return await run_tx(app_state(request).engine, work)


@router.patch(
    "/printers/{printer_id}", response_model=PrinterOut, tags=["printers"], responses=ERRORS
)
async def update_printer(
    request: Request, printer_id: PrinterId, body: PrinterPatch, who: Operator
) -> PrinterOut:
    """Change a printer; the poller is told (PrinterConfigured, or PrinterRemoved when unmonitored)."""
    st = app_state(request)

    def work(s: Session) -> PrinterOut:
        printer = store.patch_printer(s, who, printer_id, body, st.source)
        return store.printers_out(s, [printer])[0]

    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


@router.delete("/printers/{printer_id}", status_code=204, tags=["printers"], responses=ERRORS)
async def delete_printer(request: Request, printer_id: PrinterId, who: Operator) -> Response:
    """Stop monitoring and remove a printer (PrinterRemoved); its history is kept."""
    st = app_state(request)
    await run_tx(st.engine, lambda s: store.delete_printer(s, who, printer_id, st.source))
    await publish_outbox(st)
    return Response(status_code=204)


@router.get(
    "/printers/{printer_id}/readings",
    response_model=list[ReadingOut],
    tags=["printers"],
    responses=ERRORS,
)
async def printer_readings(
    request: Request,
    printer_id: PrinterId,
    who: Viewer,
    since: Annotated[datetime | None, Query(description="ISO 8601; default 7 days ago")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=50000, description="At most this many points")] = 10000,
    resolution: Annotated[
        Literal["raw", "hourly", "daily", "auto"],
        Query(description="auto: raw up to 2 days, hourly up to 62, else daily"),
    ] = "auto",
) -> list[ReadingOut]:
    """Return supply levels over time, oldest first: raw readings, or hourly/daily buckets."""
    st = app_state(request)
    start, end, res = _time_window(st, since, until, resolution, default_days=7)

    def work(s: Session) -> list[ReadingOut]:
        return store.readings(s, who.tenant_id, printer_id, start, end, limit, res)

    return await run_tx(st.engine, work)


@router.get(
    "/printers/{printer_id}/counters",
    response_model=list[CounterOut],
    tags=["printers"],
    responses=ERRORS,
)
async def printer_counters(
    request: Request,
    printer_id: PrinterId,
    who: Viewer,
    since: Annotated[datetime | None, Query(description="ISO 8601; default 30 days ago")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=50000, description="At most this many points")] = 10000,
    resolution: Annotated[
        Literal["raw", "hourly", "daily", "auto"],
        Query(description="auto: raw up to 2 days, hourly up to 62, else daily"),
    ] = "auto",
) -> list[CounterOut]:
    """Return page counters over time, oldest first: raw readings, or the last of each hour/day."""
    st = app_state(request)
    start, end, res = _time_window(st, since, until, resolution, default_days=30)

    def work(s: Session) -> list[CounterOut]:
        printer = store.get_printer(s, who.tenant_id, printer_id)
        return [
            CounterOut(
                occurred_at=p.at,
                lifetime_pages=p.lifetime_pages,
                mono_pages=p.mono_pages,
                colour_pages=p.colour_pages,
                duplex_pages=p.duplex_pages,
                resolution=res,
                count=p.count,
            )
            for p in counter_history(s, printer.id, start, end, res, limit)
        ]

    return await run_tx(st.engine, work)


def _time_window(
    st: AppState,
    since: datetime | None,
    until: datetime | None,
    resolution: Literal["raw", "hourly", "daily", "auto"],
    *,
    default_days: int,
) -> tuple[datetime, datetime, Resolution]:
    """Return (start, end, resolution) of a history query; 422 when since is after until."""
    start, end = _window(since, until, default_days=default_days)
    if resolution == "auto":
        return (
            start,
            end,
            choose_resolution(start, end, datetime.now(UTC), policy_from(st.settings)),
        )
    return start, end, resolution


def _window(
    since: datetime | None, until: datetime | None, *, default_days: int
) -> tuple[datetime, datetime]:
    """Return (start, end): until or now, since or default_days before; 422 when reversed."""
    end = _aware(until) if until else datetime.now(UTC)
    start = _aware(since) if since else end - timedelta(days=default_days)
    if start > end:
        raise HTTPException(422, "since: must not be after until")
    return start, end


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --- alerts --------------------------------------------------------------------------------------


ALERTS = Listing(
    fields={
        "id": field(col(Alert.id), "int"),
        "raised_at": field(col(Alert.raised_at), "datetime"),
        "resolved_at": field(col(Alert.resolved_at), "datetime"),
        "acknowledged_at": field(col(Alert.acknowledged_at), "datetime"),
        "severity": field(col(Alert.severity), "str"),
        "rule": field(col(Alert.rule), "str"),
        "printer_id": field(col(Alert.printer_id), "str"),
        "percent": field(col(Alert.percent), "float"),
        "days_to_empty": field(col(Alert.days_to_empty), "float"),
    },
    default="-raised_at",
)


@router.get("/alerts", response_model=AlertPage, tags=["alerts"], responses=ERRORS)
async def list_alerts(
    request: Request,
    who: Viewer,
    open: Annotated[bool, Query(description="Only unresolved alerts")] = True,
    printer_id: Annotated[
        str | None, Query(max_length=128, description="Only this printer")
    ] = None,
    site: Annotated[str | None, Query(max_length=64, description="Only this site")] = None,
    severity: Annotated[
        list[Literal["critical", "warning", "info"]] | None,
        Query(description="Only these severities (repeat the parameter for several)"),
    ] = None,
    sort: Annotated[str | None, Query(max_length=100, description=ALERTS.describe())] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Alerts per page")] = 200,
    cursor: Annotated[str | None, Query(max_length=1000, description=CURSOR_HELP)] = None,
) -> AlertPage:
    """Return alerts, newest first unless sorted otherwise, a page at a time."""
    order = ALERTS.parse_sort(sort)

    def work(s: Session) -> AlertPage:
        base = store.alerts_query(
            who.tenant_id,
            open_only=open,
            printer_id=printer_id,
            site_id=site,
            severities=severity or (),
        )
        rows, nxt = ALERTS.fetch(s, base, order, cursor, limit, row_of=lambda r: r[0])
        return AlertPage(items=[store.alert_out(a, name) for a, name in rows], next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


@router.post(
    "/alerts/{alert_id}/acknowledge", response_model=AlertOut, tags=["alerts"], responses=ERRORS
)
async def acknowledge_alert(request: Request, alert_id: AlertRowId, who: Operator) -> AlertOut:
    """Acknowledge an alert (someone is on it)."""
    return await run_tx(app_state(request).engine, lambda s: store.acknowledge(s, who, alert_id))


# --- export --------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "printer_id",
    "site_id",
    "name",
    "address",
    "vendor",
    "model",
    "serial",
    "location",
    "status",
    "reachable",
    "last_seen_at",
    "lifetime_pages",
    "supply",
    "part_number",
    "colour",
    "percent",
    "supply_state",
)


def fleet_csv(printers: list[PrinterOut]) -> str:
    """Return the fleet as CSV, one row per supply (a printer without supplies gets one row)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for p in printers:
        base = [
            p.id,
            p.site_id,
            p.name,
            p.address,
            p.vendor,
            p.model,
            p.serial,
            p.location,
            p.status,
            p.reachable,
            p.last_seen_at.isoformat() if p.last_seen_at else None,
            p.lifetime_pages,
        ]
        rows = [[s.description, s.part_number, s.colour, s.percent, s.state] for s in p.supplies]
        for extra in rows or [[None] * 5]:
            w.writerow([csv_cell(v) for v in base + extra])
    return buf.getvalue()


FLEET_CSV_RESPONSE: dict[str, object] = {
    "description": "CSV (UTF-8, header row), one row per supply; sent as an attachment",
    "content": {
        "text/csv": {
            "schema": {"type": "string"},
            "example": ",".join(CSV_COLUMNS)
            + "\r\np-3f2a9c01de,acme-hq,Reception colour,192.0.2.31,HP,"
            'HP Color LaserJet Pro M452nw,VNB3R12345,"HQ, 2nd floor, reception",attention,'
            "True,2025-03-14T08:55:12+00:00,48213,Cyan Toner CF411A,CF411A,cyan,8.0,low\r\n",
        }
    },
}


@router.get(
    "/export/printers.csv",
    tags=["export"],
    responses={200: FLEET_CSV_RESPONSE, **ERRORS},
    response_class=Response,
)
async def export_printers(
    request: Request,
    who: Viewer,
    site: Annotated[
        list[str] | None,
        Query(max_length=64, description="Only these sites (repeat the parameter for several)"),
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Search name, address, model, serial, location"),
    ] = None,
    group: Annotated[
        list[int] | None,
        Query(description="Only printers of these groups (repeat the parameter for several)"),
    ] = None,
    scope: Annotated[
        Literal["mine"] | None,
        Query(description="mine: only what the caller answers for (their sites and groups)"),
    ] = None,
) -> Response:
    """Return the fleet (printers and supplies) as CSV."""

    def work(s: Session) -> str:
        mine = store.responsibility(s, who.user_id) if scope == "mine" else None
        fleet = store.find_printers(
            s, who.tenant_id, site_ids=site, search=q, group_ids=group, scope=mine
        )
        return fleet_csv(store.printers_out(s, fleet))

    body = await run_tx(app_state(request).engine, work)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="tonerwatch-fleet-{stamp}.csv"'},
    )


METER_CSV_RESPONSE: dict[str, object] = {
    "description": "CSV (UTF-8, header row): one row per printer and UTC day (raw: per poll, "
    "read_at instead of date); sent as an attachment",
    "content": {
        "text/csv": {
            "schema": {"type": "string"},
            "example": "printer_id,name,site_id,serial,model,date,lifetime_pages,mono_pages,"
            "colour_pages,duplex_pages\r\np-3f2a9c01de,Reception colour,acme-hq,VNB3R12345,"
            "HP Color LaserJet Pro M452nw,2025-03-13,48213,30120,18093,\r\n",
        }
    },
}
METER_RAW_MAX_SPAN = timedelta(days=7)  # every poll of a fleet: ~2,000 rows per printer a week
METER_MAX_SPAN = timedelta(days=3660)


@router.get(
    "/export/meters.csv",
    tags=["export"],
    responses={200: METER_CSV_RESPONSE, **ERRORS},
    response_class=StreamingResponse,
)
async def export_meters(
    request: Request,
    who: Viewer,
    since: Annotated[datetime | None, Query(description="ISO 8601; default 30 days ago")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; default now")] = None,
    site: Annotated[
        list[str] | None,
        Query(max_length=64, description="Only these sites (repeat the parameter for several)"),
    ] = None,
    resolution: Annotated[
        Literal["daily", "raw"],
        Query(description="daily: one row per printer per UTC day; raw: every poll (7 days max)"),
    ] = "daily",
    scope: Annotated[
        Literal["mine"] | None,
        Query(description="mine: only what the caller answers for (their sites and groups)"),
    ] = None,
) -> StreamingResponse:
    """Return page counter (meter) readings as CSV: printer, site, serial, model, date, pages."""
    st = app_state(request)
    start, end = _window(since, until, default_days=30)
    max_span = METER_RAW_MAX_SPAN if resolution == "raw" else METER_MAX_SPAN
    if end - start > max_span:
        raise HTTPException(422, f"since: {resolution} export spans at most {max_span.days} days")

    def printers(s: Session) -> list[Printer]:
        for one in site or ():
            store.get_site(s, who.tenant_id, one)  # another tenant's site: 404
        mine = store.responsibility(s, who.user_id) if scope == "mine" else None
        return store.find_printers(s, who.tenant_id, site_ids=site, scope=mine)

    fleet = await run_tx(st.engine, printers)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        meter_chunks(st, fleet, start, end, resolution),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="tonerwatch-meters-{stamp}.csv"'},
    )


async def meter_chunks(
    st: AppState,
    fleet: list[Printer],
    start: datetime,
    end: datetime,
    resolution: MeterResolution,
) -> AsyncIterator[str]:
    """Yield the meter CSV a few hundred printers at a time, so memory stays bounded."""
    rows_of = daily_rows if resolution == "daily" else raw_rows
    yield meter_csv([], [], resolution, header=True)
    for i in range(0, len(fleet), PRINTERS_PER_QUERY):
        chunk = fleet[i : i + PRINTERS_PER_QUERY]
        ids = [p.id for p in chunk]
        rows = await run_tx(
            st.engine, functools.partial(rows_of, printer_ids=ids, since=start, until=end)
        )
        yield meter_csv(chunk, rows, resolution, header=False)


# --- tokens and users ----------------------------------------------------------------------------


def _token_out(t: ApiToken, secret: str | None = None) -> ApiTokenOut:
    return ApiTokenOut(
        id=t.id or 0,
        name=t.name,
        scopes=t.scopes.split(),
        created_at=t.created_at,
        expires_at=t.expires_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
        token=secret,
    )


@router.post(
    "/tokens", response_model=ApiTokenOut, status_code=201, tags=["auth"], responses=ERRORS
)
async def create_api_token(request: Request, body: ApiTokenIn, who: Viewer) -> ApiTokenOut:
    """Create a long-lived API token for scripts; the secret is shown only in this answer."""
    if "write" in body.scopes and "write" not in who.scopes:
        raise HTTPException(403, "scopes: a read-only caller cannot mint a write token")
    token = new_token()
    expires = (
        datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    )

    def work(s: Session) -> ApiTokenOut:
        user = s.get(User, who.user_id)
        assert user is not None
        row = store.issue_token(
            s, user, token, kind="api", scopes=body.scopes, expires_at=expires, name=body.name
        )
        store.audit(s, who, "token.create", str(row.id), name=body.name, scopes=body.scopes)
        return _token_out(row, token)

    return await run_tx(app_state(request).engine, work)


TOKENS = Listing(
    fields={
        "id": field(col(ApiToken.id), "int"),
        "name": field(col(ApiToken.name), "str"),
        "created_at": field(col(ApiToken.created_at), "datetime"),
        "expires_at": field(col(ApiToken.expires_at), "datetime"),
        "last_used_at": field(col(ApiToken.last_used_at), "datetime"),
    },
    default="id",
)


@router.get("/tokens", response_model=ApiTokenPage, tags=["auth"], responses=ERRORS)
async def list_api_tokens(
    request: Request,
    who: Viewer,
    revoked: Annotated[
        bool | None, Query(description="true: only revoked; false: only live; unset: both")
    ] = None,
    sort: Annotated[str | None, Query(max_length=100, description=TOKENS.describe())] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Tokens per page")] = 100,
    cursor: Annotated[str | None, Query(max_length=1000, description=CURSOR_HELP)] = None,
) -> ApiTokenPage:
    """Return the caller's API tokens (never their secrets), a page at a time."""
    order = TOKENS.parse_sort(sort)

    def work(s: Session) -> ApiTokenPage:
        base = select(ApiToken).where(ApiToken.user_id == who.user_id, ApiToken.kind == "api")
        if revoked is not None:
            gone = col(ApiToken.revoked_at)
            base = base.where(gone.is_not(None) if revoked else gone.is_(None))
        rows, nxt = TOKENS.fetch(s, base, order, cursor, limit)
        return ApiTokenPage(items=[_token_out(t) for t in rows], next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


@router.delete("/tokens/{token_id}", status_code=204, tags=["auth"], responses=ERRORS)
async def revoke_api_token(request: Request, token_id: TokenId, who: Viewer) -> Response:
    """Revoke one of the caller's API tokens."""

    def work(s: Session) -> None:
        row = s.get(ApiToken, token_id)
        if row is None or row.user_id != who.user_id:
            raise store.NotFound(f"token {token_id} not found")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            s.add(row)
            store.audit(s, who, "token.revoke", str(row.id))

    await run_tx(app_state(request).engine, work)
    return Response(status_code=204)


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


@router.get("/users", response_model=UserPage, tags=["users"], responses=ERRORS)
async def list_users(
    request: Request,
    who: Admin,
    role: Annotated[
        Literal["admin", "operator", "viewer"] | None, Query(description="Only this role")
    ] = None,
    disabled: Annotated[bool | None, Query(description="Only (not) disabled users")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of the username")] = None,
    sort: Annotated[str | None, Query(max_length=100, description=USERS.describe())] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Users per page")] = 100,
    cursor: Annotated[str | None, Query(max_length=1000, description=CURSOR_HELP)] = None,
) -> UserPage:
    """Return the users of the caller's tenant, a page at a time."""
    order = USERS.parse_sort(sort)

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
        rows, nxt = USERS.fetch(s, base, order, cursor, limit)
        return UserPage(items=[_user_out(u) for u in rows], next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


@router.get("/users/{user_id}", response_model=UserOut, tags=["users"], responses=ERRORS)
async def get_user(request: Request, user_id: UserId, who: Admin) -> UserOut:
    """Return one user of the caller's tenant."""
    return await run_tx(
        app_state(request).engine,
        lambda s: _user_out(alerting.tenant_user(s, who.tenant_id, user_id)),
    )


@router.patch(
    "/users/{user_id}", response_model=UserOut, tags=["users"], responses={**ERRORS, **CONFLICT}
)
async def update_user(request: Request, user_id: UserId, body: UserPatch, who: Admin) -> UserOut:
    """Change a user's role, password or disabled flag (a new password or disabling ends sessions)."""
    st = app_state(request)

    def work(s: Session) -> UserOut:
        user = alerting.tenant_user(s, who.tenant_id, user_id)
        demoted = body.role is not None and body.role != "admin"
        if user.role == "admin" and (demoted or body.disabled) and _last_admin(s, user):
            raise store.Conflict("the tenant's last active admin cannot be demoted or disabled")
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
            alerting.reannounce(s, alerting.sites_mailing(s, user), st.source)
        if changed:
            store.audit(s, who, "user.update", user.username, **changed)
        return _user_out(user)

    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


@router.delete(
    "/users/{user_id}", status_code=204, tags=["users"], responses={**ERRORS, **CONFLICT}
)
async def delete_user(request: Request, user_id: UserId, who: Admin) -> Response:
    """Delete a user with their sessions and tokens (not yourself, not the last admin)."""
    st = app_state(request)

    def work(s: Session) -> None:
        user = alerting.tenant_user(s, who.tenant_id, user_id)
        if user.id == who.user_id:
            raise store.Conflict("you cannot delete yourself; another admin can")
        if user.role == "admin" and _last_admin(s, user):
            raise store.Conflict("the tenant's last active admin cannot be deleted")
        mailed = alerting.sites_mailing(s, user)
        for t in s.exec(select(ApiToken).where(ApiToken.user_id == user.id)).all():
            s.delete(t)
        profile = s.get(alerting.UserAlerting, user.id)
        if profile is not None:
            s.delete(profile)
        s.delete(user)
        alerting.reannounce(s, mailed, st.source)
        store.audit(s, who, "user.delete", user.username)

    await run_tx(st.engine, work)
    await publish_outbox(st)
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


# --- audit log -----------------------------------------------------------------------------------

AUDIT = Listing(
    fields={
        "id": field(col(AuditEntry.id), "int"),
        "at": field(col(AuditEntry.at), "datetime"),
        "action": field(col(AuditEntry.action), "str"),
        "username": field(col(AuditEntry.username), "str"),
        "target": field(col(AuditEntry.target), "str"),
    },
    default="-at",
)


@router.get("/audit", response_model=AuditPage, tags=["users"], responses=ERRORS)
async def list_audit(
    request: Request,
    who: Admin,
    action: Annotated[
        str | None,
        Query(max_length=64, description="An action ('printer.update') or a prefix ('printer.')"),
    ] = None,
    username: Annotated[
        str | None, Query(max_length=100, description="Who made the change")
    ] = None,
    target: Annotated[str | None, Query(max_length=255, description="What was changed")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; from this time")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; before this time")] = None,
    sort: Annotated[str | None, Query(max_length=100, description=AUDIT.describe())] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Entries per page")] = 200,
    cursor: Annotated[str | None, Query(max_length=1000, description=CURSOR_HELP)] = None,
) -> AuditPage:
    """Return who changed what in the caller's tenant, newest first unless sorted otherwise."""
    order = AUDIT.parse_sort(sort)

    def work(s: Session) -> AuditPage:
        base = select(AuditEntry).where(AuditEntry.tenant_id == who.tenant_id)
        if action:
            what = col(AuditEntry.action)
            base = base.where(
                what.startswith(action, autoescape=True) if action.endswith(".") else what == action
            )
        if username:
            base = base.where(AuditEntry.username == username)
        if target:
            base = base.where(AuditEntry.target == target)
        if since:
            base = base.where(col(AuditEntry.at) >= _aware(since))
        if until:
            base = base.where(col(AuditEntry.at) < _aware(until))
        rows, nxt = AUDIT.fetch(s, base, order, cursor, limit)
        items = [
            AuditOut(
                id=e.id or 0,
                at=e.at,
                username=e.username,
                action=e.action,
                target=e.target,
                detail=e.detail,
            )
            for e in rows
        ]
        return AuditPage(items=items, next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


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
            raise store.Conflict(f"username {body.username!r} is taken")
        from tonerwatch_api.db import create_user as make

        user = make(s, body.username, body.password, body.role, who.tenant_id)
        store.audit(s, who, "user.create", body.username, role=body.role)
        if body.email or body.responsible_sites or body.responsible_groups:
            profile = UserAlertingIn(
                email=body.email,
                responsible_sites=body.responsible_sites,
                responsible_groups=body.responsible_groups,
            )
            alerting.set_user_alerting(s, who, user, profile, st.source)
        return _user_out(user)

    st = app_state(request)
    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


# --- discovery -----------------------------------------------------------------------------------


@router.post(
    "/discovery/jobs",
    response_model=DiscoveryJobOut,
    status_code=201,
    tags=["discovery"],
    responses=ERRORS,
)
async def start_discovery(request: Request, body: DiscoveryJobIn, who: Operator) -> DiscoveryJobOut:
    """Start a sweep (DiscoveryRequested); follow it with GET /discovery/jobs/{id}."""
    st = app_state(request)

    def work(s: Session) -> DiscoveryJobOut:
        job = jobs.start_job(s, who, body, st.settings.default_site, st.source)
        return jobs.job_out(job)

    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


JOBS = Listing(
    fields={
        "id": field(col(jobs.DiscoveryJob.id), "str"),
        "requested_at": field(col(jobs.DiscoveryJob.requested_at), "datetime"),
        "finished_at": field(col(jobs.DiscoveryJob.finished_at), "datetime"),
        "state": field(col(jobs.DiscoveryJob.state), "str"),
        "site_id": field(col(jobs.DiscoveryJob.site_id), "str"),
        "printers_found": field(col(jobs.DiscoveryJob.printers_found), "int"),
    },
    default="-requested_at",
)


@router.get(
    "/discovery/jobs", response_model=DiscoveryJobPage, tags=["discovery"], responses=ERRORS
)
async def list_discovery_jobs(
    request: Request,
    who: Viewer,
    site: Annotated[str | None, Query(max_length=64, description="Only this site")] = None,
    state: Annotated[
        str | None, Query(max_length=16, description="Only this state (running, finished, ...)")
    ] = None,
    sort: Annotated[str | None, Query(max_length=100, description=JOBS.describe())] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Jobs per page")] = 20,
    cursor: Annotated[str | None, Query(max_length=1000, description=CURSOR_HELP)] = None,
) -> DiscoveryJobPage:
    """Return sweeps, newest first unless sorted otherwise (without their found lists)."""
    order = JOBS.parse_sort(sort)

    def work(s: Session) -> DiscoveryJobPage:
        base = jobs.jobs_query(who.tenant_id, site_id=site, state=state)
        rows, nxt = JOBS.fetch(s, base, order, cursor, limit)
        return DiscoveryJobPage(items=[jobs.job_out(j) for j in rows], next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


@router.get(
    "/discovery/jobs/{job_id}", response_model=DiscoveryJobOut, tags=["discovery"], responses=ERRORS
)
async def get_discovery_job(request: Request, job_id: JobId, who: Viewer) -> DiscoveryJobOut:
    """Return a sweep's progress and the printers it found (and whether they are monitored)."""

    def work(s: Session) -> DiscoveryJobOut:
        job = jobs.get_job(s, who.tenant_id, job_id)
        return jobs.job_out(job, jobs.found_printers(s, job))

    return await run_tx(app_state(request).engine, work)


@router.post(
    "/discovery/jobs/{job_id}/cancel",
    response_model=DiscoveryJobOut,
    status_code=202,
    tags=["discovery"],
    responses=ERRORS,
)
async def cancel_discovery(request: Request, job_id: JobId, who: Operator) -> DiscoveryJobOut:
    """Ask a running sweep to stop (DiscoveryCancelled); it ends with state 'cancelled'."""
    st = app_state(request)

    def work(s: Session) -> DiscoveryJobOut:
        return jobs.job_out(jobs.cancel_job(s, who, job_id, st.source))

    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


# --- network impact ------------------------------------------------------------------------------


@router.get("/network/usage", response_model=UsageOut, tags=["network"], responses=ERRORS)
async def network_usage(
    request: Request,
    who: Viewer,
    days: Annotated[int, Query(ge=1, le=366, description="Days up to today (UTC)")] = 30,
    site: Annotated[str | None, Query(max_length=64, description="Only this site")] = None,
) -> UsageOut:
    """Return measured bytes on the wire per day, site and printer: polling, discovery, sync."""
    return await run_tx(
        app_state(request).engine, lambda s: usage(s, who.tenant_id, days, site_id=site)
    )


# --- live events ---------------------------------------------------------------------------------


@router.get(
    "/events/stream",
    tags=["events"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream: a retry hint, then one 'alert' frame (JSON data) "
            "per alert raised or resolved, and a comment every 15 s while quiet",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": "retry: 5000\n\n"
                    + sse(
                        "alert",
                        {
                            "kind": "raised",
                            "severity": "warning",
                            "title": "Reception colour",
                            "message": "Low toner — Cyan Toner CF411A 8%, about 5 days left",
                            "printer_id": "p-3f2a9c01de",
                            "url": "/printers/p-3f2a9c01de",
                        },
                    )
                    + ": keep-alive\n\n",
                }
            },
        },
        **ERRORS,
    },
)
async def event_stream(request: Request, who: Viewer) -> StreamingResponse:
    """Server-sent events: 'alert' frames as alerts are raised or resolved in the caller's tenant."""
    st = app_state(request)
    return StreamingResponse(
        alert_frames(request, st, who),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def alert_frames(
    request: Request, st: AppState, who: Principal, keepalive_s: float = 15.0
) -> AsyncIterator[str]:
    """Yield SSE frames for the caller's tenant until the client leaves or the server stops."""
    tenants: dict[str, str] = {}
    with st.live.listen() as queue:
        # Sent once listening, so a client that got it misses nothing after.
        yield "retry: 5000\n\n"
        while not st.stop.is_set():
            event = await next_or_stop(queue, st.stop, keepalive_s)
            if st.stop.is_set():
                return
            if event is None:
                if await request.is_disconnected():
                    return
                yield ": keep-alive\n\n"
                continue
            if event.site_id not in tenants:
                tenants.update(await run_tx(st.engine, store.site_tenants))
            if tenants.get(event.site_id) != who.tenant_id:
                continue
            printer_id = getattr(event, "printer_id", "")
            name = await run_tx(
                st.engine, functools.partial(store.printer_name, printer_id=printer_id)
            )
            yield sse("alert", toast(event, name))


async def next_or_stop(
    queue: asyncio.Queue[Event], stop: asyncio.Event, timeout_s: float
) -> Event | None:
    """Return the next queued event, or None after timeout_s or once stop is set."""
    getter = asyncio.ensure_future(queue.get())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait(
            {getter, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
        if not getter.done():
            getter.cancel()
    return getter.result() if getter.done() and not getter.cancelled() else None


__all__ = ["current_principal", "router"]
