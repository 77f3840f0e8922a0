"""Which events each channel has already delivered, so a redelivery after a lost ack is not sent again.

JetStream redelivers an event whose ack was lost (a crash, a replica killed mid-send). The channel
records each delivered event id in a KV bucket with a time-to-live; a redelivered event it finds
there is acked without sending. A record that cannot be written (NATS down or restarting just
after the send) is kept in memory, acked when the event comes back to this replica, and written
with the next write that succeeds. What remains, where the Message-ID / event-id header lets the
receiver dedupe: an alerter killed between the receiver taking the event and the record being
written, or, with several alerter replicas, the redelivery of such an event taken by another one.

It also keeps, per channel and alert, the position (tonerwatch_shared.ordering) of the last alert
event delivered: a crossed or resolved older than it (a dead letter replayed late, a reading
overtaken after an outage) is not sent, so nobody is told "low" after "cleared".
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import nats.js.errors
from nats.js.kv import KeyValue

from tonerwatch_shared.bus import Bus, positions_max_age
from tonerwatch_shared.events import AlertResolved, Event, ThresholdCrossed
from tonerwatch_shared.ordering import Position, StoredPosition, is_stale, newest, position_of

log = logging.getLogger(__name__)

BUCKET = "ALERTER_SENT"
MAX_UNRECORDED = 10_000


def ttl_s(events_max_age_s: float) -> float:
    """Return the bucket's TTL: longer than the events stream (and the dead-letter stream) keep an
    event, so no redelivery or replay outlives its delivered record or its alert's position."""
    return positions_max_age(events_max_age_s)


@dataclass(frozen=True, slots=True)
class _Kept:
    """A send whose record is not yet in KV: what writing it needs, not the whole event."""

    channel: str
    event_id: str
    alert_id: str | None  # an alert event's (its position is written too), else None
    position: Position | None


class Ledger:
    """Delivered (channel, event id) pairs in a KV bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        # Sent, not yet recorded in KV, by key. Only sends whose write failed (NATS unreachable)
        # stay here, until the next write that succeeds writes them all; bounded all the same.
        self._unrecorded: dict[str, _Kept] = {}

    @staticmethod
    def key(channel: str, event_id: str) -> str:
        """Return the KV key of event_id delivered by channel ("mail_it.<uuid>")."""
        return f"{channel}.{event_id}"

    async def delivered(self, channel: str, event_id: str) -> bool:
        """Return whether channel already delivered event_id (kept in memory or recorded in KV)."""
        key = self.key(channel, event_id)
        if key in self._unrecorded:
            # Sent by this replica: ack it whatever happens; its record is written when NATS takes it.
            try:
                await self.flush()
            except Exception as exc:  # NATS still away: a later flush writes them
                log.warning(
                    "sent records not written yet (%d kept): %r", len(self._unrecorded), exc
                )
            return True
        try:
            entry = await self.kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return False
        return bool(entry.value)

    async def record(self, channel: str, event_id: str) -> None:
        """Remember that channel delivered event_id."""
        await self.kv.put(self.key(channel, event_id), b"1")

    async def sent(self, channel: str, event: Event) -> None:
        """Remember that channel sent event (its id, and an alert event's position): kept in memory
        first, then written with any kept before; a write's error is raised, the send stays kept."""
        alert_id = event.alert_id if isinstance(event, ThresholdCrossed | AlertResolved) else None
        kept = _Kept(
            channel,
            str(event.event_id),
            alert_id,
            position_of(event) if alert_id is not None else None,
        )
        key = self.key(channel, kept.event_id)
        if key not in self._unrecorded and len(self._unrecorded) >= MAX_UNRECORDED:
            # Far beyond any outage's in-flight events: the oldest falls back to at-least-once.
            del self._unrecorded[next(iter(self._unrecorded))]
        self._unrecorded[key] = kept
        await self.flush()

    async def flush(self) -> None:
        """Write every kept send to KV (id, then position), forgetting each once written."""
        for key, kept in list(self._unrecorded.items()):
            await self.record(kept.channel, kept.event_id)
            if kept.alert_id is not None and kept.position is not None:
                await self._advance(kept.channel, kept.alert_id, kept.position)
            self._unrecorded.pop(key, None)

    @staticmethod
    def order_key(channel: str, alert_id: str) -> str:
        """Return the KV key of the last position channel delivered for alert_id."""
        digest = hashlib.sha256(alert_id.encode()).hexdigest()[:40]
        return f"{channel}.order.{digest}"

    async def last_position(self, channel: str, alert_id: str) -> Position | None:
        """Return the position of the newest event about alert_id channel delivered (None: none)."""
        try:
            entry = await self.kv.get(self.order_key(channel, alert_id))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        if not entry.value:
            return None
        try:
            return StoredPosition.model_validate_json(entry.value).position()
        except ValueError:
            return None

    async def stale(self, channel: str, event: Event) -> bool:
        """Return whether event is an alert event older than what channel delivered for its alert."""
        if not isinstance(event, ThresholdCrossed | AlertResolved):
            return False
        last = await self.last_position(channel, event.alert_id)
        for kept in self._unrecorded.values():  # sent here, position not written yet
            if (
                kept.channel == channel
                and kept.alert_id == event.alert_id
                and kept.position is not None
            ):
                last = newest(last, kept.position)
        return is_stale(last, event)

    async def _advance(self, channel: str, alert_id: str, position: Position) -> None:
        """Write position as alert_id's last delivered by channel, unless a newer one is there."""
        last = await self.last_position(channel, alert_id)
        position = newest(last, position)
        if position != last:
            await self.kv.put(
                self.order_key(channel, alert_id),
                StoredPosition.of(position).model_dump_json().encode(),
            )


async def open_ledger(bus: Bus, events_max_age_s: float) -> Ledger:
    """Return the ledger on its bucket, created (or bounded) with ttl_s(events_max_age_s)."""
    return Ledger(await bus.key_value(BUCKET, ttl_s=ttl_s(events_max_age_s)))


__all__ = ["BUCKET", "Ledger", "open_ledger", "ttl_s"]
