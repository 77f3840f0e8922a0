"""Pydantic models in a JetStream KV bucket: read with the revision, compare-and-set writes, retried edits.

Replicas share state this way without locks: each write names the revision it read, so a write
based on a stale read fails (KvConflict) instead of silently undoing another replica's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
EDIT_ATTEMPTS = 20
# Listing a bucket's keys: a watcher's whole history, each wait bounded by this.
KEYS_TIMEOUT_S = 10.0


async def watch_all(kv: KeyValue, **options: object) -> KeyValue.KeyWatcher:
    """Return kv.watchall(**options) without nats-py's flow-control loop: a watch that wakes its
    process only when the bucket changes (and for the server's idle heartbeat, every 5 s).

    nats-py starts a task per ordered consumer that sleeps 0.25 s in a loop to send flow-control
    replies it could not send at once: 4 wakeups a second per watch, ~80 us of CPU each on an
    idle loop (issue 15: the poller's 3 mirrors, 12 a second). A watch delivers to a callback,
    and for a callback subscription nats-py answers every flow-control request (and a heartbeat's
    "consumer stalled" reply) when it arrives: a message counts as delivered once received, so
    the loop never has a reply left to send. Everything else of the ordered consumer stays: the
    sequence check and its reset, and the heartbeat check that recreates a consumer lost with
    the server (a NATS restart).
    """
    watcher = await kv.watchall(**options)
    _stop_flow_control_loop(watcher)
    return watcher


def _stop_flow_control_loop(watcher: KeyValue.KeyWatcher) -> None:
    subscription = getattr(watcher._sub, "_sub", None)
    jsi = getattr(subscription, "_jsi", None)
    task = getattr(jsi, "_fctask", None)
    # Only for a callback subscription: without one, replies wait for messages to be read, and
    # the loop sends them.
    if task is not None and getattr(subscription, "_cb", None) is not None:
        task.cancel()


async def read_current(
    watcher: KeyValue.KeyWatcher,
    apply: Callable[[KeyValue.Entry], None],
    timeout_s: float = KEYS_TIMEOUT_S,
) -> int:
    """Pass apply every entry the bucket held when the watch began (deletes too); return how many.

    Not the watcher's None marker: nats-py puts it first when the server has already sent
    entries that the client has not read yet (nats-io/nats.py#842), so a listing came back
    empty or short. Here the end is what the watch's consumer reported just after it began:
    entries delivered plus entries pending, so every write acknowledged before the call is in.
    The watcher must not ignore deletes: each delivered message has to arrive as an entry.
    Raises TimeoutError when they do not all arrive within timeout_s.
    """
    async with asyncio.timeout(timeout_s):
        subscription = watcher._sub
        assert subscription is not None, "a watcher subscribes before watch() returns it"
        info = await subscription.consumer_info()
        boundary = (info.delivered.consumer_seq if info.delivered else 0) + (info.num_pending or 0)
        seen = 0
        while seen < boundary:
            entry = await watcher.updates(timeout_s)  # type: ignore[no-untyped-call]
            if entry is None:  # the early marker, or the one after the last entry
                continue
            seen += 1
            apply(entry)
    return seen


def _keep_live(found: dict[str, bool], entry: KeyValue.Entry) -> None:
    found[entry.key] = entry.operation not in (KV_DEL, KV_PURGE)


async def list_keys(
    kv: KeyValue, timeout_s: float = KEYS_TIMEOUT_S, bucket: str = "a KV bucket"
) -> list[str]:
    """Return every live key of a bucket (none when it is empty); TimeoutError past timeout_s.

    Not nats-py's KeyValue.keys(): it trusts the watcher's early end-of-history marker (see
    read_current), waits with no limit and leaves the watcher subscribed when cancelled.
    Here the listing ends where the bucket stood, every wait is bounded, one retry is made,
    and the watcher is always stopped.
    """
    for attempt in (1, 2):
        watcher = await watch_all(kv, meta_only=True)
        # Per key: whether its last entry is a value (not a delete or purge).
        found: dict[str, bool] = {}
        try:
            await read_current(watcher, partial(_keep_live, found), timeout_s)
            return [key for key, live in found.items() if live]
        except (TimeoutError, nats.errors.TimeoutError):
            if attempt == 2:
                raise TimeoutError(f"listing the keys of {bucket} took over {timeout_s}s") from None
            log.warning("listing the keys of %s timed out; trying again", bucket)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
    raise AssertionError("unreachable")


class KvConflict(Exception):
    """The key changed since the revision a write named (another writer got there first)."""


@dataclass(frozen=True)
class Versioned(Generic[M]):
    """A key's value as read (None: absent, deleted or unreadable) and the revision a write must name."""

    value: M | None
    # 0 when the key is absent (never written, or deleted: nats-py reads a delete as not found).
    revision: int


class ModelKv(Generic[M]):
    """One KV bucket whose values are JSON of one pydantic model."""

    def __init__(self, kv: KeyValue, model: type[M]) -> None:
        self.kv = kv
        self.model = model
        self.bucket = str(getattr(kv, "_name", "a KV bucket"))  # for messages only

    async def keys(self, timeout_s: float = KEYS_TIMEOUT_S) -> list[str]:
        """Return every key in the bucket (none when it is empty); TimeoutError past timeout_s."""
        return await list_keys(self.kv, timeout_s, self.bucket)

    async def read(self, key: str) -> Versioned[M]:
        """Return key's value and revision; an unreadable value reads as None (and is logged)."""
        try:
            entry = await self.kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return Versioned(None, 0)
        revision = entry.revision or 0
        if not entry.value:
            return Versioned(None, revision)
        try:
            return Versioned(self.model.model_validate_json(entry.value), revision)
        except ValidationError as exc:
            # A newer, incompatible or corrupt value: starting afresh beats stopping the service.
            log.warning("unreadable %s at %s, starting afresh: %s", self.model.__name__, key, exc)
            return Versioned(None, revision)

    async def write(self, key: str, value: M, revision: int) -> int:
        """Write value if key is still at revision (0: only if absent or deleted); return the new revision.

        Raises KvConflict when someone else wrote the key since that revision.
        """
        return await self.write_json(key, value.model_dump_json().encode(), revision)

    async def write_json(self, key: str, data: bytes, revision: int) -> int:
        """Write a value already serialised (a model's JSON) as write does."""
        try:
            if revision == 0:
                return await self.kv.create(key, data)
            return await self.kv.update(key, data, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise KvConflict(f"{key} changed since revision {revision}") from exc

    async def edit(
        self,
        key: str,
        change: Callable[[M | None], M | None],
        *,
        attempts: int = EDIT_ATTEMPTS,
        pause_s: float = 0.01,
    ) -> Versioned[M] | None:
        """Apply change to key's current value and write it, rereading on conflict.

        change returns the value to store, or None to leave the key as it is. Returns what was
        written with its revision, or None when change declined; raises KvConflict after
        `attempts` conflicting writes.
        """
        for _ in range(attempts):
            current = await self.read(key)
            new = change(current.value)
            if new is None:
                return None
            try:
                return Versioned(new, await self.write(key, new, current.revision))
            except KvConflict:
                await asyncio.sleep(pause_s)
        raise KvConflict(f"gave up writing {key}: {attempts} conflicting writes")


__all__ = ["KvConflict", "ModelKv", "Versioned", "list_keys", "read_current", "watch_all"]
