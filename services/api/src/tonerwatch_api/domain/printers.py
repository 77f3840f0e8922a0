"""Printers: found, listed, added, changed, removed (each change announced to the poller)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, String, bindparam, case, func, literal_column, or_
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Alert, Printer, Site, SupplyStateRow
from tonerwatch_api.domain.access import Principal, Scope, _group_members, audit, in_scope
from tonerwatch_api.domain.errors import Conflict, NotFound
from tonerwatch_api.domain.history import Resolution, level_history
from tonerwatch_api.domain.sites import DEFAULT_INTERVAL_S
from tonerwatch_api.domain.tenancy import get_site
from tonerwatch_api.listing import Listing, field
from tonerwatch_api.projections.credentials import FROM_DISCOVERY
from tonerwatch_api.projections.outbox import add_to_outbox
from tonerwatch_api.projections.printers import configured_event, new_printer_id
from tonerwatch_api.projections.status import refresh_status, status_of
from tonerwatch_api.schemas.printers import (
    PrinterIn,
    PrinterOut,
    PrinterPatch,
    ReadingOut,
    SnmpAccessOut,
    SupplyOut,
    TrayOut,
)
from tonerwatch_api.status import STATUS_RANK, printer_status
from tonerwatch_shared import failures
from tonerwatch_shared.events import PollRequested, PrinterRemoved, SnmpCredentials


def _tenant_printers(tenant_id: str) -> Any:
    return (
        select(Printer)
        .join(Site, col(Site.id) == col(Printer.site_id))
        .where(Site.tenant_id == tenant_id, col(Printer.removed_at).is_(None))
    )


def printer_filters(
    site_id: str | None,
    search: str | None,
    site_ids: Sequence[str] | None = None,
    group_ids: Sequence[int] | None = None,
    scope: Scope | None = None,
) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if site_id:
        out.append(col(Printer.site_id) == site_id)
    if site_ids is not None:  # a user's responsible sites
        out.append(col(Printer.site_id).in_(list(site_ids)))
    if group_ids is not None:  # printers of any of these groups
        out.append(col(Printer.id).in_(_group_members(group_ids)))
    if scope is not None:  # what a user answers for
        out.append(in_scope(scope, Printer.site_id, Printer.id))
    if search:
        needle = search.strip().lower()
        if _SEARCH_SEPARATOR not in needle:
            # The separator never matches, so a hit lies inside one column. The pattern goes in
            # the SQL as a literal: how many printers a needle matches varies from one to all,
            # and a prepared statement's generic plan (psycopg prepares repeated statements)
            # would use the index for all of them; with the needle in sight the planner scans
            # for a short or common needle and uses the index for a selective one.
            escaped = needle.replace("/", "//").replace("%", "/%").replace("_", "/_")
            pattern = bindparam("search", f"%{escaped}%", String(), literal_execute=True)
            out.append(printer_search_text().like(pattern, escape="/"))
        else:
            out.append(
                or_(
                    *(
                        func.lower(func.coalesce(c, "")).contains(needle, autoescape=True)
                        for c in _search_columns()
                    )
                )
            )
    return out


# Between the searched columns in printer_search_text: a control character no one types.
_SEARCH_SEPARATOR = "\x1f"


def _search_columns() -> tuple[Any, ...]:
    """Return the columns printer search looks in."""
    return (
        col(Printer.id),
        col(Printer.name),
        col(Printer.address),
        col(Printer.vendor),
        col(Printer.model),
        col(Printer.serial),
        col(Printer.location),
    )


def printer_search_text() -> ColumnElement[str]:
    """Return lower(id, name, address, vendor, model, serial, location joined by U+001F).

    Exactly the expression migration 0006 indexes with pg_trgm (GIN) on PostgreSQL, so a
    LIKE '%needle%' on it is index-backed there; literals, not bound values, for the same reason.
    """
    sep: ColumnElement[str] = literal_column(f"'{_SEARCH_SEPARATOR}'")
    joined: Any = None
    for c in _search_columns():
        part = func.coalesce(c, literal_column("''"))
        joined = part if joined is None else joined + sep + part
    text_: ColumnElement[str] = func.lower(joined)
    return text_


def printers_query(
    tenant_id: str,
    *,
    site_id: str | None = None,
    search: str | None = None,
    statuses: Sequence[str] = (),
    monitored: bool | None = None,
    site_ids: Sequence[str] | None = None,
    group_ids: Sequence[int] | None = None,
    scope: Scope | None = None,
) -> Any:
    """Return the select of the tenant's live printers matching the list endpoint's filters."""
    q = _tenant_printers(tenant_id)
    for cond in printer_filters(site_id, search, site_ids, group_ids, scope):
        q = q.where(cond)
    if statuses:
        q = q.where(col(Printer.status).in_(list(statuses)))
    if monitored is not None:
        q = q.where(col(Printer.monitored) == monitored)
    return q


def find_printers(
    session: Session, tenant_id: str, *, limit: int | None = None, **filters: Any
) -> list[Printer]:
    """Return the tenant's live printers by id matching printers_query's filters."""
    q = printers_query(tenant_id, **filters).order_by(col(Printer.id))
    return list(session.exec(q if limit is None else q.limit(limit)).all())


def printer_name(session: Session, printer_id: str) -> str | None:
    """Return a printer's name (None when it has none or is gone)."""
    printer = session.get(Printer, printer_id)
    return printer.name if printer else None


