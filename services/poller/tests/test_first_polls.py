"""A printer never polled is polled as soon as a slot is free, oldest first, then keeps its slot;
a burst of them (a fleet imported) leaves the printers already known on time.

Real NATS (the poller's KV mirrors), the replica's timer loop run as it runs in `run_jobs`, with
every partition held here; polls are real (snmpsim) or stand-ins that take the time a walk takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from unittest import mock

from tonerwatch_poller import schedule
from tonerwatch_poller.service import (
    FIRST_POLLS_SHARE,
    FLEET,
    Poller,
    PrinterHealth,
    _Lease,
)
from tonerwatch_shared import events as ev
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.subjects import token
from tonerwatch_shared.testing.infra import eventually

from ._poller import configured


def hold_every_partition(poller: Poller) -> None:
    now = time.time()
    for partition in range(poller.settings.poll_partitions):
        subject = poller.partition_subject(FLEET, partition)
        poller.leases[subject] = _Lease(subject, FLEET, partition, "durable", mock.Mock(), now)


async def configure(poller: Poller, config: ev.PrinterConfigured) -> str:
    assert poller.config_mirror is not None
    key = token(config.printer_id)
    await poller.config_mirror.put(key, config.to_bytes())
    return key


@contextlib.asynccontextmanager
async def timer_loop(poller: Poller) -> AsyncIterator[None]:
    """Run the replica's timer loop (as run_jobs does) until the block ends."""
    stop = asyncio.Event()
    slots = asyncio.Semaphore(poller.settings.poll_concurrency)
    task = asyncio.create_task(poller._run_timers(slots, stop))
    try:
        yield
    finally:
        stop.set()
        if poller._wake is not None:
            poller._wake.set()
        await asyncio.wait_for(task, 10)
        if poller.in_flight:
            await asyncio.wait(poller.in_flight, timeout=10)


def slow_phase(prefix: str) -> str:
    """Return a printer id whose phase would have put its first poll late in the old window."""
    return next(f"{prefix}-{i}" for i in range(1000) if schedule.phase(f"{prefix}-{i}") > 0.8)


async def test_a_printer_added_on_an_hourly_interval_is_polled_at_once_then_keeps_its_slot(
    poller: Poller, snmp_agent: SnmpSimulator
) -> None:
    hold_every_partition(poller)
    pid = slow_phase("hourly")  # spread over the 10 s window, its first poll came after 8 s
    started: list[float] = []
    real_poll = poller.poll

    async def poll(config: ev.PrinterConfigured, health: PrinterHealth) -> bool:
        started.append(time.time())
        return await real_poll(config, health)

    poller.poll = poll  # type: ignore[method-assign]
    async with timer_loop(poller):
        configured_at = time.time()
        key = await configure(poller, configured(pid, snmp_agent.port, interval_s=3600.0))
        await eventually(lambda: pid in poller.recent, timeout_s=30)
        await eventually(lambda: key in poller.timers.due, timeout_s=10)
    # Its first poll started when the configuration arrived (no slot, no window to wait for)...
    assert len(started) == 1
    assert started[0] - configured_at < 1.0, started[0] - configured_at
    # ...was a real one (its reading published, its health stored)...
    health = await poller.read_health(pid)
    assert health.last_poll_at is not None and health.failures == 0
    # ...and the next is on its slot on the grid, at least half an interval on.
    due = poller.timers.due[key]
    assert due == schedule.due_after_poll(health.last_poll_at, 3600.0, pid)
    assert due - health.last_poll_at >= 1800
    assert due % schedule.SLOT_GRID_S == schedule.slot_offset(3600.0, pid) % schedule.SLOT_GRID_S


async def test_known_printers_stay_on_time_through_a_burst_of_new_ones(poller: Poller) -> None:
    poller.settings = poller.settings.model_copy(update={"poll_concurrency": 8})
    hold_every_partition(poller)
    walk_s, steady_s = 1.0, 0.05
    starts: dict[str, float] = {}
    running = {"first": 0, "most_first": 0, "all": 0, "most": 0}

    async def poll(config: ev.PrinterConfigured, health: PrinterHealth) -> bool:
        first = health.last_poll_at is None
        starts.setdefault(config.printer_id, time.time())
        running["all"] += 1
        running["most"] = max(running["most"], running["all"])
        if first:
            running["first"] += 1
            running["most_first"] = max(running["most_first"], running["first"])
        try:
            await asyncio.sleep(walk_s if first else steady_s)  # a first poll walks the printer
        finally:
            running["all"] -= 1
            running["first"] -= first
        return True

    poller.poll = poll  # type: ignore[method-assign]
    # Known printers: polled one interval before their slots, which come during the burst
    # (first polls take 1 s each, 60 of them, 6 at once: ~10 s).
    t0 = time.time()
    due: dict[str, float] = {}
    for i in itertools.count():
        pid = f"known-{i}"
        slot = schedule.next_slot(t0 + 2.0, 300.0, pid)
        if slot < t0 + 8.0:
            due[pid] = slot
            await poller._store_health(pid, PrinterHealth(last_poll_at=slot - 300.0))
            if len(due) == 6:
                break
    async with timer_loop(poller):
        # A fleet imported: 60 new printers, configured one after another.
        new = [f"new-{i:02d}" for i in range(60)]
        for pid in new:
            await configure(poller, configured(pid, interval_s=300.0))
        for pid in due:
            await configure(poller, configured(pid, interval_s=300.0))
            assert poller.timers.due[token(pid)] == due[pid]  # on its slot
        assert len(poller.timers.waiting) > 40  # waiting for a slot, not for a time
        await eventually(lambda: all(pid in starts for pid in new + list(due)), timeout_s=60)

    # The known printers were polled on time: no first poll held their slot.
    late = {pid: round(starts[pid] - at, 3) for pid, at in due.items()}
    assert all(-0.05 <= d < 0.5 for d in late.values()), late
    # The new ones as fast as the slots allow, oldest first, never more than their share at once.
    firsts = max(1, int(8 * FIRST_POLLS_SHARE))
    assert running["most_first"] == firsts
    assert running["most"] <= 8
    order = sorted(new, key=lambda pid: starts[pid])
    assert order == new
    # 60 walks of 1 s, 6 at a time: about 10 s, not spread over a window nor an interval.
    span = max(starts[pid] for pid in new) - min(starts[pid] for pid in new)
    assert span < (len(new) / firsts) * walk_s + 5, span


async def test_a_printer_another_replica_polled_meanwhile_waits_for_its_slot(
    poller: Poller,
) -> None:
    """Queued for its first poll, then polled elsewhere (a hand-over): no second poll now."""
    hold_every_partition(poller)
    pid = "elsewhere"
    polled: list[str] = []

    async def poll(config: ev.PrinterConfigured, health: PrinterHealth) -> bool:
        polled.append(config.printer_id)
        return True

    poller.poll = poll  # type: ignore[method-assign]
    key = await configure(poller, configured(pid, interval_s=300.0))
    assert key in poller.timers.waiting
    last = time.time()
    assert poller.health_mirror is not None
    await poller.health_mirror.put(key, PrinterHealth(last_poll_at=last).to_bytes())
    async with timer_loop(poller):
        await eventually(lambda: key in poller.timers.due, timeout_s=10)
    assert polled == []
    assert poller.timers.due[key] == schedule.due_after_poll(last, 300.0, pid)
