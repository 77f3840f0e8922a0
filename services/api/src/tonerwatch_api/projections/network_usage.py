"""Network usage from the services' NetworkUsage events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlmodel import Session

from tonerwatch_api.db.models import ProcessedEvent
from tonerwatch_api.db.usage import DISCOVERY, POLLING, SYNC, NetworkUsageDay
from tonerwatch_shared.events import DiscoveryFinished, Event, SupplyReading, UpstreamSynced

# processed_events is keyed by event id and the read-model projections already use the plain id:
# this projection records a derived id, so the two never collide.
_USAGE_NS = uuid.UUID("1b6c0f57-3a55-4a0e-8f0c-5d2b7f7d9e21")
CONSUMER = "api-network-usage"


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
