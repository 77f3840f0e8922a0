"""A KV bucket of pydantic models held in memory, kept current by a watch: a read costs no round trip.

The alerter and the syncer read a printer's state for every reading (tens per second for a large
fleet); a KV get each was a NATS round trip per reading in both the service and nats-server. A
mirror loads the bucket once (one ordered consumer pushing the values in order) and then receives
every change as it is written, by any replica. What this replica writes itself is kept at once
(`keep`), so it never waits for its own echo; revisions keep a late echo of an older value from
overwriting a newer one.

A mirror is a cache, not the truth: a value another replica wrote a moment ago may not have
arrived yet. Writes stay compare-and-set on the revision the mirror holds, so a write based on a
value overtaken that way fails (KvConflict) and the writer reads KV itself (`read_fresh`).

A value that changed only in what need not be written every time (when a printer was last read)
may be held in memory (`hold`, if `may_hold`: the key was written by this replica less than
`touch_s` ago) instead of written; reads return it, the next write or `flush` (at stop) writes
it, and a newer value of the key from anyone replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Generic, TypeVar

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import BaseModel, ValidationError

from tonerwatch_shared.kv import KvConflict, ModelKv, Versioned

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
LOAD_TIMEOUT_S = 30.0
# How long a key's held value may wait in memory before a hold is refused (it is written then).
TOUCH_S = 300.0


class ModelMirror(Generic[M]):
    """Every key of one bucket as its model and revision, fed by a watch once started."""

    def __init__(self, store: ModelKv[M], *, touch_s: float = TOUCH_S) -> None:
        self.store = store
        self.touch_s = touch_s
        self.entries: dict[str, Versioned[M]] = {}
        # Per key: a newer value than the stored one (at the revision given), not yet written.
        self.held: dict[str, Versioned[M]] = {}
        # Per key: when this replica last wrote it (monotonic).
        self._written: dict[str, float] = {}
        self.holds = 0
        self._watcher: KeyValue.KeyWatcher | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Return whether the watch is on (entries are current up to the watch's delay)."""
        return self._task is not None and not self._task.done()

    async def start(self, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        """Load the bucket's current values, then follow its changes in the background."""
        self._watcher = await self.store.kv.watchall()
        async with asyncio.timeout(timeout_s):
            async for entry in self._watcher:
                if entry is None:  # the marker after the last current value
                    break
                self._apply(entry)
        self._task = asyncio.create_task(self._follow(self._watcher))

    async def stop(self) -> None:
        """End the watch (entries stay as they are)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()  # type: ignore[no-untyped-call]

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is not None:
                self._apply(entry)

    def _apply(self, entry: KeyValue.Entry) -> None:
        revision = entry.revision or 0
        known = self.entries.get(entry.key)
        if known is not None and revision <= known.revision:
            return  # an echo of what this replica wrote, or older than what it knows
        value = None
        if entry.operation not in (KV_DEL, KV_PURGE) and entry.value:
            try:
                value = self.store.model.model_validate_json(entry.value)
            except ValidationError as exc:
                log.warning("unreadable %s at %s: %s", self.store.model.__name__, entry.key, exc)
        # A deleted key reads as absent with revision 0, as ModelKv.read says (a write creates it).
        self.entries[entry.key] = Versioned(value, revision if value is not None else 0)
        self.held.pop(entry.key, None)  # someone wrote the key since: theirs is the value now

    def values(self) -> list[M]:
        """Return every key's value as this replica knows it (held ones included)."""
        out = []
        for key, known in self.entries.items():
            held = self.held.get(key)
            value = held.value if held is not None else known.value
            if value is not None:
                out.append(value)
        return out

    async def read(self, key: str) -> Versioned[M]:
        """Return the key from memory (a held value first); ask KV when the mirror has nothing for it
        or is not running."""
        held = self.held.get(key)
        if held is not None:
            return held
        known = self.entries.get(key)
        if known is not None and self.running:
            return known
        return await self.read_fresh(key)

    async def read_fresh(self, key: str) -> Versioned[M]:
        """Return the key as KV has it now (one round trip), and keep it (a held value is dropped)."""
        self.held.pop(key, None)
        read = await self.store.read(key)
        known = self.entries.get(key)
        if known is None or read.revision >= known.revision:
            self.entries[key] = read
        return read

    async def write(self, key: str, value: M, revision: int) -> int:
        """Write value if key is still at revision (KvConflict if not); keep it; return the new revision."""
        self.held.pop(key, None)
        new = await self.store.write(key, value, revision)
        self._written[key] = time.monotonic()
        self.keep(key, value, new)
        return new

    def keep(self, key: str, value: M, revision: int) -> None:
        """Keep a value this replica wrote (revision: what the write returned)."""
        known = self.entries.get(key)
        if known is None or revision >= known.revision:
            self.entries[key] = Versioned(value, revision)

    def may_hold(self, key: str) -> bool:
        """Return whether a value of key may wait in memory: this replica wrote it under touch_s ago."""
        written = self._written.get(key)
        return written is not None and time.monotonic() - written < self.touch_s

    def hold(self, key: str, value: M, revision: int) -> None:
        """Keep value (read at revision) in memory unwritten; the next write or flush writes it."""
        self.held[key] = Versioned(value, revision)
        self.holds += 1

    async def flush(self) -> int:
        """Write every held value (a conflict: someone wrote newer, theirs stands); return how many."""
        written = 0
        for key, held in list(self.held.items()):
            if held.value is None:
                continue
            try:
                await self.write(key, held.value, held.revision)
            except KvConflict:
                continue
            written += 1
        return written


__all__ = ["ModelMirror"]
