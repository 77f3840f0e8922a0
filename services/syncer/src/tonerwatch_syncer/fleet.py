"""What the syncer knows of each printer, folded from events into a KV bucket (pure folds, one seam).

The syncer never asks the api: the snapshot's printers come from the events every service sees
(readings, configuration, reachability), kept per printer in the `SYNC_FLEET` bucket so a restart
or another replica has them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from tonerwatch_shared.coverage import CoverageRule, evaluate, extend_run, rule_for
from tonerwatch_shared.events import (
    Event,
    OrderChanged,
    PrinterConfigured,
    PrinterCoverage,
    PrinterReachable,
    PrinterRemoved,
    PrinterUnreachable,
    SupplyReading,
)
from tonerwatch_shared.ordering import Position, is_newer, is_stale, position_of
from tonerwatch_shared.upstream import MeterRead, PrinterEntry

FLEET_BUCKET = "SYNC_FLEET"
STATE_BUCKET = "SYNC_STATE"
# Per alert id: the position of the last crossed/resolved forwarded (older ones are not).
ORDER_BUCKET = "SYNC_ORDER"


class KnownPrinter(BaseModel):
    """One printer of one site as the syncer last heard of it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    site_id: str
    entry: PrinterEntry
    # Set by the api (printer-configured); wins over what the printer says of itself.
    configured_name: str | None = None
    configured_location: str | None = None
    removed: bool = False
    updated_at: AwareDatetime | None = None
    # Position (tonerwatch_shared.ordering) of the newest reading or (un)reachable folded in.
    status_seq: int | None = None
    status_at: AwareDatetime | None = None
    # Service coverage from our own records: the start of continuous monitoring (extend_run) and
    # the orders placed through TonerWatch (not cancelled), order id -> when placed.
    monitoring_since: AwareDatetime | None = None
    orders: dict[str, AwareDatetime] = {}
    # seq of the newest reading folded in (with entry.last_read_at, its position). Readings and
    # (un)reachable come through different consumers: readings are ordered among themselves.
    read_seq: int | None = None
    # The api's newest announcement of the printer's coverage (its record): used in the snapshot
    # instead of the coverage folded here, which knows only the events this syncer has seen.
    api_coverage: PrinterCoverage | None = None

    def read_position(self) -> Position | None:
        """Return the position of the newest reading folded in (None: none yet)."""
        at = self.entry.last_read_at
        return None if at is None else Position(self.read_seq, at)

    def status_position(self) -> Position | None:
        """Return the position of the newest reading or (un)reachable folded in (None: none)."""
        at = self.status_at or self.entry.last_read_at
        return None if at is None else Position(self.status_seq, at)

    def status_applied(self, event: Event) -> dict[str, Any]:
        """Return the fields recording event as the newest status (a seq-less one keeps the seq)."""
        position = position_of(event)
        seq = position.seq if position.seq is not None else self.status_seq
        return {"status_seq": seq, "status_at": position.at}


# Orders remembered per printer for coverage (the newest; a rule needs a handful).
ORDERS_KEPT = 50


