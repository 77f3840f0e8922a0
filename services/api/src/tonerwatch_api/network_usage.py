"""Network impact, measured: bytes per day spent polling (SupplyReading), discovering (DiscoveryFinished) and syncing upstream (UpstreamSynced)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field
from sqlalchemy import BigInteger, Column, Date, case, func
from sqlalchemy import select as sa_select
from sqlmodel import Field as SqlField
from sqlmodel import Session, SQLModel, col, select

from tonerwatch_api.models import Printer, ProcessedEvent, Site
from tonerwatch_shared.events import DiscoveryFinished, Event, SupplyReading, UpstreamSynced

POLLING = "polling"
DISCOVERY = "discovery"
SYNC = "sync"
KINDS = (POLLING, DISCOVERY, SYNC)
# processed_events is keyed by event id and the read-model projections already use the plain id:
# this projection records a derived id, so the two never collide.
_USAGE_NS = uuid.UUID("1b6c0f57-3a55-4a0e-8f0c-5d2b7f7d9e21")
CONSUMER = "api-network-usage"


class NetworkUsageDay(SQLModel, table=True):
    """Bytes on the wire for one kind of work, one site (and printer, '' if none), one UTC day."""

    __tablename__ = "network_usage_daily"
    day: date = SqlField(sa_column=Column(Date(), primary_key=True))
    site_id: str = SqlField(primary_key=True, max_length=64)
    printer_id: str = SqlField(primary_key=True, max_length=128, default="")
    kind: str = SqlField(primary_key=True, max_length=16)
    # BigInteger: 10,000 printers polled every 5 minutes move gigabytes a day.
    bytes_sent: int = SqlField(default=0, sa_column=Column(BigInteger(), nullable=False))
    bytes_received: int = SqlField(default=0, sa_column=Column(BigInteger(), nullable=False))
    operations: int = SqlField(default=0, sa_column=Column(BigInteger(), nullable=False))


def usage_key(event: Event) -> str:
    """Return the processed_events key of event for this projection (36 characters, like an id)."""
    return str(uuid.uuid5(_USAGE_NS, str(event.event_id)))


def apply_usage(session: Session, event: Event) -> str:
    """Add the bytes an event reports to its day; return "applied", "duplicate" or "ignored"."""
    if isinstance(event, SupplyReading):
        where = (event.site_id, event.printer_id, POLLING)
    elif isinstance(event, DiscoveryFinished):
        where = (event.site_id, "", DISCOVERY)
    elif isinstance(event, UpstreamSynced):
        where = (event.site_id, event.printer_id or "", SYNC)
    else:
        return "ignored"
    key = usage_key(event)
    if session.get(ProcessedEvent, key) is not None:
        return "duplicate"
    session.add(ProcessedEvent(event_id=key, consumer=CONSUMER, processed_at=datetime.now(UTC)))
    session.flush()
    day = event.occurred_at.astimezone(UTC).date()
    site_id, printer_id, kind = where
    row = session.get(NetworkUsageDay, (day, site_id, printer_id, kind))
    if row is None:
        row = NetworkUsageDay(day=day, site_id=site_id, printer_id=printer_id, kind=kind)
    row.bytes_sent += event.bytes_sent
    row.bytes_received += event.bytes_received
    row.operations += 1
    session.add(row)
    return "applied"


# Examples in the OpenAPI document: one day of one site with one printer polled every 5 minutes.
_POLLING: dict[str, Any] = {
    "kind": POLLING,
    "bytes_sent": 118080,
    "bytes_received": 849600,
    "operations": 288,
    "total": 967680,
}
_DISCOVERY: dict[str, Any] = {
    "kind": DISCOVERY,
    "bytes_sent": 10496,
    "bytes_received": 1590,
    "operations": 1,
    "total": 12086,
}
_SYNC: dict[str, Any] = {
    "kind": SYNC,
    "bytes_sent": 1710,
    "bytes_received": 498,
    "operations": 2,
    "total": 2208,
}
_KINDS: dict[str, Any] = {POLLING: _POLLING, DISCOVERY: _DISCOVERY, SYNC: _SYNC}
_PRINTER: dict[str, Any] = {
    "printer_id": "p-3f2a9c01de",
    "site_id": "acme-hq",
    "name": "Reception colour",
    "address": "192.0.2.31",
    "polling": _POLLING,
    "bytes_per_poll": 3360.0,
    "sync": _SYNC,
}


class UsageTotals(BaseModel):
    """Bytes for one kind of work."""

    model_config = ConfigDict(json_schema_extra={"examples": [_POLLING]})
    kind: str
    bytes_sent: int = 0
    bytes_received: int = 0
    operations: int = Field(
        default=0, description="Polls, discovery sweeps, or events delivered upstream"
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        """Return bytes both ways."""
        return self.bytes_sent + self.bytes_received


class UsageDay(BaseModel):
    """One day, per kind of work."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"day": "2025-03-14", "kinds": _KINDS}]}
    )
    day: date
    kinds: dict[str, UsageTotals]


class UsageSite(BaseModel):
    """One site over the period, per kind of work."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"site_id": "acme-hq", "name": "ACME headquarters", "kinds": _KINDS}]
        }
    )
    site_id: str
    name: str
    kinds: dict[str, UsageTotals]


class UsagePrinter(BaseModel):
    """One printer's polling and upstream sync over the period."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PRINTER]})
    printer_id: str
    site_id: str
    name: str | None
    address: str | None
    polling: UsageTotals
    bytes_per_poll: float
    sync: UsageTotals = Field(
        default_factory=lambda: UsageTotals(kind=SYNC),
        description="Its alerts and replacements delivered upstream",
    )


