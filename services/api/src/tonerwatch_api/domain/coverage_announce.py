"""Announce each printer's service coverage on the bus (`PrinterCoverage`), the api being its record.

The syncer's daily snapshot uses the newest announcement per printer, so it sends the api's figure
even when it never saw the printer's older readings or orders (started later, or the events
stream aged them out). A printer is announced when what its coverage rests on changes (its
continuous monitoring's start, its orders, its vendor's rule), looked at every
`coverage_announce_interval_s`; every printer at start and every `coverage_reannounce_s` (the
stream keeps events for days only). Event ids are derived from the content: replicas announcing
the same thing publish one event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Printer
from tonerwatch_api.db.orders import Order
from tonerwatch_api.db.tx import run_tx
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.coverage import CoverageRule, evaluate, rule_for
from tonerwatch_shared.events import PrinterCoverage
from tonerwatch_shared.lifecycle import sleep_until_stopped

log = logging.getLogger(__name__)

_COVERAGE_NS = uuid.UUID("6f1c2a4e-3b7d-5e8f-9a0b-c1d2e3f4a5b6")


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def coverage_digest(
    printer_id: str,
    monitoring_since: dt.datetime | None,
    orders: Mapping[str, tuple[str, dt.datetime]],
    rule: CoverageRule,
) -> str:
    """Return a digest of what a printer's coverage rests on (order id -> status, placed at).

    Cancelled orders stay in it: placing then cancelling one is a change, not a return to before.
    """
    parts = [
        printer_id,
        monitoring_since.isoformat() if monitoring_since else "-",
        rule.model_dump_json(),
        *(f"{oid}:{status}:{at.isoformat()}" for oid, (status, at) in sorted(orders.items())),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def coverage_event_id(digest: str) -> uuid.UUID:
    """Return the event id of an announcement with this digest (the same on every replica)."""
    return uuid.uuid5(_COVERAGE_NS, digest)


@dataclass(frozen=True, slots=True)
class CoverageFacts:
    """What one printer's announcement is built from: a few fields, not the event (built at publish)."""

    printer_id: str
    site_id: str
    digest: str
    rule: CoverageRule
    since: dt.datetime | None
    last_seen: dt.datetime | None
    placed: tuple[dt.datetime, ...]

    def event(self, now: dt.datetime, source: str) -> PrinterCoverage:
        """Return the printer's announcement as of now."""
        return PrinterCoverage(
            event_id=coverage_event_id(self.digest),
            occurred_at=now,
            source=source,
            site_id=self.site_id,
            printer_id=self.printer_id,
            monitoring_since=self.since,
            last_seen_at=self.last_seen,
            orders_at=self.placed,
            coverage=evaluate(self.rule, self.since, self.placed, now, last_seen=self.last_seen),
        )


def coverage_looks(
    session: Session,
    rules: Mapping[str, CoverageRule],
    published: Mapping[str, str] | None = None,
) -> list[tuple[str, str, CoverageFacts | None]]:
    """Return (printer id, digest, facts to announce) for every printer not removed.

    published: per printer, the digest last announced; for those unchanged the facts are None.
    A look covers the whole fleet (every printer at start): the announcements themselves are
    built one at a time as they are published (CoverageFacts.event), never all at once.
    """
    orders: dict[str, dict[str, tuple[str, dt.datetime]]] = {}
    for order_id, printer_id, status, created in session.exec(
        select(Order.id, Order.printer_id, Order.status, Order.created_at)
    ).all():
        at = _aware(created)
        assert at is not None
        orders.setdefault(printer_id, {})[order_id] = (status, at)
    out: list[tuple[str, str, CoverageFacts | None]] = []
    # Only the columns it needs (a look covers the whole fleet): five, past sqlmodel's select.
    printers = sa_select(
        col(Printer.id),
        col(Printer.site_id),
        col(Printer.vendor),
        col(Printer.monitoring_since),
        col(Printer.last_seen_at),
    ).where(col(Printer.removed_at).is_(None))
    for printer_id, site_id, vendor, monitoring_since, last_seen_at in session.execute(
        printers
    ).all():
        rule = rule_for(vendor, rules)
        since = _aware(monitoring_since)
        mine = orders.get(printer_id, {})
        digest = coverage_digest(printer_id, since, mine, rule)
        if published is not None and published.get(printer_id) == digest:
            out.append((printer_id, digest, None))
            continue
        placed = tuple(sorted(at for status, at in mine.values() if status != "cancelled"))
        facts = CoverageFacts(
            printer_id, site_id, digest, rule, since, _aware(last_seen_at), placed
        )
        out.append((printer_id, digest, facts))
    return out


def coverage_events(
    session: Session,
    rules: Mapping[str, CoverageRule],
    now: dt.datetime,
    source: str,
    published: Mapping[str, str] | None = None,
) -> list[tuple[str, str, PrinterCoverage | None]]:
    """Return (printer id, digest, announcement) for every printer not removed, as of now.

    published: per printer, the digest last announced; for those unchanged the announcement is
    None (not built: the look stays cheap for a large fleet).
    """
    return [
        (printer_id, digest, facts.event(now, source) if facts is not None else None)
        for printer_id, digest, facts in coverage_looks(session, rules, published)
    ]


class CoverageAnnouncer:
    """Publishes a printer's PrinterCoverage when its digest differs from the last one published."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        rules: Mapping[str, CoverageRule],
        source: str,
        reannounce_s: float = 86_400.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.rules = rules
        self.source = source
        self.reannounce_s = reannounce_s
        self.clock = clock
        # Per printer: the digest last published (empty at start: every printer goes out).
        self.published: dict[str, str] = {}
        self.last_full = time.monotonic()

    async def announce(self) -> int:
        """Publish what changed since the last look (everything once a reannounce_s); return how many."""
        if time.monotonic() - self.last_full >= self.reannounce_s:
            self.published.clear()
            self.last_full = time.monotonic()
        now = self.clock()
        before = dict(self.published)
        found = await run_tx(self.engine, lambda s: coverage_looks(s, self.rules, before))
        sent = 0
        for printer_id, digest, facts in found:
            if facts is None:
                continue  # unchanged since it was announced
            # Built as it goes out: a look at a whole fleet holds no thousand events at once.
            event = facts.event(now, self.source)
            await self.bus.publish(event)  # a failure: not remembered, so tried at the next look
            self.published[printer_id] = digest
            sent += 1
        # Printers removed since: forgotten (announced again should they come back).
        live = {printer_id for printer_id, _, _ in found}
        for printer_id in self.published.keys() - live:
            del self.published[printer_id]
        return sent

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Announce every interval_s until stop (a failure is logged and looked at again)."""
        while not stop.is_set():
            try:
                await self.announce()
            except Exception as exc:
                log.warning("announcing service coverage failed, trying again: %r", exc)
            if await sleep_until_stopped(stop, interval_s):
                return
