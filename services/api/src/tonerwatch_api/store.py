"""Tenant-scoped queries and changes (synchronous; callers run them in a worker thread)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, bindparam, case, func, literal_column, or_, true
from sqlmodel import Session, col, select

from tonerwatch_api.history import Resolution, level_history
from tonerwatch_api.models import (
    Alert,
    ApiToken,
    AuditEntry,
    Printer,
    Site,
    SupplyStateRow,
    User,
)
from tonerwatch_api.projections import (
    FROM_DISCOVERY,
    add_to_outbox,
    configured_event,
    new_printer_id,
    refresh_status,
)
from tonerwatch_api.schemas import (
    AlertOut,
    PrinterIn,
    PrinterOut,
    PrinterPatch,
    ReadingOut,
    SupplyOut,
)
from tonerwatch_api.security import token_hash
from tonerwatch_api.views import STATUS_RANK, printer_status
from tonerwatch_shared.events import PrinterRemoved


class NotFound(Exception):
    """The thing does not exist for this tenant (another tenant's looks the same: absent)."""


class Conflict(Exception):
    """The change clashes with what is stored; the message says how."""


@dataclass(frozen=True)
class Scope:
    """What a user answers for: printers of these sites, and these printer groups' printers."""

    sites: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()

    @property
    def everything(self) -> bool:
        """Return whether no site nor group is chosen, which means every site of the tenant."""
        return not self.sites and not self.groups


@dataclass(frozen=True)
class Principal:
    """Who is calling: user, role, tenant, token scopes and how they authenticated."""

    user_id: int
    username: str
    role: str
    tenant_id: str
    scopes: frozenset[str]
    via: str  # "bearer" or "session"
    token_hash: str


def authenticate(session: Session, token: str, now: datetime) -> Principal | None:
    """Return the principal behind a bearer or session token, None when unknown/expired/revoked."""
    digest = token_hash(token)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    # One write a minute at most: last_used_at is for humans, not an audit trail.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
        session.add(row)
    return Principal(
        user_id=user.id or 0,
        username=user.username,
        role=user.role,
        tenant_id=user.tenant_id,
        scopes=frozenset(row.scopes.split()),
        via="session" if row.kind == "session" else "bearer",
        token_hash=digest,
    )


def issue_token(
    session: Session,
    user: User,
    token: str,
    *,
    kind: str,
    scopes: Sequence[str],
    expires_at: datetime | None,
    name: str | None = None,
) -> ApiToken:
    """Store (the hash of) a new token for user; return the row."""
    row = ApiToken(
        user_id=user.id or 0,
        token_hash=token_hash(token),
        kind=kind,
        name=name,
        scopes=" ".join(scopes),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row


def revoke_token_hash(session: Session, digest: str, now: datetime) -> None:
    """Revoke the token with this hash (logout)."""
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
        session.add(row)


def audit(
    session: Session, who: Principal | None, action: str, target: str | None, **detail: Any
) -> None:
    """Record a change (never pass secrets in detail)."""
    session.add(
        AuditEntry(
            username=who.username if who else None,
            tenant_id=who.tenant_id if who else None,
            action=action,
            target=target,
            detail=detail or None,
        )
    )


# --- sites ---------------------------------------------------------------------------------------


def tenant_sites(session: Session, tenant_id: str) -> list[Site]:
    """Return the tenant's sites by id."""
    return list(
        session.exec(select(Site).where(Site.tenant_id == tenant_id).order_by(col(Site.id))).all()
    )


def get_site(session: Session, tenant_id: str, site_id: str) -> Site:
    """Return the tenant's site, or raise NotFound."""
    site = session.get(Site, site_id)
    if site is None or site.tenant_id != tenant_id:
        raise NotFound(f"site {site_id!r} not found")
    return site


def site_printer_counts(session: Session, tenant_id: str) -> dict[str, int]:
    """Return live printers per site of the tenant."""
    q = (
        select(Printer.site_id, func.count())
        .join(Site, col(Site.id) == col(Printer.site_id))
        .where(Site.tenant_id == tenant_id, col(Printer.removed_at).is_(None))
        .group_by(col(Printer.site_id))
    )
    return {site: int(n) for site, n in session.exec(q).all()}


# --- printers ------------------------------------------------------------------------------------


def _tenant_printers(tenant_id: str) -> Any:
    return (
        select(Printer)
        .join(Site, col(Site.id) == col(Printer.site_id))
        .where(Site.tenant_id == tenant_id, col(Printer.removed_at).is_(None))
    )


def responsibility(session: Session, user_id: int) -> Scope:
    """Return the sites and printer groups a user answers for (neither: everything)."""
    from tonerwatch_api.alert_settings import user_groups, user_scope  # late: it imports us

    return Scope(tuple(user_scope(session, user_id)), tuple(user_groups(session, user_id)))


def in_scope(scope: Scope, site_column: Any, printer_column: Any) -> ColumnElement[bool]:
    """Return the condition: the row's site or printer (through its groups) is the user's."""
    if scope.everything:
        return true()
    by_site = col(site_column).in_(list(scope.sites))
    if not scope.groups:
        return by_site
    return or_(by_site, col(printer_column).in_(_group_members(scope.groups)))


def _group_members(group_ids: Sequence[int]) -> Any:
    """Return the select of the printer ids in any of group_ids."""
    from tonerwatch_api.groups import PrinterGroupMember  # late: groups imports this module

    return select(PrinterGroupMember.printer_id).where(
        col(PrinterGroupMember.group_id).in_(list(group_ids))
    )


def _printer_filters(
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
    for cond in _printer_filters(site_id, search, site_ids, group_ids, scope):
        q = q.where(cond)
    if statuses:
        q = q.where(col(Printer.status).in_(list(statuses)))
    if monitored is not None:
        q = q.where(col(Printer.monitored) == monitored)
    return q


def alerts_query(
    tenant_id: str,
    *,
    open_only: bool,
    printer_id: str | None = None,
    site_id: str | None = None,
    severities: Sequence[str] = (),
    site_ids: Sequence[str] | None = None,
    scope: Scope | None = None,
) -> Any:
    """Return the select of (alert, printer name) of the tenant matching the list filters."""
    q = (
        select(Alert, Printer.name)
        .join(Printer, col(Printer.id) == col(Alert.printer_id))
        .join(Site, col(Site.id) == col(Printer.site_id))
        .where(Site.tenant_id == tenant_id)
    )
    if open_only:
        q = q.where(col(Alert.resolved_at).is_(None))
    if printer_id:
        q = q.where(Alert.printer_id == printer_id)
    if severities:
        q = q.where(col(Alert.severity).in_(list(severities)))
    for cond in _printer_filters(site_id, None, site_ids, scope=scope):
        q = q.where(cond)
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
    # The SQL twin of views.attention_key: status rank, then name (or address), then id.
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
) -> FleetPage:
    """Return one page of the tenant's printers, attention first (four queries, whatever the fleet)."""
    filters = _printer_filters(site_id, search, site_ids, group_ids, scope)
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
    order = _attention_order(session.get_bind().dialect.name)
    ids = list(session.exec(ids_q.order_by(*order).offset(offset).limit(limit)).all())
    by_id = {p.id: p for p in session.exec(select(Printer).where(col(Printer.id).in_(ids))).all()}
    rows = [by_id[i] for i in ids if i in by_id]
    return FleetPage(
        printers=printers_out(session, rows), total=sum(counts.values()), counts=counts
    )


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
            .where(col(SupplyStateRow.printer_id).in_(ids))
            .order_by(col(SupplyStateRow.printer_id), col(SupplyStateRow.supply_index))
        ).all():
            supplies[row.printer_id].append(row)
        for pid, severity in session.exec(
            select(Alert.printer_id, Alert.severity).where(
                col(Alert.printer_id).in_(ids), col(Alert.resolved_at).is_(None)
            )
        ).all():
            severities[pid].append(severity)
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
        location=p.location,
        notes=p.notes,
        origin=p.origin,
        vendor=p.vendor,
        model=p.model,
        serial=p.serial,
        sys_object_id=p.sys_object_id,
        mac_address=p.mac_address,
        firmware=p.firmware,
        reachable=p.reachable,
        last_seen_at=p.last_seen_at,
        last_error=p.last_error,
        device_status=p.device_status,
        printer_status=p.printer_status,
        status_errors=list(p.status_errors or []),
        lifetime_pages=p.lifetime_pages,
        last_bytes_sent=p.last_bytes_sent,
        last_bytes_received=p.last_bytes_received,
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
            )
            for s in supplies
        ],
    )


