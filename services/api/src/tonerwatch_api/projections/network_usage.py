"""Network usage from the services' NetworkUsage events."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session

from tonerwatch_api.db.models import ProcessedEvent
from tonerwatch_api.db.usage import DISCOVERY, POLLING, SYNC, NetworkUsageDay
from tonerwatch_api.projections.arrays import insert_rows, sqlite_rows
from tonerwatch_api.projections.processed import record_processed
from tonerwatch_shared.events import DiscoveryFinished, Event, SupplyReading, UpstreamSynced

# processed_events is keyed by event id and the read-model projections already use the plain id:
# this projection records a derived id, so the two never collide.
_USAGE_NS = uuid.UUID("1b6c0f57-3a55-4a0e-8f0c-5d2b7f7d9e21")
CONSUMER = "api-network-usage"


_USAGE_NS_BYTES = _USAGE_NS.bytes


def usage_key(event: Event) -> str:
    """Return the processed_events key of event for this projection (36 characters, like an id).

    str(uuid.uuid5(_USAGE_NS, str(event.event_id))), without building a UUID object (a reading
    in a batch costs a key each).
    """
    digest = bytearray(hashlib.sha1(_USAGE_NS_BYTES + str(event.event_id).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _where(event: Event) -> tuple[str, str, str] | None:
    """Return (site, printer or '', kind) of the day row event counts in, None if it counts nowhere."""
    if isinstance(event, SupplyReading):
        return (event.site_id, event.printer_id, POLLING)
    if isinstance(event, DiscoveryFinished):
        return (event.site_id, "", DISCOVERY)
    if isinstance(event, UpstreamSynced):
        return (event.site_id, event.printer_id or "", SYNC)
    return None


def apply_usage(session: Session, event: Event) -> str:
    """Add the bytes an event reports to its day; return "applied", "duplicate" or "ignored"."""
    where = _where(event)
    if where is None:
        return "ignored"
    assert isinstance(event, SupplyReading | DiscoveryFinished | UpstreamSynced)
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


def _table(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


_SUMS = ("bytes_sent", "bytes_received", "operations")
# The rows go as arrays on PostgreSQL (arrays.insert_rows), with one executemany of the driver
# on SQLite (arrays.sqlite_rows), the sums added on conflict.
_ADD = "ON CONFLICT (day, site_id, printer_id, kind) DO UPDATE SET " + ", ".join(
    f"{c} = {_table(NetworkUsageDay).name}.{c} + EXCLUDED.{c}" for c in _SUMS
)


def apply_usage_batch(session: Session, events: Sequence[Event]) -> list[str]:
    """apply_usage for each event in turn, in two statements: the same rows and outcomes.

    The events' keys go into processed_events in one INSERT ... ON CONFLICT DO NOTHING RETURNING
    (record_processed, in key order: concurrent batches never deadlock); the new ones are summed
    per day row and added with one upsert of every row (in key order; on PostgreSQL as arrays).
    """
    outcomes = ["ignored"] * len(events)
    first_of: dict[str, int] = {}
    for i, event in enumerate(events):
        if _where(event) is not None:
            outcomes[i] = "duplicate"
            first_of.setdefault(usage_key(event), i)
    if not first_of:
        return outcomes
    postgres = session.get_bind().dialect.name == "postgresql"
    new = record_processed(session, sorted(first_of), CONSUMER, datetime.now(UTC))
    days: dict[tuple[date, str, str, str], list[int]] = {}
    for key, i in first_of.items():
        if key not in new:
            continue
        event = events[i]
        outcomes[i] = "applied"
        where = _where(event)
        assert where is not None
        assert isinstance(event, SupplyReading | DiscoveryFinished | UpstreamSynced)
        total = days.setdefault((event.occurred_at.astimezone(UTC).date(), *where), [0, 0, 0])
        total[0] += event.bytes_sent
        total[1] += event.bytes_received
        total[2] += 1
    rows = [
        {
            "day": day,
            "site_id": site_id,
            "printer_id": printer_id,
            "kind": kind,
            "bytes_sent": sent,
            "bytes_received": received,
            "operations": operations,
        }
        for (day, site_id, printer_id, kind), (sent, received, operations) in sorted(days.items())
    ]
    if rows and postgres:
        insert_rows(session, _table(NetworkUsageDay), list(rows[0]), rows, _ADD)
    elif rows:
        sqlite_rows(session, _table(NetworkUsageDay), list(rows[0]), rows, _ADD)
    return outcomes
