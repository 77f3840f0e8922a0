"""Poll slots: a fleet's polls spread over the interval and stay spread across NATS restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tonerwatch_poller import schedule
from tonerwatch_poller.service import Poller, PollerMetrics, PrinterHealth, Settings
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.subjects import Subjects, token
from tonerwatch_shared.testing.infra import eventually

from ._poller import configured, replica

IDS = [f"printer-{i:02d}" for i in range(40)]


def test_phases_spread_a_fleet_evenly_over_the_interval() -> None:
    phases = sorted(schedule.phase(p) for p in IDS)
    assert all(0 <= x < 1 for x in phases)
    # 40 printers: every tenth of the interval holds some, none holds more than a quarter.
    counts = [sum(1 for x in phases if k / 10 <= x < (k + 1) / 10) for k in range(10)]
    assert min(counts) >= 1 and max(counts) <= 10, counts
    assert schedule.phase("printer-07") == schedule.phase("printer-07")  # deterministic


def test_next_poll_lands_on_the_printers_slot_then_every_interval() -> None:
    interval = 300.0
    slot = schedule.slot_offset(interval, "hp-1")
    assert slot % schedule.SLOT_GRID_S == 0
    assert 0 <= schedule.phase("hp-1") * interval - slot < schedule.SLOT_GRID_S
    first = schedule.due_after_poll(1_000_000.0, interval, "hp-1")
    assert 1_000_000.0 + interval / 2 <= first < 1_000_000.0 + 1.5 * interval
    assert abs((first - slot) % interval) < 1e-6 or abs((first - slot) % interval - interval) < 1e-6
    assert schedule.due_after_poll(first, interval, "hp-1") - first == interval


def test_printers_whose_phases_share_a_grid_step_come_due_together() -> None:
    interval = 60.0
    fleet = [f"printer-{i:04d}" for i in range(600)]
    dues = [schedule.due_after_poll(1_000_000.0, interval, p) for p in fleet]
    assert all(d % schedule.SLOT_GRID_S == 0 for d in dues)  # on the grid: due in groups
    assert len(set(dues)) >= interval * 0.9  # and still spread over the whole interval
    # A one-second interval: a grid of a tenth of it.
    assert schedule.slot_offset(1.0, "printer-0001") * 10 % 1 < 1e-9


def test_a_printer_never_polled_waits_for_no_slot_and_overdue_ones_spread_over_the_window() -> None:
    t0 = 1_000_000.0
    # Never polled: no time at all (it is polled as soon as a slot is free: test_first_polls).
    assert all(
        schedule.due_on_taking(
            t0, last_poll_at=None, refresh_s=None, exact=True, interval_s=300, printer_id=p
        )
        is None
        for p in IDS
    )
    # Overdue (their holder died long ago): spread over the window, not all in one second.
    last = t0 - 3600.0
    dues = [
        schedule.due_on_taking(
            t0, last_poll_at=last, refresh_s=None, exact=True, interval_s=300, printer_id=p
        )
        for p in IDS
    ]
    assert dues == [schedule.first_due(t0, 300.0, p) for p in IDS]
    assert all(d is not None and 0 <= d - t0 < schedule.FIRST_POLL_WINDOW_S for d in dues)
    assert sum(1 for d in dues if d is not None and d - t0 < 1.0) <= 8


def test_a_printer_taken_over_waits_for_its_slot_unless_it_is_overdue() -> None:
    interval, pid = 300.0, "hp-1"
    last = 1_000_000.0
    due = schedule.due_after_poll(last, interval, pid)

    def taken_at(now: float, last_poll_at: float | None = last) -> float:
        return schedule.due_on_taking(
            now,
            last_poll_at=last_poll_at,
            refresh_s=None,
            exact=True,
            interval_s=interval,
            printer_id=pid,
        )

    # Taken 40 s after its last poll (another replica stopped): its next slot, not now.
    assert taken_at(last + 40) == due
    # Overdue (its holder died long ago): soon, within the first-poll window.
    assert due + 600 <= taken_at(due + 600) < due + 600 + schedule.FIRST_POLL_WINDOW_S
    # Then every interval from the poll on.
    assert schedule.due_after_poll(due, interval, pid) == due + interval


def test_a_poll_asked_for_since_the_timer_was_set_moves_the_next_one_to_its_slot() -> None:
    interval, pid = 60.0, "hp-1"
    slot = schedule.next_slot(1_000_000.0, interval, pid)
    # The timer fires at the slot; the last poll was the previous slot's: poll.
    assert schedule.polled_since(slot, slot - interval, interval, pid) is None
    # Asked for half an interval before: that poll stands for this slot, the next one follows.
    assert schedule.polled_since(slot, slot - interval / 2 + 1, interval, pid) == slot + interval
    assert schedule.polled_since(slot, None, interval, pid) is None


async def _overdue_poller(bus: Bus, nats_url: str) -> Poller:
    """Return a poller replica whose jobs are overdue 60 s after 1.5 intervals (not started)."""
    return Poller(
        settings=Settings(nats_url=nats_url, job_ack_wait_s=60),
        bus=bus,
        client=SnmpClient(),
        printers=await bus.key_value("POLLER_PRINTERS"),
        health=await bus.key_value("POLLER_HEALTH"),
        metrics=PollerMetrics(),
    )


async def test_printers_nobody_polled_in_time_count_as_overdue(bus: Bus, nats_url: str) -> None:
    poller = await _overdue_poller(bus, nats_url)
    now = time.time()
    for pid, last in (("fresh", now - 100), ("late", now - 600), ("never", None)):
        cfg = ev.PrinterConfigured(
            source="t", site_id="hq", printer_id=pid, address="127.0.0.1", interval_s=300
        )
        await poller.printers.put(token(pid), cfg.to_bytes())
        if last is not None:
            await poller.health.put(token(pid), PrinterHealth(last_poll_at=last).to_bytes())
    # 300 s interval: overdue 1.5 x 300 + 60 = 510 s after the last poll.
    assert await poller.count_overdue(now) == 1
    assert await poller.count_overdue(now + 3600) == 3
    await poller.overdue_check(every_s=0)()
    assert poller.metrics.registry.get_sample_value("tonerwatch_poll_jobs_overdue") == 1
    await poller.client.close()


async def test_the_overdue_count_from_the_mirrors_follows_changes_and_time_without_reparsing(
    bus: Bus, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    poller = await _overdue_poller(bus, nats_url)
    now = time.time()
    # 300 s interval: overdue 1.5 x 300 + 60 = 510 s after the last poll.
    for pid, last in (("fresh", now - 100), ("late", now - 600), ("own", None), ("other", None)):
        cfg = ev.PrinterConfigured(
            source="t", site_id="hq", printer_id=pid, address="127.0.0.1", interval_s=300
        )
        await poller.printers.put(token(pid), cfg.to_bytes())
        if last is not None:
            await poller.health.put(token(pid), PrinterHealth(last_poll_at=last).to_bytes())
    await poller.start_mirrors()
    try:
        assert await poller.health_mirror.caught_up()  # type: ignore[union-attr]
        await poller._store_health("own", PrinterHealth(last_poll_at=now - 400))
        parsed = 0
        from_bytes = PrinterHealth.from_bytes

        def counting(raw: bytes | None) -> PrinterHealth:
            nonlocal parsed
            parsed += 1
            return from_bytes(raw)

        monkeypatch.setattr(PrinterHealth, "from_bytes", staticmethod(counting))
        # "other" was never polled: overdue 510 s + the first-poll window (10 s) after its
        # configuration (now).
        assert await poller.count_overdue(now) == 1
        first = parsed
        assert first == 3  # the stored records of fresh, late, other (own's is this replica's)
        assert await poller.count_overdue(now) == 1
        assert parsed == first  # nothing changed: nothing parsed again
        # Only time passing: own (400 s ago) becomes overdue after 110 s more, fresh after 410 s.
        assert await poller.count_overdue(now + 120) == 2
        assert await poller.count_overdue(now + 420) == 3
        assert parsed == first
        # Another replica polls "late": its new record is read once.
        await poller.health.put(token("late"), PrinterHealth(last_poll_at=now).to_bytes())
        await eventually(
            lambda: (
                poller.health_mirror.get(token("late"))  # type: ignore[union-attr]
                == PrinterHealth(last_poll_at=now).to_bytes()
            )
        )
        assert await poller.count_overdue(now) == 0
        assert parsed == first + 1
        # This replica polls "fresh" much later than the stored record: its own time counts.
        await poller._store_health("fresh", PrinterHealth(last_poll_at=now + 400))
        assert await poller.count_overdue(now + 600) == 3  # late, own, other (never polled)
        # fresh's health deleted: its own last poll still counts.
        await poller.health.delete(token("fresh"))
        await eventually(
            lambda: poller.health_mirror.get(token("fresh")) is None  # type: ignore[union-attr]
        )
        assert await poller.count_overdue(now + 600) == 3
        # No record and no own poll: from its configuration time (now), as "other".
        poller.recent.pop("fresh")
        assert await poller.count_overdue(now + 500) == 1  # own only
        assert await poller.count_overdue(now + 3600) == 4
        await poller.printers.delete(token("late"))
        await eventually(lambda: token("late") not in poller.monitored)
        assert await poller.count_overdue(now + 3600) == 3
        assert token("late") not in poller._overdue_times
    finally:
        await poller.stop_mirrors()
        await poller.client.close()


def _busiest_second(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


async def test_polls_stay_spread_after_a_nats_restart(
    tmp_path: Path, snmp_agent: SnmpSimulator
) -> None:
    """10 printers every 10 s: polls spread from the second on, and neither a NATS crash, nor the jobs' stream
    lost while polling, nor a new poller with nothing but KV to go by bunches them."""
    interval, n = 10.0, 10
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    subjects = Subjects(root="tsched", stream_prefix="TSCHED")
    bus = await Bus.connect(server.url, subjects=subjects, name="test", attempts=3)
    polls: dict[str, list[float]] = {}

    async def seen(msg: object) -> None:
        # Readings of polls made together come in one batch (tonerwatch_poller.batching).
        for reading in ev.unbatched(ev.parse_event(msg.data)):  # type: ignore[attr-defined]
            assert isinstance(reading, ev.SupplyReading)
            polls.setdefault(reading.printer_id, []).append(time.monotonic())

    ops = free_tcp_port()
    # After a crash, jobs come back when their ack wait ends, not at their nak delay.
    knobs = {"poll_timeout_s": 0.5, "ops_port": ops, "job_ack_wait_s": 2, "stop_within_s": 30}

    def polled_again(before: dict[str, int]) -> list[float]:
        return sorted(t[before[p]] for p, t in polls.items())

    async def metrics() -> str:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(f"http://127.0.0.1:{ops}/metrics")).text

    async def all_polled_again() -> list[float]:
        before = {p: len(t) for p, t in polls.items()}
        # Every printer is polled again within 1.5 intervals (+ the 2 s ack wait).
        await eventually(
            lambda: all(len(polls[p]) > before[p] for p in polls), timeout_s=interval * 1.5 + 10
        )
        return polled_again(before)

    try:
        await bus.ensure_event_stream()
        await bus.nc.subscribe(subjects.filter("supply.reading"), cb=seen)
        async with replica(bus, server.url, **knobs):
            added = time.monotonic()
            for i in range(n):
                await bus.publish(configured(f"p{i}", snmp_agent.port, interval_s=interval))
            await eventually(lambda: len(polls) == n, timeout_s=30)
            # First polls at once (no slot to wait for), then each printer on its slot: spread.
            await eventually(lambda: all(len(t) >= 2 for t in polls.values()), timeout_s=30)
            seconds = sorted(times[1] - added for times in polls.values())
            assert _busiest_second(seconds) <= n // 2, f"second polls bunched: {seconds}"

            # kill -9: the server keeps no in-memory state (a crash, an OOM kill).
            assert server.proc is not None
            server.proc.kill()
            await asyncio.to_thread(server.proc.wait)
            await asyncio.to_thread(server.start)
            assert _busiest_second(await all_polled_again()) <= n // 2

            # The jobs' stream lost while polling (a NATS that lost its store): the poller sets
            # it up again, publishes the partitions again and takes them.
            await bus.js.delete_stream(subjects.name("POLLJOBS"))
            assert _busiest_second(await all_polled_again()) <= n // 2

            async def partitions_back() -> bool:
                info = await bus.js.stream_info(subjects.name("POLLJOBS"))
                return info.state.messages == 16 and "tonerwatch_poll_partitions_held 16.0" in (
                    await metrics()
                )

            await eventually(partitions_back, timeout_s=30)
        # Everything about jobs lost (stream and consumer) and a new poller: it has only the
        # printers' last poll times in KV to go by, and keeps each printer on its slot.
        await bus.js.delete_stream(subjects.name("POLLJOBS"))
        async with replica(bus, server.url, **knobs):
            restarted = time.monotonic()
            after = await all_polled_again()
            assert _busiest_second(after) <= n // 2, (
                f"polls bunched after losing the jobs: {[round(t - restarted, 2) for t in after]}"
            )
            assert "tonerwatch_poll_jobs_overdue 0.0" in await metrics()
    finally:
        await bus.drain()
        await asyncio.to_thread(server.stop)


def test_a_lagging_health_record_still_keeps_the_printer_on_its_slots() -> None:
    """Another replica's record may lag by refresh_s: a printer taken over is due at a slot all the same."""
    pid, interval = "hp-lag", 30.0
    refresh = 10 * interval
    slot = schedule.next_slot(1_000_000.0, interval, pid)
    stored = slot - 5 * interval  # rewritten five polls ago, polled on every slot since

    def taken_at(now: float) -> float:
        return schedule.due_on_taking(
            now,
            last_poll_at=stored,
            refresh_s=refresh,
            exact=False,
            interval_s=interval,
            printer_id=pid,
        )

    assert taken_at(slot) == slot  # on its slot
    # A little late: that slot's poll, soon.
    assert slot + 3 <= taken_at(slot + 3) < slot + 3 + schedule.FIRST_POLL_WINDOW_S
    # Taken mid-interval: that slot was polled, it waits for the next.
    assert taken_at(slot + 12) == slot + interval
    # A record past its refresh: polls stopped, so the printer is overdue and polled soon.
    assert schedule.assumed_last_poll(
        slot, slot - refresh - 2 * interval, refresh, interval, pid
    ) == (slot - refresh - 2 * interval)
    # An exact record (no refresh_s) is taken as it is.
    assert schedule.assumed_last_poll(slot, stored, None, interval, pid) == stored