DEFAULT_INTERVAL_S = 300.0  # RFC-free choice: 5 minutes, as the issue and most tools default


def set_site_interval(
    session: Session,
    site: Site,
    interval_s: float | None,
    source: str,
    default_interval_s: float = DEFAULT_INTERVAL_S,
) -> int:
    """Set a site's poll interval and re-announce the printers following it; return how many."""
    site.poll_interval_s = interval_s
    session.add(site)
    followers = session.exec(
        select(Printer).where(
            Printer.site_id == site.id,
            col(Printer.interval_follows_site).is_(True),
            col(Printer.removed_at).is_(None),
        )
    ).all()
    for printer in followers:
        printer.interval_s = interval_s or default_interval_s
        session.add(printer)
        if printer.monitored:
            event = configured_event(printer, source=source, site_id=site.id)
            printer.config_at = event.occurred_at
            add_to_outbox(session, event)
    return len(followers)


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
    )
    event = configured_event(printer, source=source, site_id=site.id)
    printer.config_at = event.occurred_at
    printer.created_at = printer.updated_at = now
    session.add(printer)
    session.flush()
    refresh_status(session, printer)
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
    changes = body.model_dump(exclude_unset=True, exclude={"community", "credentials"})
    for field in ("name", "location", "notes"):
        if field in changes:  # null clears these
            setattr(printer, field, changes[field])
    for field in ("address", "port", "protocol", "interval_s"):
        if changes.get(field) is not None:
            setattr(printer, field, changes[field])
    if changes.get("interval_s") is not None:
        printer.interval_follows_site = False  # its own interval from now on
    if body.monitored is not None:
        printer.monitored = body.monitored
    if body.credentials is not None or body.community is not None:
        creds = (
            body.credentials.model_dump() if body.credentials else dict(printer.credentials or {})
        )
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
) -> list[ReadingOut]:
    """Return the printer's supply levels between since and until at resolution, oldest first."""
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
        for p in level_history(session, printer_id, since, until, resolution, limit)
    ]