class SiteSyncState(BaseModel):
    """Per site: what was last sent on schedule, and the downlink cursor."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    last_snapshot_day: str | None = None
    last_meter_period: str | None = None
    downlink_cursor: str | None = None


# What a steady reading changes: when the printer was read (and its position).
_READ_TIMES = frozenset({"updated_at", "read_seq", "status_seq", "status_at", "entry"})


def only_read_times_differ(old: KnownPrinter, new: KnownPrinter) -> bool:
    """Return whether new differs from old only in when the printer was last read (steady)."""
    if any(v != old.__dict__[k] for k, v in new.__dict__.items() if k not in _READ_TIMES):
        return False
    entry = old.entry.__dict__
    return all(v == entry[k] for k, v in new.entry.__dict__.items() if k != "last_read_at")


def _blank(event: Event, printer_id: str, address: str) -> KnownPrinter:
    return KnownPrinter(
        site_id=event.site_id, entry=PrinterEntry(printer_id=printer_id, address=address)
    )


def fold(
    known: KnownPrinter | None,
    event: Event,
    rules: Mapping[str, CoverageRule] | None = None,
) -> KnownPrinter | None:
    """Return the printer after event (None: nothing to store, e.g. an older reading).

    rules: the coverage rules per vendor (their max_gap_days say what continuous monitoring is).
    """
    if isinstance(event, SupplyReading):
        base = known or _blank(event, event.printer_id, event.address)
        last = base.entry.last_read_at
        gap = rule_for(event.printer.vendor or base.entry.vendor, rules or {}).max_gap
        since = extend_run(base.monitoring_since, last, event.occurred_at, gap)
        if not is_newer(base.read_position(), event):
            # A redelivered or late reading must not roll the levels back; history sent late
            # may still extend continuous monitoring back.
            if since == base.monitoring_since:
                return None
            return base.model_copy(update={"monitoring_since": since})
        # It answered, unless an unreachable after it told the status already.
        answered = not is_stale(base.status_position(), event)
        seq = position_of(event).seq
        ident = event.printer
        entry = base.entry.model_copy(
            update={
                "address": event.address,
                "vendor": ident.vendor,
                "model": ident.model,
                "serial": ident.serial,
                "mac_address": ident.mac_address,
                "firmware": ident.firmware,
                "name": base.configured_name or ident.sys_name,
                "location": base.configured_location or ident.sys_location,
                "supplies": event.supplies,
                "counters": event.counters,
                "status": event.status,
                "reachable": True if answered else base.entry.reachable,
                "last_read_at": event.occurred_at,
            }
        )
        return base.model_copy(
            update={
                "site_id": event.site_id,
                "entry": entry,
                "removed": False,
                "updated_at": event.occurred_at,
                "read_seq": seq if seq is not None else base.read_seq,
                **(base.status_applied(event) if answered else {}),
                "monitoring_since": since,
            }
        )
    if isinstance(event, OrderChanged):
        base = known or _blank(event, event.printer_id, "")
        orders = dict(base.orders)
        if event.status == "cancelled" or event.change == "deleted":
            if event.order_id not in orders:
                return None
            orders.pop(event.order_id)
        elif orders.get(event.order_id) == event.created_at:
            return None
        else:
            orders[event.order_id] = event.created_at
            newest = sorted(orders.items(), key=lambda kv: kv[1])[-ORDERS_KEPT:]
            orders = dict(newest)
        return base.model_copy(update={"orders": orders})
    if isinstance(event, PrinterCoverage):
        base = known or _blank(event, event.printer_id, "")
        if base.api_coverage is not None and not is_newer(position_of(base.api_coverage), event):
            return None  # an older (or the same) announcement: the newest one stands
        return base.model_copy(update={"api_coverage": event})
    if isinstance(event, PrinterConfigured):
        base = known or _blank(event, event.printer_id, event.address)
        entry = base.entry.model_copy(
            update={
                "address": event.address,
                "name": event.name or base.entry.name,
                "location": event.location or base.entry.location,
            }
        )
        return base.model_copy(
            update={
                "site_id": event.site_id,
                "entry": entry,
                "configured_name": event.name,
                "configured_location": event.location,
                "removed": not event.monitored,
                "updated_at": event.occurred_at,
            }
        )
    if isinstance(event, PrinterRemoved):
        return known.model_copy(update={"removed": True}) if known else None
    if isinstance(event, PrinterUnreachable | PrinterReachable) and known is not None:
        reachable = isinstance(event, PrinterReachable)
        if is_stale(known.status_position(), event):
            return None  # a reading or reachability after it already told the status
        return known.model_copy(
            update={
                "entry": known.entry.model_copy(update={"reachable": reachable}),
                **known.status_applied(event),
            }
        )
    return None


def with_coverage(
    known: KnownPrinter, rules: Mapping[str, CoverageRule], now: datetime
) -> PrinterEntry:
    """Return the printer's entry with its service coverage as of now.

    From the api's newest announcement when one arrived (its rule, monitoring and orders, plus
    orders placed after it and readings newer than it, seen here); else from what this syncer
    folded itself.
    """
    api = known.api_coverage
    if api is not None:
        later = [t for t in known.orders.values() if t > api.occurred_at]
        coverage = evaluate(
            api.coverage.rule,
            api.monitoring_since,
            sorted((*api.orders_at, *later)),
            now,
            last_seen=latest(api.last_seen_at, known.entry.last_read_at),
        )
        return known.entry.model_copy(update={"coverage": coverage})
    coverage = evaluate(
        rule_for(known.entry.vendor, rules),
        known.monitoring_since,
        list(known.orders.values()),
        now,
        last_seen=known.entry.last_read_at,
    )
    return known.entry.model_copy(update={"coverage": coverage})


def site_entries(
    printers: Iterable[KnownPrinter],
    site_id: str,
    rules: Mapping[str, CoverageRule] | None = None,
    now: datetime | None = None,
) -> tuple[PrinterEntry, ...]:
    """Return the monitored printers of site_id as snapshot entries, ordered by printer id.

    With now, each entry carries its service coverage as of then (rules: per vendor).
    """
    return tuple(
        sorted(
            (
                with_coverage(p, rules or {}, now) if now is not None else p.entry
                for p in printers
                if p.site_id == site_id and not p.removed and p.entry.address
            ),
            key=lambda e: e.printer_id,
        )
    )


def meter_reads(entries: Iterable[PrinterEntry]) -> tuple[MeterRead, ...]:
    """Return each printer's meters as a billing read."""
    return tuple(
        MeterRead(
            printer_id=e.printer_id,
            serial=e.serial,
            vendor=e.vendor,
            model=e.model,
            read_at=e.last_read_at,
            counters=e.counters,
        )
        for e in entries
    )


def latest(a: datetime | None, b: datetime | None) -> datetime | None:
    """Return the later of two optional times."""
    if a is None or b is None:
        return a or b
    return max(a, b)
