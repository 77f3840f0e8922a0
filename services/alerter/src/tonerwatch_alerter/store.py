"""Per-printer alerter state in a JetStream KV bucket, written with optimistic concurrency.

Read from an in-memory mirror of the bucket (tonerwatch_shared.kv_mirror: a watch keeps it
current, no round trip per reading). A steady reading (levels as they were, nothing crossed)
changes only when the printer was last read; such a state is kept here and written at most every
`touch_s` per printer (and when the service stops), not for every reading: what alerts depend on
(levels, history, open alerts, crossings, outbox) is written before the reading is acked, always.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.js.kv import KeyValue

from tonerwatch_alerter.state import PrinterState, SupplyMemory, kv_key
from tonerwatch_shared.kv import KvConflict, ModelKv
from tonerwatch_shared.kv_mirror import TOUCH_S, ModelMirror

BUCKET = "ALERTER"
# The fields a steady reading changes: when the printer and its supplies were last read.
_TIMES = frozenset({"watermark", "watermark_seq", "readings_at", "readings_seq"})


class StateConflict(KvConflict):
    """Someone else (another replica) wrote the printer's state since we read it."""


@dataclass(frozen=True)
class Loaded:
    """A printer's state as read, and the revision an update must name (0: no key yet)."""

    state: PrinterState | None
    revision: int


def _supply_facts(memory: SupplyMemory) -> dict[str, Any]:
    return {k: v for k, v in memory.__dict__.items() if k != "last_seen_at"}


def only_times_differ(old: PrinterState, new: PrinterState) -> bool:
    """Return whether new differs from old in when it was read alone (a steady reading)."""
    if old.supplies.keys() != new.supplies.keys():
        return False
    for index, memory in new.supplies.items():
        if _supply_facts(memory) != _supply_facts(old.supplies[index]):
            return False
    skip = _TIMES | {"supplies"}
    return all(v == old.__dict__[k] for k, v in new.__dict__.items() if k not in skip)


class StateStore:
    """Reads and compare-and-set writes of PrinterState, one KV key per printer."""

    def __init__(self, kv: KeyValue, *, touch_s: float = TOUCH_S) -> None:
        self.kv = kv
        self.states = ModelKv(kv, PrinterState)
        # One key per printer: kept as JSON (memory grows with the fleet).
        self.mirror = ModelMirror(self.states, touch_s=touch_s, compact=True)

    @property
    def deferred(self) -> int:
        """Return how many steady readings were kept in memory instead of written."""
        return self.mirror.holds

    async def start(self) -> None:
        """Load the bucket into memory and follow it (without: every load asks KV)."""
        await self.mirror.start()

    async def stop(self) -> None:
        """Write what waits in memory, then end the watch."""
        try:
            await self.mirror.flush()
        finally:
            await self.mirror.stop()

    async def load(self, printer_id: str) -> Loaded:
        """Return the state of printer_id (None if never stored or unreadable) with its revision."""
        read = await self.mirror.read(kv_key(printer_id))
        return Loaded(read.value, read.revision)

    async def load_fresh(self, printer_id: str) -> Loaded:
        """Return the state as KV has it now (after a conflict: the mirror may lag)."""
        read = await self.mirror.read_fresh(kv_key(printer_id))
        return Loaded(read.value, read.revision)

    async def save(self, printer_id: str, state: PrinterState, revision: int) -> int:
        """Write state if the key is still at revision; return the new revision or raise StateConflict."""
        try:
            return await self.mirror.write(kv_key(printer_id), state, revision)
        except KvConflict as exc:
            raise StateConflict(f"state of {printer_id} changed since revision {revision}") from exc

    def may_defer(self, printer_id: str) -> bool:
        """Return whether a time-only change of printer_id may wait in memory (written recently)."""
        return self.mirror.may_hold(kv_key(printer_id))

    def defer(self, printer_id: str, state: PrinterState, revision: int) -> None:
        """Keep state (differing from the stored one at revision only in its times) unwritten."""
        self.mirror.hold(kv_key(printer_id), state, revision)
