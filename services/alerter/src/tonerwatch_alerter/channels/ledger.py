"""Which events each channel has already delivered, so a redelivery after a lost ack is not sent again.

JetStream redelivers an event whose ack was lost (a crash, a replica killed mid-send). The channel
records each delivered event id in a KV bucket with a time-to-live; a redelivered event it finds
there is acked without sending. What remains is the window between the receiver taking the event
and the record being written, where the Message-ID / event-id header lets the receiver dedupe.
"""

from __future__ import annotations

import nats.js.errors
from nats.js.kv import KeyValue

BUCKET = "ALERTER_SENT"
TTL_S = 7 * 86400.0  # longer than the event stream keeps events, so no redelivery outlives it


class Ledger:
    """Delivered (channel, event id) pairs in a KV bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @staticmethod
    def key(channel: str, event_id: str) -> str:
        """Return the KV key of event_id delivered by channel ("mail_it.<uuid>")."""
        return f"{channel}.{event_id}"

    async def delivered(self, channel: str, event_id: str) -> bool:
        """Return whether channel already delivered event_id."""
        try:
            entry = await self.kv.get(self.key(channel, event_id))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return False
        return bool(entry.value)

    async def record(self, channel: str, event_id: str) -> None:
        """Remember that channel delivered event_id."""
        await self.kv.put(self.key(channel, event_id), b"1")


__all__ = ["BUCKET", "TTL_S", "Ledger"]
