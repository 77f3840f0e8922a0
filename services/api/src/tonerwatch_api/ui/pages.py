"""Web UI pages for discovery, network impact and settings (actions go through the REST API)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from tonerwatch_api.db.orders import STATUSES
from tonerwatch_api.db.tx import run_read_tx, run_tx
from tonerwatch_api.db.usage import KINDS
from tonerwatch_api.deps import app_state, change
from tonerwatch_api.domain.access import members_of
from tonerwatch_api.domain.alert_settings import profiles, settings_out
from tonerwatch_api.domain.audit import group_names, latest_changes, target_names
from tonerwatch_api.domain.collectors import COLLECTORS, collector_out, collectors_query
from tonerwatch_api.domain.dead_letters import all_site_ids, sees_unowned, tenant_site_ids, visible
from tonerwatch_api.domain.discovery_jobs import (
    found_printers,
    get_job,
    job_out,
    list_jobs,
    start_job,
)
from tonerwatch_api.domain.groups import tenant_groups
from tonerwatch_api.domain.limits import LIMIT_NAMES, env_layers
from tonerwatch_api.domain.mail_servers import all_mail_servers
from tonerwatch_api.domain.network_usage import human_bytes, usage
from tonerwatch_api.domain.orders import ACTION_LABEL, STATUS_LABEL, find_orders
from tonerwatch_api.domain.printers import find_printers
from tonerwatch_api.domain.suggestions import suggestions
from tonerwatch_api.domain.tenancy import site_printer_counts, tenant_sites
from tonerwatch_api.domain.tokens import api_tokens
from tonerwatch_api.domain.users import tenant_users
from tonerwatch_api.listing import ListingError
from tonerwatch_api.schemas.discovery_jobs import DiscoveryJobIn, DiscoveryJobOut
from tonerwatch_api.schemas.network_usage import UsageOut
from tonerwatch_api.security import role_at_least
from tonerwatch_api.ui.common import (
    _check_csrf,
    error_page,
    my_scope,
    render,
    scope_labels,
    scope_noun,
    template_setup,
    ui_user,
    user_responsibility,
)
from tonerwatch_api.ui.views import colorant_hex
from tonerwatch_shared.printer.model import SupplyKind

if TYPE_CHECKING:
    from jinja2 import Environment

router = APIRouter(include_in_schema=False)


@template_setup
def _page_filters(env: Environment) -> None:
    env.filters["bytes"] = human_bytes
    env.globals["ORDER_STATUS_LABEL"] = STATUS_LABEL
    env.globals["ORDER_ACTION_LABEL"] = ACTION_LABEL
    env.globals["colorant_hex"] = colorant_hex


# Default shown in the sweep form: nothing that would probe a real network by accident.
TARGETS_PLACEHOLDER = "192.0.2.0/24\nprinter7.example.com"


# --- discovery -----------------------------------------------------------------------------------


@router.get("/discovery", response_class=HTMLResponse)
async def discovery_page(request: Request) -> Response:
    """The sweep form and the latest sweeps."""
    who = await ui_user(request)

    def work(s: Session) -> tuple[list[Any], list[DiscoveryJobOut]]:
        sites = tenant_sites(s, who.tenant_id)
        return sites, [job_out(j) for j in list_jobs(s, who.tenant_id, 20)]

    sites, recent = await run_tx(app_state(request).engine, work)
    return render(
        request,
        "discovery.html",
        who,
        sites=sites,
        recent=recent,
        errors=[],
        values={},
        placeholder=TARGETS_PLACEHOLDER,
        monitor_default=app_state(request).settings.auto_monitor_discovered,
    )


@router.post("/discovery")
async def discovery_submit(request: Request) -> Response:
    """Start a sweep from the form, then show its progress."""
    who = await ui_user(request)
    st = app_state(request)
    data = await _check_csrf(request, who)
    if not role_at_least(who.role, "operator"):
        return error_page(request, 403, "starting a discovery needs the operator role")
    fields: dict[str, Any] = {
        "targets": _lines(data.get("targets", "")),
        "communities": _lines(data.get("communities", "")),
        "rate_pps": data.get("rate_pps") or 200,
    }
    if data.get("port"):
        fields["port"] = data["port"]
    if data.get("site_id"):
        fields["site_id"] = data["site_id"]
    if data.get("time_limit_min"):
        fields["time_limit_s"] = _minutes(data["time_limit_min"])
    try:
        body = DiscoveryJobIn.model_validate(fields)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]

        def work(s: Session) -> tuple[list[Any], list[DiscoveryJobOut]]:
            sites = tenant_sites(s, who.tenant_id)
            return sites, [job_out(j) for j in list_jobs(s, who.tenant_id, 20)]

        sites, recent = await run_tx(st.engine, work)
        # Communities are credentials: never echoed back into the page.
        safe = {k: v for k, v in data.items() if k not in ("communities", "csrf")}
        return render(
            request,
            "discovery.html",
            who,
            status=422,
            sites=sites,
            recent=recent,
            errors=errors,
            values=safe,
            placeholder=TARGETS_PLACEHOLDER,
            monitor_default=st.settings.auto_monitor_discovered,
        )
    job = await change(st, lambda s: start_job(s, who, body, st.settings.default_site, st.source))
    return RedirectResponse(f"/discovery/{job.id}", status_code=303)


def _lines(text: str) -> list[str]:
    """Return the non-empty entries of a textarea (one per line, or comma separated)."""
    return [part.strip() for line in text.splitlines() for part in line.split(",") if part.strip()]


def _minutes(value: str) -> str | float:
    try:
        return float(value) * 60
    except ValueError:
        return value  # left for validation to name


@router.get("/discovery/{job_id}", response_class=HTMLResponse)
async def discovery_job_page(request: Request, job_id: str) -> Response:
    """One sweep: live progress bar, and the printers found with checkboxes to monitor them."""
    who = await ui_user(request)

    def work(s: Session) -> DiscoveryJobOut:
        job = get_job(s, who.tenant_id, job_id)
        return job_out(job, found_printers(s, job))

    job = await run_tx(app_state(request).engine, work)
    return render(request, "discovery_job.html", who, job=job)


# --- orders --------------------------------------------------------------------------------------

ORDERS_PAGE = 50
ORDER_VIEWS = ("open", "all", *STATUSES)


@router.get("/orders", response_class=HTMLResponse)
async def orders_page(
    request: Request, show: str = "open", site: str = "", scope: str = "", cursor: str = ""
) -> Response:
    """Orders of supplies: open ones, one status or all; of the user's sites unless scope=all."""
    who = await ui_user(request)
    show = show if show in ORDER_VIEWS else "open"
    lead = app_state(request).settings.lead_time_days

    def work(s: Session) -> dict[str, Any]:
        mine = my_scope(s, who, scope, site)
        items, next_cursor = find_orders(
            s,
            who.tenant_id,
            site_id=site or None,
            statuses=[show] if show in STATUSES else [],
            open_only=True if show == "open" else None,
            scope=mine,
            cursor=cursor or None,
            limit=ORDERS_PAGE,
        )
        responsible = user_responsibility(s, who)
        groups = tenant_groups(s, who.tenant_id)
        return {
            "suggestions": suggestions(s, who.tenant_id, site or None, mine, lead),
            "orders": items,
            "next_cursor": next_cursor,
            "sites": tenant_sites(s, who.tenant_id),
            "mine": scope_labels(mine, groups),
            "responsible": scope_labels(responsible, groups),
            "scope_noun": scope_noun(responsible),
        }

    try:
        ctx = await run_read_tx(app_state(request).engine, work)
    except ListingError:
        return error_page(request, 422, "that page of orders is gone; start from the first")
    params = [("show", show)] + ([("site", site)] if site else [])
    params += [("scope", "all")] if scope == "all" else []
    next_cursor = ctx.pop("next_cursor")
    next_url = "/orders?" + urlencode([*params, ("cursor", next_cursor)]) if next_cursor else None
    return render(
        request,
        "orders.html",
        who,
        show=show,
        site=site,
        show_printer=True,
        filtered=show != "all" or bool(site),
        next_url=next_url,
        first_url="/orders?" + urlencode(params) if cursor else None,
        **ctx,
    )