@dataclass(frozen=True)
class FleetPage:
    """One page of the dashboard: printers needing attention first, and totals of the filter."""

    printers: list[PrinterOut]
    total: int
    counts: dict[str, int]


def _attention_order(dialect: str) -> list[Any]:
    # The SQL twin of status.attention_key: status rank, then name (or address), then id.
    rank = case(*((col(Printer.status) == status, r) for status, r in STATUS_RANK.items()), else_=9)
    name: Any = func.lower(func.coalesce(col(Printer.name), col(Printer.address)))
    pid: Any = col(Printer.id)
    if dialect == "postgresql":
        # Code point order, as Python sorts str (and SQLite's BINARY); and several times
        # faster to sort than a locale's collation.
        name, pid = name.collate("C"), pid.collate("C")
    return [rank, name, pid]


def fleet_page(
    session: Session,
    tenant_id: str,
    *,
    site_id: str | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 100,
    site_ids: Sequence[str] | None = None,
    group_ids: Sequence[int] | None = None,
    scope: Scope | None = None,
    statuses: Sequence[str] = (),
) -> FleetPage:
    """Return one page of the tenant's printers, attention first (four queries, whatever the fleet).

    statuses narrows the page's printers, not the counts (the counters filter by status).
    """
    filters = printer_filters(site_id, search, site_ids, group_ids, scope)
    counts_q = (
        select(Printer.status, func.count())
        .join(Site, col(Site.id) == col(Printer.site_id))
        .where(Site.tenant_id == tenant_id, col(Printer.removed_at).is_(None), *filters)
    )
    counts = {
        status: int(n) for status, n in session.exec(counts_q.group_by(col(Printer.status))).all()
    }
    # Sort narrow rows (ids), then load the page's printers: sorting whole rows costs more.
    ids_q = select(Printer.id).join(Site, col(Site.id) == col(Printer.site_id))
    ids_q = ids_q.where(Site.tenant_id == tenant_id, col(Printer.removed_at).is_(None), *filters)
    if statuses:
        ids_q = ids_q.where(col(Printer.status).in_(list(statuses)))
    order = _attention_order(session.get_bind().dialect.name)
    ids = list(session.exec(ids_q.order_by(*order).offset(offset).limit(limit)).all())
    by_id = {p.id: p for p in session.exec(select(Printer).where(col(Printer.id).in_(ids))).all()}
    rows = [by_id[i] for i in ids if i in by_id]
    total = sum(n for st, n in counts.items() if not statuses or st in statuses)
    return FleetPage(printers=printers_out(session, rows), total=total, counts=counts)


def get_printer(session: Session, tenant_id: str, printer_id: str) -> Printer:
    """Return the tenant's live printer, or raise NotFound."""
    printer = session.exec(_tenant_printers(tenant_id).where(Printer.id == printer_id)).first()
    if printer is None:
        raise NotFound(f"printer {printer_id!r} not found")
    assert isinstance(printer, Printer)
    return printer


def printers_out(session: Session, printers: Sequence[Printer]) -> list[PrinterOut]:
    """Return API views of printers, with their supplies and open alerts (two queries in all)."""
    ids = [p.id for p in printers]
    supplies: dict[str, list[SupplyStateRow]] = defaultdict(list)
    severities: dict[str, list[str]] = defaultdict(list)
    if ids:
        for row in session.exec(
            select(SupplyStateRow)
            # The envelope (up to 200 points a supply) is the projection's, not the views'.
            .options(defer(SupplyStateRow.envelope))  # type: ignore[arg-type]
            .where(col(SupplyStateRow.printer_id).in_(ids))
            .order_by(col(SupplyStateRow.printer_id), col(SupplyStateRow.supply_index))
        ).all():
            supplies[row.printer_id].append(row)
        for alerted, severity in session.exec(
            select(Alert.printer_id, Alert.severity).where(
                col(Alert.printer_id).in_(ids), col(Alert.resolved_at).is_(None)
            )
        ).all():
            if alerted is not None:  # always, by the where; site-wide alerts have no printer
                severities[alerted].append(severity)
    return [printer_out(p, supplies[p.id], severities[p.id]) for p in printers]


