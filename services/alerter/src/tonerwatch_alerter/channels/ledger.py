"""Which events each channel has already delivered, so a redelivery after a lost ack is not sent again.

JetStream redelivers an event whose ack was lost (a crash, a replica killed mid-send). The channel
records each delivered event id in a KV bucket with a time-to-live; a redelivered event it finds
there is acked without sending. A record that cannot be written (NATS down or restarting just
after the send) is kept in memory and written when the event comes again, so a NATS outage alone
never sends anything twice. What remains is an alerter killed between the receiver taking the
event and the record being written, where the Message-ID / event-id header lets the receiver dedupe.

It also keeps, per channel and alert, the position (tonerwatch_shared.ordering) of the last alert
event delivered: a crossed or resolved older than it (a dead letter replayed late, a reading
overtaken after an outage) is not sent, so nobody is told "low" after "cleared".
"""

from __future__ import annotations

import hashlib

import nats.js.errors
from nats.js.kv import KeyValue

from tonerwatch_shared.bus import Bus, positions_max_age
from tonerwatch_shared.events import AlertResolved, Event, ThresholdCrossed
from tonerwatch_shared.ordering import Position, StoredPosition, is_stale, newest, position_of

BUCKET = "ALERTER_SENT"
MAX_UNRECORDED = 10_000


def ttl_s(events_max_age_s: float) -> float:
    """Return the bucket's TTL: longer than the events stream (and the dead-letter stream) keep an
    event, so no redelivery or replay outlives its delivered record or its alert's position."""
    return positions_max_age(events_max_age_s)


class Ledger:
    """Delivered (channel, event id) pairs in a KV bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        # Sent, not yet recorded in KV: (channel, event id) key -> (channel, event). Only events in
        # flight while NATS is unreachable land here, so it stays small; bounded all the same.
        self._unrecorded: dict[str, tuple[str, Event]] = {}

    @staticmethod
    def key(channel: str, event_id: str) -> str:
        """Return the KV key of event_id delivered by channel ("mail_it.<uuid>")."""
        return f"{channel}.{event_id}"

    async def delivered(self, channel: str, event_id: str) -> bool:
        """Return whether channel already delivered event_id (one sent whose record could not be
        written yet is written now; if that fails again the error is raised and it stays kept)."""
        key = self.key(channel, event_id)
        if key in self._unrecorded:
            await self._write(key)
            return True
        try:
            entry = await self.kv.get(self.key(channel, event_id))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return False
        return bool(entry.value)

    async def record(self, channel: str, event_id: str) -> None:
        """Remember that channel delivered event_id."""
        await self.kv.put(self.key(channel, event_id), b"1")

    async def sent(self, channel: str, event: Event) -> None:
        """Remember that channel sent event: its id and its alert's position, kept in memory until
        both are written (an error writing them is raised; the event's redelivery writes them)."""
        key = self.key(channel, str(event.event_id))
        if len(self._unrecorded) >= MAX_UNRECORDED:
            # Far beyond any outage's in-flight events: the oldest falls back to at-least-once.
            del self._unrecorded[next(iter(self._unrecorded))]
        self._unrecorded[key] = (channel, event)
        await self._write(key)

    async def _write(self, key: str) -> None:
        """Write the kept record key (id, then position) to KV and forget it once written."""
        channel, event = self._unrecorded[key]
        await self.record(channel, str(event.event_id))
        await self.advance(channel, event)
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
        return is_stale(await self.last_position(channel, event.alert_id), event)

    async def advance(self, channel: str, event: Event) -> None:
        """Remember event's position as delivered for its alert (never moving it back)."""
        if not isinstance(event, ThresholdCrossed | AlertResolved):
            return
        last = await self.last_position(channel, event.alert_id)
        position = newest(last, position_of(event))
        if position != last:
            await self.kv.put(
                self.order_key(channel, event.alert_id),
                StoredPosition.of(position).model_dump_json().encode(),
            )


async def open_ledger(bus: Bus, events_max_age_s: float) -> Ledger:
    """Return the ledger on its bucket, created (or bounded) with ttl_s(events_max_age_s)."""
    return Ledger(await bus.key_value(BUCKET, ttl_s=ttl_s(events_max_age_s)))


__all__ = ["BUCKET", "Ledger", "open_ledger", "ttl_s"]