# --- network impact ------------------------------------------------------------------------------


def day_bars(report: UsageOut, height: float = 160.0) -> tuple[list[dict[str, Any]], int]:
    """Return stacked bars per day (SVG heights per kind) and the scale's top in bytes."""
    peak = max((sum(t.total for t in d.kinds.values()) for d in report.days), default=0)
    top = nice_ceiling(peak)
    out = []
    for d in report.days:
        y = height
        parts = []
        for kind in KINDS:
            t = d.kinds[kind]
            h = t.total / top * height if top else 0.0
            y -= h
            parts.append({"kind": kind, "y": round(y, 1), "h": round(h, 1), "bytes": t.total})
        out.append({"day": d.day, "parts": parts, "total": sum(t.total for t in d.kinds.values())})
    return out, top


def nice_ceiling(value: float) -> int:
    """Return a round number (1, 2 or 5 times a power of ten) at or above value, at least 1000."""
    step = 1000
    while True:
        for m in (1, 2, 5):
            if step * m >= value:
                return step * m
        step *= 10


@router.get("/network", response_class=HTMLResponse)
async def network_page(request: Request, days: int = 30, site: str = "") -> Response:
    """Bytes per day spent polling, discovering and syncing upstream, per site and per printer."""
    who = await ui_user(request)
    days = max(1, min(days, 366))

    def work(s: Session) -> tuple[UsageOut, list[Any]]:
        report = usage(s, who.tenant_id, days, site_id=site or None)
        return report, tenant_sites(s, who.tenant_id)

    report, sites = await run_read_tx(app_state(request).engine, work)
    bars, top = day_bars(report)
    return render(
        request,
        "network.html",
        who,
        report=report,
        bars=bars,
        top=top,
        days=days,
        site=site,
        sites=sites,
        kinds=KINDS,
    )


