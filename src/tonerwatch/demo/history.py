"""Three weeks of backdated readings for the demo fleet, so forecasts, charts and meters show at once.

Pure: builds SupplyReading events from a demo printer's data file (what the poller would read
now) going back in time; `tonerwatch up --demo` publishes them once, before polling starts.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from tonerwatch.demo.fleet import Record, parse_snmprec
from tonerwatch_shared.events import SupplyReading
from tonerwatch_shared.ordering import next_seq
from tonerwatch_shared.printer.model import Counters, PrinterSnapshot, SupplyState
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.snmp.types import IpAddress, Oid, SnmpValue

HISTORY_DAYS = 21
STEP_HOURS = 6
NAMESPACE = uuid.UUID("5f0c7f2e-6b1d-4c59-9d3e-2f1f8a7e0d11")
INT_TAGS = {"2", "65", "66", "67", "70"}


def _value(tag: str, value: str) -> SnmpValue:
    """Return one snmprec record as the value a poll would read (numeric variations: their initial)."""
    base, _, variation = tag.partition(":")
    if variation == "numeric":
        fields = dict(part.split("=", 1) for part in value.split(","))
        return int(float(fields["initial"]))
    if base in INT_TAGS:
        return int(value)
    if base == "4x":
        return bytes.fromhex(value)
    if base == "6":
        return Oid(value)
    if base == "64":
        return IpAddress(value)
    return value.encode()


def snapshot_of(data_file: Path) -> PrinterSnapshot:
    """Return what a poll of the demo printer served from data_file reads at start."""
    records: dict[str, Record] = parse_snmprec(data_file.read_text(encoding="ascii"))
    return parse_snapshot({oid: _value(tag, value) for oid, (tag, value) in records.items()})


def history_events(
    snapshot: PrinterSnapshot,
    *,
    printer_id: str,
    address: str,
    site_id: str,
    now: datetime,
    days: int = HISTORY_DAYS,
    step_hours: int = STEP_HOURS,
) -> list[SupplyReading]:
    """Return readings every step_hours over the last days, oldest first, ending where snapshot is.

    Levels were higher and counters lower in the past; ids are fixed per printer and step, so
    publishing twice adds nothing (JetStream and the api both drop repeats).
    """
    rng = random.Random(printer_id)
    steps = days * 24 // step_hours
    colour = any(s.colour not in (None, "black") for s in snapshot.supplies)
    drops = {
        s.index: min(100.0 - s.percent, rng.uniform(12.0, 40.0)) / steps
        for s in snapshot.supplies
        if s.percent is not None and s.max_capacity
    }
    lifetime = snapshot.counters.lifetime_pages or 40_000 + rng.randrange(60_000)
    pages_per_step = min(rng.randrange(60, 400), lifetime // (steps + 1))
    colour_share = rng.uniform(0.2, 0.45) if colour else 0.0
    events = []
    for back in range(steps, 0, -1):
        supplies = []
        for s in snapshot.supplies:
            drop = drops.get(s.index)
            if drop is None or s.percent is None or not s.max_capacity:
                supplies.append(s)
                continue
            percent = min(100.0, s.percent + drop * back * rng.uniform(0.9, 1.1))
            supplies.append(
                s.model_copy(
                    update={
                        "percent": round(percent, 2),
                        "level": round(percent / 100 * s.max_capacity),
                        "state": SupplyState.OK if percent > 20.0 else s.state,
                    }
                )
            )
        pages = max(lifetime - pages_per_step * back, 0)
        colour_pages = round(pages * colour_share) if colour else None
        at = now - timedelta(hours=step_hours * back)
        events.append(
            SupplyReading(
                event_id=uuid.uuid5(NAMESPACE, f"{printer_id}:{back}"),
                occurred_at=at,
                # The poller's clock-made seq as it would have been then: live polls continue it.
                seq=next_seq(None, at.timestamp()),
                source="tonerwatch-demo",
                site_id=site_id,
                printer_id=printer_id,
                address=address,
                printer=snapshot.printer,
                supplies=tuple(supplies),
                trays=snapshot.trays,
                counters=Counters(
                    lifetime_pages=pages,
                    mono_pages=pages - (colour_pages or 0),
                    colour_pages=colour_pages,
                ),
                status=snapshot.status,
            )
        )
    return events