class UsageOut(BaseModel):
    """Network impact of TonerWatch over a period, measured on the wire."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "since": "2025-03-14",
                    "until": "2025-03-14",
                    "days": [{"day": "2025-03-14", "kinds": _KINDS}],
                    "sites": [{"site_id": "acme-hq", "name": "ACME headquarters", "kinds": _KINDS}],
                    "printers": [_PRINTER],
                    "totals": _KINDS,
                }
            ]
        }
    )
    since: date
    until: date
    days: list[UsageDay]
    sites: list[UsageSite]
    printers: list[UsagePrinter]
    totals: dict[str, UsageTotals]


def usage(
    session: Session,
    tenant_id: str,
    days: int,
    site_id: str | None = None,
    top_printers: int = 50,
    today: date | None = None,
) -> UsageOut:
    """Return bytes per day, per site and per printer (top by bytes) for the tenant's sites."""
    until = today or datetime.now(UTC).date()
    since = until - timedelta(days=days - 1)
    sites = {
        s.id: s.name
        for s in session.exec(select(Site).where(Site.tenant_id == tenant_id)).all()
        if site_id is None or s.id == site_id
    }
    base = sa_select(
        col(NetworkUsageDay.day),
        col(NetworkUsageDay.site_id),
        col(NetworkUsageDay.kind),
        func.sum(col(NetworkUsageDay.bytes_sent)),
        func.sum(col(NetworkUsageDay.bytes_received)),
        func.sum(col(NetworkUsageDay.operations)),
    ).where(
        col(NetworkUsageDay.site_id).in_(list(sites)),
        col(NetworkUsageDay.day) >= since,
        col(NetworkUsageDay.day) <= until,
    )
    per_day: dict[date, dict[str, UsageTotals]] = defaultdict(dict)
    per_site: dict[str, dict[str, UsageTotals]] = defaultdict(dict)
    totals = {k: UsageTotals(kind=k) for k in KINDS}
    rows = session.execute(
        base.group_by(
            col(NetworkUsageDay.day), col(NetworkUsageDay.site_id), col(NetworkUsageDay.kind)
        )
    ).all()
    for day, site, kind, sent, received, ops in rows:
        for bucket in (
            per_day[day].setdefault(kind, UsageTotals(kind=kind)),
            per_site[site].setdefault(kind, UsageTotals(kind=kind)),
            totals.setdefault(kind, UsageTotals(kind=kind)),
        ):
            bucket.bytes_sent += int(sent or 0)
            bucket.bytes_received += int(received or 0)
            bucket.operations += int(ops or 0)
    day_list = []
    for i in range(days):
        d = since + timedelta(days=i)
        kinds = {k: per_day.get(d, {}).get(k, UsageTotals(kind=k)) for k in KINDS}
        day_list.append(UsageDay(day=d, kinds=kinds))
    site_list = [
        UsageSite(
            site_id=s,
            name=sites[s],
            kinds={k: per_site.get(s, {}).get(k, UsageTotals(kind=k)) for k in KINDS},
        )
        for s in sorted(sites, key=lambda s: -sum(t.total for t in per_site.get(s, {}).values()))
    ]
    return UsageOut(
        since=since,
        until=until,
        days=day_list,
        sites=site_list,
        printers=_printers(session, list(sites), since, until, top_printers),
        totals=totals,
    )


def _printers(
    session: Session, sites: list[str], since: date, until: date, limit: int
) -> list[UsagePrinter]:
    total = func.sum(NetworkUsageDay.bytes_sent + NetworkUsageDay.bytes_received)

    def of(kind: str, column: Any) -> Any:
        return func.sum(case((col(NetworkUsageDay.kind) == kind, column), else_=0))

    per_kind = [
        of(kind, col(column))
        for kind in (POLLING, SYNC)
        for column in (
            NetworkUsageDay.bytes_sent,
            NetworkUsageDay.bytes_received,
            NetworkUsageDay.operations,
        )
    ]
    q = (
        sa_select(col(NetworkUsageDay.printer_id), col(NetworkUsageDay.site_id), *per_kind)
        .where(
            col(NetworkUsageDay.site_id).in_(sites),
            col(NetworkUsageDay.kind).in_((POLLING, SYNC)),
            # Sync of an event without a printer is the site's, not a printer's.
            col(NetworkUsageDay.printer_id) != "",
            col(NetworkUsageDay.day) >= since,
            col(NetworkUsageDay.day) <= until,
        )
        .group_by(col(NetworkUsageDay.printer_id), col(NetworkUsageDay.site_id))
        .order_by(total.desc(), col(NetworkUsageDay.printer_id))
        .limit(limit)
    )
    rows = session.execute(q).all()
    ids = [r[0] for r in rows]
    printers = {
        p.id: p for p in session.exec(select(Printer).where(col(Printer.id).in_(ids))).all()
    }
    out = []
    for pid, site, sent, received, ops, sync_sent, sync_received, syncs in rows:
        p = printers.get(pid)
        t = UsageTotals(
            kind=POLLING,
            bytes_sent=int(sent or 0),
            bytes_received=int(received or 0),
            operations=int(ops or 0),
        )
        sync = UsageTotals(
            kind=SYNC,
            bytes_sent=int(sync_sent or 0),
            bytes_received=int(sync_received or 0),
            operations=int(syncs or 0),
        )
        out.append(
            UsagePrinter(
                printer_id=pid,
                site_id=site,
                name=(p.name or p.model) if p else None,
                address=p.address if p else None,
                polling=t,
                bytes_per_poll=round(t.total / t.operations, 1) if t.operations else 0.0,
                sync=sync,
            )
        )
    return out


def human_bytes(n: float) -> str:
    """Return a byte count the way people read it (1.2 MB), decimal units."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


USAGE_TABLES: tuple[type[SQLModel], ...] = (NetworkUsageDay,)