# --- settings ------------------------------------------------------------------------------------


GROUP_PICKER_MAX = 300  # printers listed as checkboxes per group on the Settings page
AUDIT_ROWS = 25  # the latest changes; GET /api/v1/audit pages through the rest
COLLECTORS_SHOWN = (
    500  # site collectors on the Settings page; GET /api/v1/collectors pages them all
)
DEAD_LETTERS_SHOWN = 50  # the newest dead letters; GET /api/v1/dead-letters lists up to 500
# Where a threshold in force comes from, as the Settings page says it.
SOURCE_UI, SOURCE_ENV, SOURCE_DEFAULT = "set here", "environment", "default"


def limit_defaults(settings: Any) -> dict[str, tuple[float, str]]:
    """Return each threshold below every site's own (value, source): TONERWATCH_ALERT_RULES'
    defaults, the environment's TONERWATCH_<NAME> (the alerter reads the same variables) or the
    built-in default."""
    rules_defaults = settings.alert_rules.get("defaults") or {}
    out = {}
    for n in LIMIT_NAMES:
        out[n] = (
            float(getattr(settings, n)),
            SOURCE_ENV if n in settings.model_fields_set else SOURCE_DEFAULT,
        )
        if isinstance(rules_defaults, Mapping) and isinstance(rules_defaults.get(n), int | float):
            out[n] = (float(rules_defaults[n]), SOURCE_ENV)
    return out


