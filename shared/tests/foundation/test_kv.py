"""Typed KV values against real NATS: create-if-absent, compare-and-set, retried edits, revisions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.kv import (
    KvConflict,
    ModelKv,
    Versioned,
    _keep_live,
    read_current,
    watch_all,
)
from tonerwatch_shared.testing.nats_traffic import FLOW_CONTROL, counting


class Tally(BaseModel):
    count: int = 0
    by: list[str] = []


async def tallies(bus: Bus) -> ModelKv[Tally]:
    return ModelKv(await bus.key_value("KVTEST", history=5), Tally)


async def test_absent_key_reads_none_at_revision_zero_and_is_created_once(bus: Bus) -> None:
    kv = await tallies(bus)
    assert await kv.read("site-hq") == Versioned(None, 0)
    rev = await kv.write("site-hq", Tally(count=1), 0)
    assert rev > 0
    assert await kv.read("site-hq") == Versioned(Tally(count=1), rev)
    # Revision 0 means "only if absent": a second creator loses instead of overwriting.
    with pytest.raises(KvConflict):
        await kv.write("site-hq", Tally(count=99), 0)
    assert (await kv.read("site-hq")).value == Tally(count=1)


async def test_write_naming_a_stale_revision_conflicts_and_keeps_the_winner(bus: Bus) -> None:
    kv = await tallies(bus)
    first = await kv.write("p-1", Tally(count=1), 0)
    a, b = await kv.read("p-1"), await kv.read("p-1")
    assert a.revision == b.revision == first
    won = await kv.write("p-1", Tally(count=2, by=["a"]), a.revision)
    assert won > first
    with pytest.raises(KvConflict):
        await kv.write("p-1", Tally(count=2, by=["b"]), b.revision)
    assert await kv.read("p-1") == Versioned(Tally(count=2, by=["a"]), won)


async def test_concurrent_edits_are_retried_until_none_is_lost(bus: Bus) -> None:
    kv = await tallies(bus)
    writers = [f"replica-{i}" for i in range(8)]

    def bump(name: str) -> Callable[[Tally | None], Tally]:
        def change(current: Tally | None) -> Tally:
            t = current or Tally()
            return Tally(count=t.count + 1, by=[*t.by, name])

        return change

    results = await asyncio.gather(
        *(kv.edit("shared", bump(n), attempts=50, pause_s=0.001) for n in writers)
    )
    final = await kv.read("shared")
    assert final.value is not None and final.value.count == len(writers)
    assert sorted(final.value.by) == sorted(writers)
    # Each edit reports the revision it wrote; the last of them is the key's revision now.
    assert all(r is not None for r in results)
    assert max(r.revision for r in results if r is not None) == final.revision


async def test_edit_that_declines_writes_nothing(bus: Bus) -> None:
    kv = await tallies(bus)
    rev = await kv.write("p-2", Tally(count=5), 0)
    assert await kv.edit("p-2", lambda current: None) is None
    assert (await kv.read("p-2")).revision == rev


async def test_deleted_and_unreadable_values_read_as_none_but_keep_their_revision(bus: Bus) -> None:
    kv = await tallies(bus)
    await kv.write("p-4", Tally(count=3), 0)
    await kv.kv.delete("p-4")
    # A deleted key reads as absent, and is created afresh past its delete marker.
    assert await kv.read("p-4") == Versioned(None, 0)
    rev = await kv.write("p-4", Tally(count=1), 0)
    assert (await kv.read("p-4")) == Versioned(Tally(count=1), rev)
    with pytest.raises(KvConflict):
        await kv.write("p-4", Tally(count=2), 0)

    bad_rev = await kv.kv.put("p-5", b"not json")
    assert await kv.read("p-5") == Versioned(None, bad_rev)
    assert await kv.write("p-5", Tally(count=1), bad_rev) > bad_rev


async def test_keys_lists_live_keys_of_an_empty_a_full_and_a_thinned_bucket(bus: Bus) -> None:
    kv = await tallies(bus)
    assert await kv.keys() == []
    for key in ("p-1", "p-2", "p-3"):
        await kv.write(key, Tally(count=1), 0)
    await kv.write("p-2", Tally(count=2), (await kv.read("p-2")).revision)  # history of one key
    assert sorted(await kv.keys()) == ["p-1", "p-2", "p-3"]
    await kv.kv.delete("p-3")  # the newest message is a delete: the listing still ends
    assert sorted(await kv.keys()) == ["p-1", "p-2"]


async def test_keys_lists_every_key_when_the_end_marker_comes_before_the_entries(bus: Bus) -> None:
    # nats-io/nats.py#842: with entries already sent by the server but not yet read by the
    # client, the watcher puts its end-of-history marker first; nats-py's keys() then saw none.
    kv = await tallies(bus)
    for key in ("p-1", "p-2", "p-3"):
        await kv.write(key, Tally(count=1), 0)
    await kv.kv.delete("p-2")
    watcher = await kv.kv.watchall(meta_only=True)
    try:
        arrived: list[object] = []
        async with asyncio.timeout(5):
            while len(arrived) < 3:
                if (entry := await watcher.updates(5)) is not None:
                    arrived.append(entry)
        while not watcher._updates.empty():
            watcher._updates.get_nowait()  # the marker that came after them
        for entry in (None, *arrived):  # as the race delivers them: the marker first
            watcher._updates.put_nowait(entry)
        found: dict[str, bool] = {}
        assert await read_current(watcher, partial(_keep_live, found), timeout_s=5) == 3
        assert found == {"p-1": True, "p-2": False, "p-3": True}
    finally:
        await watcher.stop()


class _Sub:
    async def consumer_info(self) -> object:
        return SimpleNamespace(delivered=None, num_pending=1)


class _SilentWatcher:
    """A watcher whose entries never come (what hung nats-py's keys())."""

    def __init__(self) -> None:
        self.stopped = False
        self._sub = _Sub()

    async def updates(self, timeout: float) -> object:  # noqa: ASYNC109 (nats-py's signature)
        await asyncio.sleep(timeout * 10)
        return None

    async def stop(self) -> None:
        self.stopped = True


class _SilentKv:
    def __init__(self) -> None:
        self.watchers: list[_SilentWatcher] = []

    async def watchall(self, **_: object) -> _SilentWatcher:
        self.watchers.append(_SilentWatcher())
        return self.watchers[-1]


async def test_keys_never_waits_forever_for_a_lost_end_of_history_marker() -> None:
    silent = _SilentKv()
    kv = ModelKv(silent, Tally)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        await kv.keys(timeout_s=0.05)
    # Tried twice, and every watcher was stopped (none left subscribed).
    assert [w.stopped for w in silent.watchers] == [True, True]


async def test_a_watch_without_the_flow_control_loop_sees_puts_deletes_and_purges(bus: Bus) -> None:
    """watch_all stops nats-py's 0.25 s flow-control loop; the watch still sees every change."""
    kv = await bus.key_value("KVWATCH")
    await kv.put("a", b"1")
    watcher = await watch_all(kv)
    try:
        jsi = watcher._sub._sub._jsi  # type: ignore[union-attr]
        await asyncio.sleep(0)
        assert jsi._fctask is not None and jsi._fctask.done()
        assert jsi._hbtask is not None and not jsi._hbtask.done()  # the heartbeat check stays
        seen: list[tuple[str, bytes, str | None]] = []
        await read_current(watcher, lambda e: seen.append((e.key, e.value, e.operation)))
        assert seen == [("a", b"1", None)]
        await kv.put("b", b"2")
        await kv.delete("a")
        await kv.put("c", b"3")
        await kv.purge("c")
        for _ in range(4):
            entry = await watcher.updates(5.0)  # type: ignore[no-untyped-call]
            while entry is None:  # the end-of-history marker
                entry = await watcher.updates(5.0)  # type: ignore[no-untyped-call]
            seen.append((entry.key, entry.value, entry.operation))
        assert seen[1:] == [
            ("b", b"2", None),
            ("a", b"", "DEL"),
            ("c", b"3", None),
            ("c", b"", "PURGE"),
        ]
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]


async def test_a_watch_without_the_flow_control_loop_answers_flow_control_and_loads_it_all(
    bus: Bus,
) -> None:
    """Megabytes in a bucket: the server asks for flow control while the watch loads them; the
    replies go out as the requests arrive (the loop that is stopped never had one to send)."""
    kv = await bus.key_value("KVWATCHBIG")
    value = b"x" * 8192
    await asyncio.gather(*(kv.put(f"k{i:04d}", value) for i in range(1500)))
    with counting(bus.nc) as traffic:
        watcher = await watch_all(kv)
        try:
            keys: set[str] = set()
            assert await read_current(watcher, lambda e: keys.add(e.key)) == 1500
            assert len(keys) == 1500
            await kv.put("late", b"1")
            entry = await watcher.updates(5.0)  # type: ignore[no-untyped-call]
            while entry is None:
                entry = await watcher.updates(5.0)  # type: ignore[no-untyped-call]
            assert entry.key == "late"
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
    assert any(s.startswith(FLOW_CONTROL) for s in traffic.published)
