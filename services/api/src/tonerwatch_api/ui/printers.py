"""UI dashboard, printer pages and alerts."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Alert, Printer
from tonerwatch_api.db.tx import run_read_tx, run_tx
from tonerwatch_api.deps import AlertRowId, app_state, change
from tonerwatch_api.domain import alerts as alert_rules
from tonerwatch_api.domain import orders as order_rules
from tonerwatch_api.domain.alerts import alert_out, alerts_query, find_alerts
from tonerwatch_api.domain.coverage import printer_coverage
from tonerwatch_api.domain.errors import Conflict
from tonerwatch_api.domain.fleet import (
    card_reasons,
    fleet_rows,
    open_alerts_of,
    supply_alert_severity,
)
from tonerwatch_api.domain.groups import printer_groups, tenant_groups
from tonerwatch_api.domain.history import (
    CounterPoint,
    LevelPoint,
    choose_resolution,
    counter_history,
    history_start,
    level_history,
)
from tonerwatch_api.domain.limits import LIMIT_NAMES, limits_in_force
from tonerwatch_api.domain.printers import (
    add_printer,
    delete_printer,
    fleet_page,
    get_printer,
    patch_printer,
    printer_filters,
    printers_out,
    request_poll,
)
from tonerwatch_api.domain.retention import policy_from
from tonerwatch_api.domain.tenancy import tenant_sites
from tonerwatch_api.schemas.printers import PrinterIn, PrinterOut, PrinterPatch
from tonerwatch_api.security import role_at_least
from tonerwatch_api.status import STATUS_RANK
from tonerwatch_api.ui.common import (
    _check_csrf,
    _safe_next,
    error_page,
    my_scope,
    render,
    scope_labels,
    scope_noun,
    ui_user,
    user_responsibility,
)
from tonerwatch_api.ui.views import (
    STATUS_LABEL,
    chart_series,
    colorant_hex,
    counter_chart,
    level_bar,
)
from tonerwatch_shared.events import SnmpCredentials

router = APIRouter(include_in_schema=False)

# Where a threshold in force comes from, as the printer page says it.
LIMIT_SOURCE = {
    "default": "default",
    "environment": "environment",
    "site": "site",
    "site_kind": "site, this kind",
    "printer": "this printer",
    "printer_kind": "this printer, this kind",
}


# --- pages ---------------------------------------------------------------------------------------


def bars(p: PrinterOut, severities: dict[str, str] | None = None) -> list[Any]:
    """Return the level bars of a printer's supplies (severities: worst open alert per supply)."""
    sev = severities or {}
    return [
        level_bar(
            s.description,
            s.percent,
            s.state,
            s.supply_class,
            s.colour,
            s.colour_hex,
            s.part_number,
            sev.get(s.index),
        )
        for s in p.supplies
    ]


DASHBOARD_PAGE = 50  # printers per dashboard page: attention first, so page 1 is what matters


def _group_id(value: str) -> int | None:
    """Return the group id a filter parameter names (None: no group filter, or not a number)."""
    return int(value) if value.isdecimal() and len(value) < 12 else None