def site_in_force(
    saved: Any,
    defaults: dict[str, tuple[float, str]],
    env_rules: Mapping[str, Any] | None = None,
    kind: str | None = None,
) -> dict[str, tuple[float, str]]:
    """Return a site's thresholds in force (value, source): its saved value, else what
    TONERWATCH_ALERT_RULES sets for every site or this one (and kind), else the default."""
    out = {}
    for n in LIMIT_NAMES:
        value = getattr(saved, n)
        out[n] = defaults[n]
        for layer in env_layers(env_rules or {}, saved.site_id, None, kind):
            if isinstance(layer.get(n), int | float):
                out[n] = (float(layer[n]), SOURCE_ENV)
        if value is not None:
            out[n] = (float(value), SOURCE_UI)
    low, crit = out["low_percent"], out["critical_percent"]
    if crit[0] > low[0]:  # the alerter caps critical at low (rules.Resolved.apply)
        out["critical_percent"] = low
    return out


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request) -> Response:
    """Sites with their alert settings, printer groups, users with what they answer for, API tokens (forms call the REST API)."""
    who = await ui_user(request)
    is_admin = role_at_least(who.role, "admin")
    now = datetime.now(UTC)
    offline_after_s = app_state(request).settings.collector_offline_after_s
    bus = app_state(request).bus
    letters = []
    if is_admin:
        try:
            letters = await bus.dead_letters(limit=2000)
        except Exception:  # NATS away: the page still shows the rest
            letters = []

    def work(s: Session) -> dict[str, Any]:
        counts = site_printer_counts(s, who.tenant_id)
        dead = (
            visible(
                letters,
                bus.subjects,
                tenant_site_ids(s, who.tenant_id),
                all_site_ids(s),
                sees_unowned(who),
            )[:DEAD_LETTERS_SHOWN]
            if is_admin
            else []
        )
        found, _ = COLLECTORS.fetch(
            s, collectors_query(who.tenant_id), COLLECTORS.parse_sort(None), None, COLLECTORS_SHOWN
        )
        sites = [(x, counts.get(x.id, 0)) for x in tenant_sites(s, who.tenant_id)]
        users = tenant_users(s, who.tenant_id) if is_admin else []
        tokens = api_tokens(s, who.user_id)
        site_rows = [x for x, _ in sites]
        alerting = {x.id: settings_out(s, x) for x in site_rows} if is_admin else {}
        people = profiles(s, who.tenant_id) if is_admin else {}
        printer_groups = tenant_groups(s, who.tenant_id) if is_admin else []
        members = members_of(s, [g.id for g in printer_groups if g.id is not None])
        # A small fleet chooses a group's printers from checkboxes here; a large one on each
        # printer's page (or PUT /groups/{id}/printers): groups x printers checkboxes would not fit.
        fleet_size = sum(counts.values())
        picker = bool(printer_groups) and fleet_size <= GROUP_PICKER_MAX
        printers = find_printers(s, who.tenant_id) if picker else []
        changes = latest_changes(s, who.tenant_id, AUDIT_ROWS) if is_admin else []
        return {
            "mail_servers": all_mail_servers(s) if who.role == "provider" else [],
            "change_targets": target_names(s, who.tenant_id, changes),
            "change_groups": group_names(s, who.tenant_id, changes),
            "collectors": [collector_out(c, now, offline_after_s) for c in found],
            "dead_letters": dead,
            "changes": changes,
            "me": who.user_id,
            "sites": sites,
            "users": users,
            "tokens": tokens,
            "alerting": alerting,
            "profiles": people,
            "groups": printer_groups,
            "group_members": members,
            "group_picker": picker,
            "printers": sorted(printers, key=lambda p: (p.site_id, (p.name or p.address).lower())),
            "supply_kinds": [k.value for k in SupplyKind],
        }

    ctx = await run_tx(app_state(request).engine, work)
    defaults = limit_defaults(app_state(request).settings)
    ctx["limit_defaults"] = defaults
    rules = app_state(request).settings.alert_rules
    ctx["in_force"] = {sid: site_in_force(a, defaults, rules) for sid, a in ctx["alerting"].items()}
    # What each kind gets when its row is left empty (the placeholders of the per-kind form).
    ctx["kind_in_force"] = {
        sid: {k: site_in_force(a, defaults, rules, k) for k in ctx["supply_kinds"]}
        for sid, a in ctx["alerting"].items()
    }
    default_site = app_state(request).settings.default_site
    hub_enabled = app_state(request).settings.hub_dir is not None  # enrolment and revocation
    return render(
        request,
        "settings.html",
        who,
        is_admin=is_admin,
        is_provider=who.role == "provider",
        default_site=default_site,
        hub_enabled=hub_enabled,
        **ctx,
    )