# --- alerts --------------------------------------------------------------------------------------


def find_alerts(
    session: Session,
    tenant_id: str,
    *,
    open_only: bool,
    printer_id: str | None = None,
    limit: int = 200,
    site_ids: Sequence[str] | None = None,
    scope: Scope | None = None,
) -> list[AlertOut]:
    """Return the tenant's alerts, newest first (only those of site_ids, and of scope, when given)."""
    q = alerts_query(
        tenant_id, open_only=open_only, printer_id=printer_id, site_ids=site_ids, scope=scope
    )
    q = q.order_by(col(Alert.raised_at).desc(), col(Alert.id).desc()).limit(limit)
    return [alert_out(a, name) for a, name in session.exec(q).all()]


def alert_out(a: Alert, printer_name: str | None) -> AlertOut:
    """Return the API view of an alert."""
    return AlertOut(
        id=a.id or 0,
        alert_id=a.alert_id,
        printer_id=a.printer_id,
        printer_name=printer_name,
        rule=a.rule,
        severity=a.severity,
        message=a.message,
        supply_index=a.supply_index,
        supply_description=a.supply_description,
        part_number=a.part_number,
        colour=a.colour,
        percent=a.percent,
        days_to_empty=a.days_to_empty,
        raised_at=a.raised_at,
        resolved_at=a.resolved_at,
        acknowledged_by=a.acknowledged_by,
        acknowledged_at=a.acknowledged_at,
    )


def acknowledge(session: Session, who: Principal, alert_row_id: int) -> AlertOut:
    """Mark an alert acknowledged by the caller (idempotent)."""
    row = session.exec(
        select(Alert, Printer.name)
        .join(Printer, col(Printer.id) == col(Alert.printer_id))
        .join(Site, col(Site.id) == col(Printer.site_id))
        .where(Site.tenant_id == who.tenant_id, Alert.id == alert_row_id)
    ).first()
    if row is None:
        raise NotFound(f"alert {alert_row_id} not found")
    alert, name = row
    if alert.acknowledged_at is None:
        alert.acknowledged_at = datetime.now(UTC)
        alert.acknowledged_by = who.username
        session.add(alert)
        audit(session, who, "alert.acknowledge", str(alert.id), alert_id=alert.alert_id)
    return alert_out(alert, name)


def open_alert_counts(session: Session) -> dict[str, int]:
    """Return unresolved alerts per severity (all tenants; for metrics)."""
    q = (
        select(Alert.severity, func.count())
        .where(col(Alert.resolved_at).is_(None))
        .group_by(col(Alert.severity))
    )
    return {sev: int(n) for sev, n in session.exec(q).all()}


def printer_status_counts(session: Session) -> dict[str, int]:
    """Return live printers per status (all tenants; for metrics)."""
    q = (
        select(Printer.status, func.count())
        .where(col(Printer.removed_at).is_(None))
        .group_by(col(Printer.status))
    )
    return {status: int(n) for status, n in session.exec(q).all()}


def site_tenants(session: Session) -> dict[str, str]:
    """Return each site's tenant."""
    return {s.id: s.tenant_id for s in session.exec(select(Site)).all()}