@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    q: str = "",
    site: str = "",
    page: int = 1,
    scope: str = "",
    group: str = "",
    status: str = "",
) -> Response:
    """Every printer with its supplies, those needing attention first, a page at a time."""
    who = await ui_user(request)
    st = app_state(request)
    page = max(page, 1)
    group_id = _group_id(group)
    group = str(group_id) if group_id is not None else ""
    status = status if status in STATUS_RANK else ""

    def work(s: Session) -> dict[str, Any]:
        mine = my_scope(s, who, scope, site, group)
        fleet = fleet_page(
            s,
            who.tenant_id,
            site_id=site or None,
            search=q or None,
            offset=(page - 1) * DASHBOARD_PAGE,
            limit=DASHBOARD_PAGE,
            group_ids=[group_id] if group_id is not None else None,
            scope=mine,
            statuses=[status] if status else (),
        )
        return {
            "fleet": fleet,
            "alerts": open_alerts_of(s, [p.id for p in fleet.printers]),
            "sites": tenant_sites(s, who.tenant_id),
            "groups": tenant_groups(s, who.tenant_id),
            "mine": mine,
            "responsible": user_responsibility(s, who),
        }

    ctx = await run_read_tx(st.engine, work)
    fleet, mine, responsible = ctx["fleet"], ctx["mine"], ctx["responsible"]
    chosen = ([site] if site else [], [group] if group else [])
    # Without a filter the dashboard shows the user's sites and groups: the exports say "mine".
    exports = (*chosen, not (site or group) and mine is not None)
    return render(
        request,
        "dashboard.html",
        who,
        printers=[
            (
                p,
                bars(p, supply_alert_severity(ctx["alerts"][p.id])),
                card_reasons(p, ctx["alerts"][p.id]),
            )
            for p in fleet.printers
        ],
        status_filter=status,
        all_statuses=list(STATUS_RANK),
        table_query=table_query(site, group, scope),
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


def table_query(site: str, group: str, scope: str) -> str:
    """Return the query string of the table's data: the toolbar's site, group and scope."""
    params = [(k, v) for k, v in (("site", site), ("group", group), ("scope", scope)) if v]
    return "?" + urlencode(params) if params else ""


@router.get("/fleet.json", include_in_schema=False)
async def fleet_table_rows(
    request: Request, site: str = "", scope: str = "", group: str = "", ids: str = ""
) -> Response:
    """The fleet table's rows: every printer of the filter, or those of ids (live updates)."""
    who = await ui_user(request)
    group_id = _group_id(group)
    wanted = [i for i in ids.split(",") if i][:FLEET_IDS_MAX] if ids else None

    def work(s: Session) -> tuple[list[dict[str, Any]], bool]:
        mine = my_scope(s, who, scope, site, group)
        return fleet_rows(
            s,
            who.tenant_id,
            scope=mine,
            site_id=site or None,
            group_ids=[group_id] if group_id is not None else None,
            printer_ids=wanted,
        )

    rows, cut = await run_read_tx(app_state(request).engine, work)
    for row in rows:
        row["status_label"] = STATUS_LABEL.get(row["status"], row["status"])
        if row["worst"] is not None:
            row["worst"]["colour"] = colorant_hex(*row["worst"]["colour"])
    body = json.dumps(
        {"rows": rows, "cut": cut, "partial": wanted is not None},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    # Every row of a large fleet is megabytes of repetitive JSON: gzip makes it ~16 times smaller.
    if len(body) >= FLEET_GZIP_FROM and "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)


FLEET_IDS_MAX = 500  # printers one live update asks for by id
FLEET_GZIP_FROM = 4096  # bytes of /fleet.json from which it is sent gzipped (when accepted)


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
    sites = await run_tx(app_state(request).engine, lambda s: tenant_sites(s, who.tenant_id))
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
    try:
        body = PrinterIn.model_validate(fields)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        sites = await run_tx(st.engine, lambda s: tenant_sites(s, who.tenant_id))
        safe = {k: v for k, v in data.items() if k not in ("community", "csrf")}
        return render(
            request, "printer_new.html", who, status=422, sites=sites, errors=errors, values=safe
        )
    try:
        printer = await change(
            st,
            lambda s: add_printer(
                s, who, body, st.settings.default_site, st.source, st.settings.default_interval_s
            ),
        )
    except Conflict as exc:
        sites = await run_tx(st.engine, lambda s: tenant_sites(s, who.tenant_id))
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
    window = end - timedelta(days=14)
    defaults = {n: float(getattr(st.settings, n)) for n in LIMIT_NAMES}

    def work(s: Session) -> dict[str, Any]:
        # One read-only snapshot (one connection, one thread hop) for everything the page shows.
        p = get_printer(s, who.tenant_id, printer_id)
        out = printers_out(s, [p])[0]
        # The resolution follows the history there is: a new printer's first hours are raw
        # readings, not one hourly dot.
        start = history_start(s, p.id, window) or window
        res = choose_resolution(start, end, end, policy_from(st.settings))
        return {
            "printer": out,
            "start": start,
            "resolution": res,
            "limits": limits_in_force(
                s,
                p,
                out.supplies,
                defaults,
                st.settings.model_fields_set & set(LIMIT_NAMES),
                st.settings.alert_rules,
            ),
            "history": level_history(s, p.id, start, end, res, limit=20000),
            "counters": counter_history(s, p.id, start, end, res, limit=20000),
            "alerts": find_alerts(s, who.tenant_id, open_only=False, printer_id=p.id, limit=50),
            "orders": order_rules.printer_orders(s, who.tenant_id, p.id),
            "coverage": printer_coverage(s, who.tenant_id, p.id, st.settings.coverage_rules, end),
            "groups": tenant_groups(s, who.tenant_id),
            "member_of": printer_groups(s, [p.id]).get(p.id, []),
        }

    page = await run_read_tx(st.engine, work)  # one snapshot: supplies and counters agree
    start = page["start"]
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
    lowest = [c.min_lifetime_pages for c in counters if c.min_lifetime_pages is not None]
    counter = counter_chart(pages, counter_start, end, first_total=min(lowest, default=None))
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
        coverage=page["coverage"],
        show_printer=False,
        groups=all_groups,
        member_of=member_of,
        is_admin=role_at_least(who.role, "admin"),
        limits={x.supply_index: x for x in page["limits"]},
        resolution=page["resolution"],
        LIMIT_SOURCE=LIMIT_SOURCE,
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
        await change(st, lambda s: delete_printer(s, who, printer_id, st.source))
        return RedirectResponse("/", status_code=303)
    interval = data.get("interval_s", "").strip()
    if interval and not _is_number(interval):
        return error_page(request, 422, "interval_s: the poll interval is a number of seconds")
    try:
        patch = PrinterPatch(
            name=data.get("name") or None,
            location=data.get("location") or None,
            interval_s=float(interval) if interval else None,
            monitored=data.get("monitored") == "on",
        )
    except ValidationError as exc:
        return error_page(request, 422, "; ".join(e["msg"] for e in exc.errors()))
    await change(st, lambda s: patch_printer(s, who, printer_id, patch, st.source))
    return RedirectResponse(f"/printers/{printer_id}", status_code=303)


SNMP_FIELDS = (
    "version",
    "community",
    "user",
    "auth_protocol",
    "auth_key",
    "priv_protocol",
    "priv_key",
)


@router.post("/printers/{printer_id}/snmp")
async def printer_snmp(request: Request, printer_id: str) -> Response:
    """Replace a printer's SNMP access from the write-only form (nothing secret is shown back)."""
    who = await ui_user(request)
    st = app_state(request)
    data = await _check_csrf(request, who)
    if not role_at_least(who.role, "operator"):
        return error_page(request, 403, "changing printers needs the operator role")
    fields = {k: data[k].strip() for k in SNMP_FIELDS if data.get(k, "").strip()}
    if fields.get("version") != "3":  # v1/v2c: a community, nothing else
        fields = {k: v for k, v in fields.items() if k in ("version", "community")}
    else:  # v3 has no community: one typed in the v2c field is not kept (nor stored)
        fields.pop("community", None)
    try:
        patch = PrinterPatch(snmp=SnmpCredentials.model_validate(fields))
    except ValidationError as exc:
        msgs = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return error_page(request, 422, "; ".join(msgs))
    await change(st, lambda s: patch_printer(s, who, printer_id, patch, st.source))
    return RedirectResponse(f"/printers/{printer_id}#snmp", status_code=303)


@router.post("/printers/{printer_id}/poll")
async def printer_poll(request: Request, printer_id: str) -> Response:
    """Ask for a poll now (the form fallback of the page's "Poll now" button)."""
    who = await ui_user(request)
    st = app_state(request)
    await _check_csrf(request, who)
    if not role_at_least(who.role, "operator"):
        return error_page(request, 403, "polling needs the operator role")
    try:
        await change(st, lambda s: request_poll(s, who, printer_id, st.source))
    except Conflict as exc:
        return error_page(request, 409, str(exc))
    return RedirectResponse(f"/printers/{printer_id}", status_code=303)


ALERT_KINDS = ("printer", "toner", "ink", "drum", "waste_toner", "fuser", "transfer", "other")


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(
    request: Request,
    show: str = "open",
    scope: str = "",
    site: str = "",
    kind: str = "",
    severity: str = "",
    printer: str = "",
) -> Response:
    """Alerts: open ones, or all recent; of the user's responsible sites unless scope=all.

    Filtered by site, kind, severity and printer (name, address or id).
    """
    who = await ui_user(request)
    open_only = show != "all"
    severity = severity if severity in ("critical", "warning", "info") else ""
    kind = kind if kind in ALERT_KINDS else ""

    def work(s: Session) -> dict[str, Any]:
        mine = my_scope(s, who, scope, site, printer)
        q = alerts_query(
            who.tenant_id,
            open_only=open_only,
            site_id=site or None,
            severities=[severity] if severity else (),
            kinds=[kind] if kind else (),
            scope=mine,
        )
        if printer:
            ids = select(Printer.id).where(*printer_filters(None, printer))
            q = q.where(col(Alert.printer_id).in_(ids))
        q = q.order_by(col(Alert.raised_at).desc(), col(Alert.id).desc()).limit(500)
        found = [alert_out(a, name) for a, name in s.exec(q).all()]
        responsible = user_responsibility(s, who)
        groups = tenant_groups(s, who.tenant_id)
        return {
            "alerts": found,
            "mine": scope_labels(mine, groups),
            "responsible": scope_labels(responsible, groups),
            "scope_noun": scope_noun(responsible),
            "sites": tenant_sites(s, who.tenant_id),
        }

    ctx = await run_read_tx(app_state(request).engine, work)
    return render(
        request,
        "alerts.html",
        who,
        show="open" if open_only else "all",
        site=site,
        kind=kind,
        severity=severity,
        printer=printer,
        kinds=ALERT_KINDS,
        **ctx,
    )


@router.post("/alerts/{alert_id}/ack")
async def acknowledge(request: Request, alert_id: AlertRowId) -> Response:
    """Acknowledge an alert from a page, then go back there."""
    who = await ui_user(request)
    data = await _check_csrf(request, who)
    if not role_at_least(who.role, "operator"):
        return error_page(request, 403, "acknowledging needs the operator role")
    await run_tx(app_state(request).engine, lambda s: alert_rules.acknowledge(s, who, alert_id))
    return RedirectResponse(_safe_next(data.get("back")) or "/alerts", status_code=303)
