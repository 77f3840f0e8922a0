"""Per-printer alerter state in a JetStream KV bucket, written with optimistic concurrency."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats.js.errors
from nats.js.kv import KeyValue
from pydantic import ValidationError

from tonerwatch_alerter.state import PrinterState, kv_key

log = logging.getLogger(__name__)

BUCKET = "ALERTER"


class StateConflict(Exception):
    """Someone else (another replica) wrote the printer's state since we read it."""


@dataclass(frozen=True)
class Loaded:
    """A printer's state as read, and the revision an update must name (0: no key yet)."""

    state: PrinterState | None
    revision: int


class StateStore:
    """Reads and compare-and-set writes of PrinterState, one KV key per printer."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def load(self, printer_id: str) -> Loaded:
        """Return the stored state of printer_id (None if never stored) with its revision."""
        key = kv_key(printer_id)
        try:
            entry = await self.kv.get(key)
        except nats.js.errors.KeyDeletedError as exc:
            return Loaded(None, exc.entry.revision if exc.entry and exc.entry.revision else 0)
        except nats.js.errors.KeyNotFoundError:
            return Loaded(None, 0)
        revision = entry.revision or 0
        if not entry.value:
            return Loaded(None, revision)
        try:
            return Loaded(PrinterState.from_bytes(entry.value), revision)
        except ValidationError as exc:
            # A newer, incompatible or corrupt state: starting afresh beats stopping the alerter.
            log.warning("unreadable alerter state for %s, starting afresh: %s", printer_id, exc)
            return Loaded(None, revision)

    async def save(self, printer_id: str, state: PrinterState, revision: int) -> int:
        """Write state if the key is still at revision; return the new revision or raise StateConflict."""
        try:
            return await self.kv.update(kv_key(printer_id), state.to_bytes(), last=revision)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise StateConflict(f"state of {printer_id} changed since revision {revision}") from exc
