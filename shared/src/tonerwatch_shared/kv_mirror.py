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
import zlib
from collections.abc import Callable
from typing import Generic, TypeVar

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import BaseModel, ValidationError

from tonerwatch_shared.kv import (
    EDIT_ATTEMPTS,
    KvConflict,
    ModelKv,
    Versioned,
    read_current,
    watch_all,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
LOAD_TIMEOUT_S = 30.0
# How long a key's held value may wait in memory before a hold is refused (it is written then).
TOUCH_S = 300.0
# zlib's level for compact values: a printer's state (1.7-2 KB of JSON, its keys repeated per
# supply) comes to under a third (1,680 -> 526 bytes, five supplies); level 1 compresses it in
# ~13 us and a read decompresses it in ~5 us (issue 15: ~1.4 KB less per value, two per printer).
COMPACT_LEVEL = 1


class WatchedBucket:
    """A KV bucket's current values loaded once, then followed by a watch; subclasses keep them.

    _apply(entry) keeps one entry (a put, delete or purge, any replica's); what a subclass
    writes itself it keeps at once, and the revision in entry tells a late echo from news.
    """

    _watcher: KeyValue.KeyWatcher | None = None
    _task: asyncio.Task[None] | None = None

    def _bucket(self) -> KeyValue:
        raise NotImplementedError

    def _apply(self, entry: KeyValue.Entry) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Return whether the watch is on (values are current up to the watch's delay)."""
        return self._task is not None and not self._task.done()

    async def start(self, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        """Load the bucket's current values, then follow its changes in the background."""
        self._watcher = await watch_all(self._bucket())
        await read_current(self._watcher, self._apply, timeout_s)
        self._task = asyncio.create_task(self._follow(self._watcher))

    async def stop(self) -> None:
        """End the watch (values stay as they are)."""
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


class ModelMirror(WatchedBucket, Generic[M]):
    """Every key of one bucket as its model and revision, fed by a watch once started.

    compact keeps each value as its JSON compressed with zlib (about 2 KB of JSON for a
    printer's state, against 7-12 KB as pydantic objects; a held value and the stored one are
    both kept) and decompresses and parses it on every read (0.07-0.11 ms): for buckets with a key
    per printer, where memory grows with the fleet. Otherwise values are kept parsed (a read
    returns the same object until the value changes).
    """

    def __init__(
        self, store: ModelKv[M], *, touch_s: float = TOUCH_S, compact: bool = False
    ) -> None:
        self.store = store
        self.touch_s = touch_s
        self.compact = compact
        # Per key: the value (model, or compressed JSON when compact; None: absent) and its revision.
        self._entries: dict[str, tuple[M | bytes | None, int]] = {}
        # Per key: a newer value than the stored one (at the revision given), not yet written.
        self._held: dict[str, tuple[M | bytes, int]] = {}
        # Per key: when this replica last wrote it (monotonic).
        self._written: dict[str, float] = {}
        self.holds = 0

    def _bucket(self) -> KeyValue:
        return self.store.kv

    def _apply(self, entry: KeyValue.Entry) -> None:
        revision = entry.revision or 0
        known = self._entries.get(entry.key)
        if known is not None and revision <= known[1]:
            return  # an echo of what this replica wrote, or older than what it knows
        value: M | bytes | None = None
        if entry.operation not in (KV_DEL, KV_PURGE) and entry.value:
            value = (
                zlib.compress(entry.value, COMPACT_LEVEL)
                if self.compact
                else self._parse(entry.key, entry.value)
            )
        # A deleted key reads as absent with revision 0, as ModelKv.read says (a write creates it).
        self._entries[entry.key] = (value, revision if value is not None else 0)
        self._held.pop(entry.key, None)  # someone wrote the key since: theirs is the value now

    def _parse(self, key: str, data: bytes) -> M | None:
        try:
            return self.store.model.model_validate_json(data)
        except ValidationError as exc:
            log.warning("unreadable %s at %s: %s", self.store.model.__name__, key, exc)
            return None

    def _model(self, key: str, value: M | bytes | None) -> M | None:
        return self._parse(key, zlib.decompress(value)) if isinstance(value, bytes) else value

    def _pack(self, value: M) -> M | bytes:
        if self.compact:
            return zlib.compress(value.model_dump_json().encode(), COMPACT_LEVEL)
        return value

    def values(self) -> list[M]:
        """Return every key's value as this replica knows it (held ones included)."""
        out = []
        for key, (value, _) in list(self._entries.items()):
            held = self._current_held(key)
            model = self._model(key, held[0] if held is not None else value)
            if model is not None:
                out.append(model)
        return out

    async def read(self, key: str) -> Versioned[M]:
        """Return the key from memory (a held value first); ask KV when the mirror has nothing for it
        or is not running."""
        held = self._current_held(key)
        if held is not None:
            return Versioned(self._model(key, held[0]), held[1])
        known = self._entries.get(key)
        if known is not None and self.running:
            return Versioned(self._model(key, known[0]), known[1])
        return await self.read_fresh(key)

    def _current_held(self, key: str) -> tuple[M | bytes, int] | None:
        """Return key's held value if it is still based on the newest revision known, else drop it.

        Another handler of this replica may have written the key (a write in flight when the
        value was held): the held value lacks that change, and the written one wins.
        """
        held = self._held.get(key)
        if held is None:
            return None
        known = self._entries.get(key)
        if known is not None and known[1] == held[1]:
            return held
        del self._held[key]
        return None

    async def read_fresh(self, key: str) -> Versioned[M]:
        """Return the key as KV has it now (one round trip), and keep it (a held value is dropped)."""
        self._held.pop(key, None)
        read = await self.store.read(key)
        known = self._entries.get(key)
        if known is None or read.revision >= known[1]:
            value = None if read.value is None else self._pack(read.value)
            self._entries[key] = (value, read.revision)
        return read

    async def write(self, key: str, value: M, revision: int) -> int:
        """Write value if key is still at revision (KvConflict if not); keep it; return the new revision."""
        self._held.pop(key, None)
        data = value.model_dump_json().encode()
        new = await self.store.write_json(key, data, revision)
        self._written[key] = time.monotonic()
        known = self._entries.get(key)
        if known is None or new >= known[1]:
            self._entries[key] = (
                zlib.compress(data, COMPACT_LEVEL) if self.compact else value,
                new,
            )
        return new

    async def edit(
        self,
        key: str,
        change: Callable[[M | None], M | None],
        *,
        steady: Callable[[M, M], bool] | None = None,
        attempts: int = EDIT_ATTEMPTS,
        pause_s: float = 0.01,
    ) -> None:
        """ModelKv.edit on the mirror: change the key's value and write it, rereading on conflict.

        The first read is from memory; after a conflict from KV (the mirror may not have the
        winner's value yet). A change that steady(old, new) says touches only what need not be
        written every time is held instead (hold), while may_hold(key) allows it.
        """
        for attempt in range(attempts):
            current = await (self.read(key) if attempt == 0 else self.read_fresh(key))
            new = change(current.value)
            if new is None:
                return
            if (
                steady is not None
                and current.value is not None
                and self.may_hold(key)
                and steady(current.value, new)
            ):
                self.hold(key, new, current.revision)
                return
            try:
                await self.write(key, new, current.revision)
                return
            except KvConflict:
                await asyncio.sleep(pause_s)
        raise KvConflict(f"gave up writing {key}: {attempts} conflicting writes")

    def may_hold(self, key: str) -> bool:
        """Return whether a value of key may wait in memory: this replica wrote it under touch_s ago."""
        written = self._written.get(key)
        return written is not None and time.monotonic() - written < self.touch_s

    def hold(self, key: str, value: M, revision: int) -> None:
        """Keep value (read at revision) in memory unwritten; the next write or flush writes it."""
        self._held[key] = (self._pack(value), revision)
        self.holds += 1

    def keep(self, key: str, value: M, revision: int) -> None:
        """Keep a value this replica wrote another way (revision: what that write returned)."""
        known = self._entries.get(key)
        if known is None or revision >= known[1]:
            self._entries[key] = (self._pack(value), revision)

    async def flush(self) -> int:
        """Write every held value (a conflict: someone wrote newer, theirs stands); return how many."""
        written = 0
        for key in list(self._held):
            held = self._current_held(key)
            if held is None:
                continue
            value, revision = held
            model = self._model(key, value)
            if model is None:
                self._held.pop(key, None)
                continue
            try:
                await self.write(key, model, revision)
            except KvConflict:
                continue
            written += 1
        return written


__all__ = ["ModelMirror"]
