"""Per-printer alerter state in a JetStream KV bucket, written with optimistic concurrency."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.kv import KeyValue

from tonerwatch_alerter.state import PrinterState, kv_key
from tonerwatch_shared.kv import KvConflict, ModelKv

BUCKET = "ALERTER"


class StateConflict(KvConflict):
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
        self.states = ModelKv(kv, PrinterState)

    async def load(self, printer_id: str) -> Loaded:
        """Return the stored state of printer_id (None if never stored or unreadable) with its revision."""
        read = await self.states.read(kv_key(printer_id))
        return Loaded(read.value, read.revision)

    async def save(self, printer_id: str, state: PrinterState, revision: int) -> int:
        """Write state if the key is still at revision; return the new revision or raise StateConflict."""
        try:
            return await self.states.write(kv_key(printer_id), state, revision)
        except KvConflict as exc:
            raise StateConflict(f"state of {printer_id} changed since revision {revision}") from exc
