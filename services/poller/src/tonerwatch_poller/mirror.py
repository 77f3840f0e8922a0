"""A KV bucket's current values in memory, kept up to date by a watch: a read costs no round trip.

The poller reads a printer's configuration and health for every poll; reading them from KV cost
two NATS round trips per poll. A mirror loads the bucket once (one ordered consumer, the values
pushed in order) and then receives every change as it is written, by any replica. What this
replica writes itself is applied at once (`set`, `forget`), so it never waits for its own echo; a
revision number keeps a late echo of an older value from overwriting a newer one.

A mirror is a cache, not the truth: a value another replica wrote a moment ago may not have
arrived yet. Callers that must not miss a fresh value (a new printer's first job) read KV on a
miss (`get_fresh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.js.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from tonerwatch_shared.kv import read_current, watch_all
from tonerwatch_shared.kv_mirror import WatchedBucket

log = logging.getLogger("tonerwatch.poller")


@dataclass
class KvMirror(WatchedBucket):
    """The current value of every key of one bucket, fed by a watch (WatchedBucket)."""

    kv: KeyValue
    values: dict[str, bytes] = field(default_factory=dict)
    # The newest revision known per key (deleted keys keep theirs: an older put is no news).
    revisions: dict[str, int] = field(default_factory=dict)
    # Called with a key whose value changed here (a watched change, or this replica's write).
    on_change: Callable[[str], None] | None = None
    # The highest revision the watch delivered (the bucket stream's sequence, in order). Only the
    # watch raises it: this replica's own writes and KV reads skip revisions not yet watched.
    watched: int = 0
    _advanced: asyncio.Event | None = None

    def _bucket(self) -> KeyValue:
        return self.kv

    def _apply(self, entry: KeyValue.Entry) -> None:
        revision = entry.revision or 0
        if revision > self.watched:
            self.watched = revision
            if self._advanced is not None:
                self._advanced.set()
        self._keep(entry)

    def _keep(self, entry: KeyValue.Entry) -> None:
        revision = entry.revision or 0
        if revision <= self.revisions.get(entry.key, 0):
            return  # an echo of what this replica wrote, or older than what it knows
        self.revisions[entry.key] = revision
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            self.values.pop(entry.key, None)
        else:
            self.values[entry.key] = entry.value
        self._changed(entry.key)

    def _changed(self, key: str) -> None:
        if self.on_change is not None:
            try:
                self.on_change(key)
            except Exception:  # a bug there must not end the watch
                log.exception("handling a change of %s failed", key)

    def get(self, key: str) -> bytes | None:
        """Return the key's value as last seen (None: no value)."""
        return self.values.get(key)

    async def get_fresh(self, key: str) -> bytes | None:
        """Return the key's value, asking KV when the mirror has none (one round trip)."""
        value = self.values.get(key)
        if value is not None:
            return value
        try:
            entry = await self.kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value:
            self._keep(entry)  # not the watch: revisions before this one may not be here yet
        return entry.value or None

    async def put(self, key: str, value: bytes) -> None:
        """Write the key (one round trip) and keep the value here at once."""
        revision = await self.kv.put(key, value)
        self.set(key, value, revision)

    def set(self, key: str, value: bytes, revision: int) -> None:
        """Keep a value this replica wrote (revision: what the put returned)."""
        if revision >= self.revisions.get(key, 0):
            self.revisions[key] = revision
            self.values[key] = value
            self._changed(key)

    async def delete(self, key: str) -> None:
        """Delete the key in KV and here."""
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self.kv.delete(key)
        if self.values.pop(key, None) is not None:
            self._changed(key)

    async def caught_up(self, timeout_s: float = 5.0) -> bool:
        """Wait until the mirror holds every write the bucket had when asked (one round trip).

        A replica taking over printers reads their last poll times here: the one handing them
        over wrote them before it let go, so they are in the bucket, if not yet in the mirror.
        """
        last = (await self.kv.status()).stream_info.state.last_seq or 0
        advanced = self._advanced = self._advanced or asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.watched < last:
                    advanced.clear()
                    await advanced.wait()
        return self.watched >= last


async def latest_values(kv: KeyValue, timeout_s: float = 5.0) -> dict[str, bytes]:
    """Return every key's current value in a bucket (one ordered read, not one request per key)."""
    values: dict[str, bytes] = {}

    def keep(entry: KeyValue.Entry) -> None:
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            values.pop(entry.key, None)
        else:
            values[entry.key] = entry.value

    watcher = await watch_all(kv)
    try:
        await read_current(watcher, keep, timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return values


__all__ = ["KvMirror", "latest_values"]
