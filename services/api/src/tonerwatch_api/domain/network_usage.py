"""Network usage: bytes on the wire per day, site and printer."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Printer, Site
from tonerwatch_api.db.usage import KINDS, POLLING, SYNC, NetworkUsageDay
from tonerwatch_api.schemas.network_usage import (
    UsageDay,
    UsageOut,
    UsagePrinter,
    UsageSite,
    UsageTotals,
)


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