def printer_out(
    p: Printer, supplies: Sequence[SupplyStateRow], severities: Sequence[str]
) -> PrinterOut:
    """Return the API view of one printer (no credentials)."""
    creds = p.credentials or {}
    return PrinterOut(
        id=p.id,
        site_id=p.site_id,
        name=p.name,
        address=p.address,
        port=p.port,
        protocol=p.protocol,
        monitored=p.monitored,
        interval_s=p.interval_s,
        snmp_version=str(creds.get("version")) if creds.get("version") else None,
        snmp_access=snmp_access(creds),
        location=p.location,
        notes=p.notes,
        origin=p.origin,
        proposed_address=p.proposed_address,
        proposed_port=p.proposed_port,
        proposed_at=p.proposed_at,
        vendor=p.vendor,
        model=p.model,
        serial=p.serial,
        sys_object_id=p.sys_object_id,
        mac_address=p.mac_address,
        firmware=p.firmware,
        reachable=p.reachable,
        last_seen_at=p.last_seen_at,
        last_error=p.last_error,
        poll_failure=p.poll_failure,
        poll_failure_text=failures.summary(p.poll_failure),
        device_status=p.device_status,
        printer_status=p.printer_status,
        status_errors=list(p.status_errors or []),
        lifetime_pages=p.lifetime_pages,
        last_bytes_sent=p.last_bytes_sent,
        last_bytes_received=p.last_bytes_received,
        trays=[TrayOut.model_validate(t) for t in p.trays or []],
        status=printer_status(
            monitored=p.monitored,
            reachable=p.reachable,
            last_seen_at=p.last_seen_at,
            supply_states=[s.state for s in supplies],
            alert_severities=severities,
            device_status=p.device_status,
            status_errors=p.status_errors,
        ),
        open_alerts=len(severities),
        supplies=[
            SupplyOut(
                index=s.supply_index,
                description=s.description,
                part_number=s.part_number,
                kind=s.kind,
                supply_class=s.supply_class,
                colour=s.colour,
                colour_hex=s.colour_hex,
                level=s.level,
                max_capacity=s.max_capacity,
                percent=s.percent,
                state=s.state,
                updated_at=s.updated_at,
                use_per_day=_rounded(s.use_per_day, 3),
                days_to_empty=_rounded(s.days_to_empty, 1),
                days_to_empty_low=_rounded(s.days_to_empty_low, 1),
                days_to_empty_high=_rounded(s.days_to_empty_high, 1),
            )
            for s in supplies
        ],
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def snmp_access(creds: dict[str, Any]) -> SnmpAccessOut | None:
    """Return what kind of SNMP access the stored credentials give, without any secret."""
    if not creds:
        return None
    try:
        c = SnmpCredentials.model_validate(creds)
    except ValueError:
        return None
    security: Any
    if c.version == "3":
        security = (
            "authPriv"
            if c.auth_key and c.priv_key
            else "authNoPriv"
            if c.auth_key
            else "noAuthNoPriv"
        )
    else:
        security = "default_community" if c.community == "public" else "community"
    return SnmpAccessOut(
        version=c.version,
        security=security,
        user=c.user if c.version == "3" else None,
        auth_protocol=c.auth_protocol if c.version == "3" and c.auth_key else None,
        priv_protocol=c.priv_protocol if c.version == "3" and c.priv_key else None,
        from_discovery=bool(creds.get(FROM_DISCOVERY)),
    )


def request_poll(session: Session, who: Principal, printer_id: str, source: str) -> PollRequested:
    """Queue a PollRequested for a monitored printer; raise Conflict when it is not monitored."""
    printer = get_printer(session, who.tenant_id, printer_id)
    if not printer.monitored:
        raise Conflict(f"printer {printer.id!r} is not monitored: nothing polls it")
    event = PollRequested(
        source=source, site_id=printer.site_id, printer_id=printer.id, requested_by=who.username
    )
    add_to_outbox(session, event)
    audit(session, who, "printer.poll", printer.id)
    return event


def add_printer(
    session: Session,
    who: Principal,
    body: PrinterIn,
    default_site: str,
    source: str,
    default_interval_s: float = DEFAULT_INTERVAL_S,
) -> Printer:
    """Store a new printer and queue its PrinterConfigured; raise Conflict if the address is taken."""
    site = get_site(session, who.tenant_id, body.site_id or default_site)
    clash = session.exec(
        select(Printer).where(
            Printer.site_id == site.id,
            Printer.address == body.address,
            Printer.port == body.port,
            col(Printer.removed_at).is_(None),
        )
    ).first()
    if clash is not None:
        raise Conflict(
            f"printer {clash.id!r} already has address {body.address}:{body.port} in site {site.id!r}"
        )
    now = datetime.now(UTC)
    printer = Printer(
        id=new_printer_id(),
        site_id=site.id,
        name=body.name,
        address=body.address,
        port=body.port,
        protocol=body.protocol,
        monitored=body.monitored,
        credentials=body.snmp_credentials().model_dump(),
        interval_s=body.interval_s or site.poll_interval_s or default_interval_s,
        interval_follows_site=body.interval_s is None,
        location=body.location,
        notes=body.notes,
        origin="manual",
        person_edited=True,
    )
    event = configured_event(printer, source=source, site_id=site.id)
    printer.config_at = event.occurred_at
    printer.created_at = printer.updated_at = now
    # A new printer has no supply states and no alerts yet: its status needs no query.
    printer.status = status_of(printer, (), ())
    session.add(printer)
    session.flush()
    if printer.monitored:
        add_to_outbox(session, event)
    audit(session, who, "printer.add", printer.id, address=body.address, port=body.port)
    return printer


def patch_printer(
    session: Session, who: Principal, printer_id: str, body: PrinterPatch, source: str
) -> Printer:
    """Apply changes; queue PrinterConfigured (or PrinterRemoved when monitoring stops)."""
    printer = get_printer(session, who.tenant_id, printer_id)
    was_monitored = printer.monitored
    changes = body.model_dump(exclude_unset=True, exclude={"community", "credentials", "snmp"})
    for attr in ("name", "location", "notes"):
        if attr in changes:  # null clears these
            setattr(printer, attr, changes[attr])
    for attr in ("address", "port", "protocol", "interval_s"):
        if changes.get(attr) is not None:
            setattr(printer, attr, changes[attr])
    if changes.get("interval_s") is not None:
        printer.interval_follows_site = False  # its own interval from now on
    if any(changes.get(a) is not None for a in ("address", "port")) or (
        body.credentials is not None or body.community is not None
    ):
        # A person's address and credentials: discovery proposes moves from now on, never makes them.
        printer.person_edited = True
        if changes.get("address") is not None or changes.get("port") is not None:
            printer.proposed_address = printer.proposed_port = printer.proposed_at = None
    if body.monitored is not None:
        printer.monitored = body.monitored
    new_creds = body.new_credentials()
    if new_creds is not None or body.community is not None:
        creds = new_creds.model_dump() if new_creds else dict(printer.credentials or {})
        if body.community is not None:
            creds["community"] = body.community
        # Now the user's own: a later sweep must not replace them with what it found.
        creds.pop(FROM_DISCOVERY, None)
        printer.credentials = creds
    now = datetime.now(UTC)
    if printer.monitored:
        event = configured_event(printer, source=source, site_id=printer.site_id)
        printer.config_at = event.occurred_at
        add_to_outbox(session, event)
    elif was_monitored:
        removed = PrinterRemoved(source=source, site_id=printer.site_id, printer_id=printer.id)
        printer.config_at = removed.occurred_at
        add_to_outbox(session, removed)
    printer.updated_at = now
    refresh_status(session, printer)
    fields = sorted(body.model_dump(exclude_unset=True).keys())
    # Which fields changed, never their values (credentials may be among them).
    audit(session, who, "printer.update", printer.id, fields=fields)
    return printer


def delete_printer(session: Session, who: Principal, printer_id: str, source: str) -> None:
    """Tombstone the printer and queue PrinterRemoved (history stays for the record)."""
    printer = get_printer(session, who.tenant_id, printer_id)
    removed = PrinterRemoved(source=source, site_id=printer.site_id, printer_id=printer.id)
    printer.monitored = False
    printer.removed_at = printer.config_at = removed.occurred_at
    printer.updated_at = datetime.now(UTC)
    session.add(printer)
    add_to_outbox(session, removed)
    audit(session, who, "printer.delete", printer.id)


def readings(
    session: Session,
    tenant_id: str,
    printer_id: str,
    since: datetime,
    until: datetime,
    limit: int,
    resolution: Resolution = "raw",
    *,
    newest_first: bool = False,
) -> list[ReadingOut]:
    """Return the printer's supply levels between since and until at resolution, oldest (or
    newest) first."""
    get_printer(session, tenant_id, printer_id)
    return [
        ReadingOut(
            supply_index=p.supply_index,
            occurred_at=p.at,
            percent=p.percent,
            level=p.level,
            resolution=resolution,
            min_percent=p.min_percent,
            max_percent=p.max_percent,
            last_percent=p.last_percent,
            count=p.count,
        )
        for p in level_history(
            session, printer_id, since, until, resolution, limit, newest_first=newest_first
        )
    ]


def printer_status_counts(session: Session) -> dict[str, int]:
    """Return live printers per status (all tenants; for metrics)."""
    q = (
        select(Printer.status, func.count())
        .where(col(Printer.removed_at).is_(None))
        .group_by(col(Printer.status))
    )
    return {status: int(n) for status, n in session.exec(q).all()}


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
