"""Replicas share the fleet's partitions: each holds its share, a stopped one hands its partitions
over at once, a dead one's go to the others after the ack wait, and every printer keeps its slot.

Real NATS, real pollers (in this process, and one in a process of its own to kill), printers
served by snmpsim on loopback. Who holds what is read from the replicas' heartbeats in KV.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from tonerwatch_poller import schedule
from tonerwatch_poller.leases import Beat
from tonerwatch_poller.mirror import latest_values
from tonerwatch_poller.service import (
    REPLICAS_BUCKET,
    PrinterHealth,
    Settings,
)
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.subjects import token
from tonerwatch_shared.testing.infra import eventually

from . import _poller
from ._poller import configured

COMMUNITIES = ["jetdirect_m252dw", "xerox_phaser", "lexmarkprinter", "kyocera"]


def replica(
    bus: Bus, nats_url: str, instance: str, **settings: object
) -> contextlib.AbstractAsyncContextManager[Settings]:
    """Run one poller replica in this process until the block ends (then it stops: SIGTERM's path,
    handing its partitions over, within 30 s)."""
    return _poller.replica(bus, nats_url, instance=instance, stop_within_s=30, **settings)


@contextlib.contextmanager
def replica_process(
    bus: Bus, nats_url: str, instance: str, ack_wait_s: float
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `tonerwatch serve poller` as a process of its own (to be killed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    env.update(
        TONERWATCH_NATS_URL=nats_url,
        TONERWATCH_SUBJECT_ROOT=bus.subjects.root,
        TONERWATCH_STREAM_PREFIX=bus.subjects.stream_prefix,
        TONERWATCH_INSTANCE=instance,
        TONERWATCH_JOB_ACK_WAIT_S=str(ack_wait_s),
        TONERWATCH_POLL_TIMEOUT_S="0.3",
        TONERWATCH_POLL_RETRIES="0",
        TONERWATCH_LOG_FORMAT="text",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tonerwatch", "serve", "poller"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def holdings(bus: Bus) -> dict[str, int]:
    """Return how many partitions each replica holds, by instance, from their heartbeats."""
    kv = await bus.key_value(REPLICAS_BUCKET)
    out: dict[str, int] = {}
    for raw in (await latest_values(kv)).values():
        beat = Beat.from_bytes(raw)
        if beat is not None and beat.leases:
            instance = beat.replica.rsplit("-", 1)[0]
            out[instance] = out.get(instance, 0) + len(beat.leases)
    return out


class Readings:
    """Every reading published while the block runs, by printer."""

    def __init__(self) -> None:
        self.by_printer: dict[str, list[ev.SupplyReading]] = {}

    async def record(self, event: ev.Event) -> None:
        if isinstance(event, ev.SupplyReading):
            self.by_printer.setdefault(event.printer_id, []).append(event)

    def count(self, printer_id: str, source: str | None = None, after: float = 0.0) -> int:
        return sum(
            1
            for r in self.by_printer.get(printer_id, [])
            if (source is None or r.source == source) and r.occurred_at.timestamp() > after
        )

    def gaps(self, printer_id: str) -> list[float]:
        times = sorted(r.occurred_at.timestamp() for r in self.by_printer.get(printer_id, []))
        return [b - a for a, b in itertools.pairwise(times)]


@contextlib.asynccontextmanager
async def listening(bus: Bus) -> AsyncIterator[Readings]:
    readings = Readings()
    stop = asyncio.Event()
    task = asyncio.create_task(
        bus.subscribe_events(
            bus.subjects.filter("supply.reading"), stop=stop, handler=readings.record
        )
    )
    await asyncio.sleep(0.2)  # subscribed before anything is published
    try:
        yield readings
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_replica_started_gets_its_share_and_a_stopped_one_hands_over_at_once(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    interval, n = 4.0, 12
    ids = [f"lp{i}" for i in range(n)]

    def polled(times: int, source: str | None = None, after: float = 0.0) -> bool:
        return all(readings.count(p, source, after) >= times for p in ids)

    async def held(expected: dict[str, int]) -> bool:
        return await holdings(bus) == expected

    async with listening(bus) as readings, replica(bus, nats_url, "a", job_ack_wait_s=120):
        await eventually(lambda: held({"a": 16}), timeout_s=30)  # alone: every partition
        for i, pid in enumerate(ids):
            await bus.publish(configured(pid, snmp_agent.port, COMMUNITIES[i % 4], interval))
        await eventually(lambda: polled(2), timeout_s=60)
        async with replica(bus, nats_url, "b", job_ack_wait_s=120):
            # a hands back what is beyond its share of two: b gets half.
            await eventually(lambda: held({"a": 8, "b": 8}), timeout_s=30)
            started = time.time()
            await eventually(lambda: polled(2, after=started), timeout_s=60)
            recent = {
                p: {r.source for r in readings.by_printer[p] if r.occurred_at.timestamp() > started}
                for p in ids
            }
            # Each printer is polled by the replica holding its partition, and only by it.
            assert all(len(s) == 1 for s in recent.values()), recent
            assert set().union(*recent.values()) == {"poller/a", "poller/b"}
            moved = [p for p in ids if recent[p] == {"poller/b"}]
        # b stopped: a holds every partition long before b's leases could have lapsed (120 s).
        stopped = time.time()
        await eventually(lambda: held({"a": 16}), timeout_s=30)
        await eventually(lambda: polled(2, "poller/a", after=stopped), timeout_s=60)
    assert moved
    # Polls stay one interval apart across both hand-overs: the replica taking a partition polls
    # each printer at its next slot (the one handing it over wrote their last poll times before
    # letting go), never again at once. The bound is what due_after_poll guarantees (half an
    # interval from a poll's start), less the poll's own duration (a reading is stamped when the
    # answer is in).
    for pid in ids:
        assert min(readings.gaps(pid)) >= interval / 2 - 0.3, (pid, readings.gaps(pid))


async def test_a_dead_replicas_partitions_go_to_the_others_after_the_ack_wait(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    interval, n, ack_wait = 2.0, 8, 3.0
    ids = [f"dp{i}" for i in range(n)]
    async with listening(bus) as readings:
        with replica_process(bus, nats_url, "doomed", ack_wait) as proc:
            async with replica(bus, nats_url, "a", job_ack_wait_s=ack_wait):

                async def shared() -> bool:
                    return await holdings(bus) == {"a": 8, "doomed": 8}

                await eventually(shared, timeout_s=60)
                for i, pid in enumerate(ids):
                    await bus.publish(
                        configured(pid, snmp_agent.port, COMMUNITIES[i % 4], interval)
                    )
                await eventually(lambda: all(readings.count(p) >= 2 for p in ids), timeout_s=60)
                doomed = [p for p in ids if readings.count(p, "poller/doomed")]
                assert doomed, "the process polled none: nothing to hand over"
                proc.send_signal(signal.SIGKILL)  # no nak, no goodbye
                proc.wait(timeout=10)
                killed = max(
                    r.occurred_at.timestamp() for rs in readings.by_printer.values() for r in rs
                )

                async def all_with_a() -> bool:
                    return (await holdings(bus)).get("a") == 16

                await eventually(all_with_a, timeout_s=60)
                await eventually(
                    lambda: all(readings.count(p, "poller/a", after=killed) >= 2 for p in doomed),
                    timeout_s=60,
                )
    for pid in ids:
        assert min(readings.gaps(pid)) >= interval / 2 - 0.3, (pid, readings.gaps(pid))


async def test_a_printer_added_is_polled_within_seconds_and_one_removed_is_not_again(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    async with (
        listening(bus) as readings,
        replica(bus, nats_url, "a"),
        replica(bus, nats_url, "b"),
    ):

        async def shared() -> bool:
            return await holdings(bus) == {"a": 8, "b": 8}

        await eventually(shared, timeout_s=30)
        # Hourly: a poller waiting for the printer's slot would take up to an hour.
        await bus.publish(configured("hourly", snmp_agent.port, "jetdirect_m252dw", 3600.0))
        await eventually(
            lambda: readings.count("hourly") >= 1, timeout_s=schedule.FIRST_POLL_WINDOW_S + 20
        )
        # A printer polled every second, removed: polled no more once the removal is known.
        await bus.publish(configured("brief", snmp_agent.port, "kyocera", 1.0))
        await eventually(lambda: readings.count("brief") >= 2, timeout_s=30)
        await bus.publish(ev.PrinterRemoved(source="test", site_id="hq", printer_id="brief"))
        await bus.publish(configured("after", snmp_agent.port, "xerox_phaser", 1.0))
        await eventually(lambda: readings.count("after") >= 3, timeout_s=30)
    first_after = min(r.occurred_at.timestamp() for r in readings.by_printer["after"])
    assert readings.count("brief", after=first_after) == 0
    assert readings.count("hourly") == 1


async def test_old_per_printer_jobs_are_retired_and_their_printers_keep_their_slots(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    """A poller before partitions left a job per printer and its consumer: the new one removes
    both and polls each printer at its next slot, from its last poll time in KV."""
    subjects = bus.subjects
    stream = subjects.name("POLLJOBS")
    interval = 20.0
    ids = ["old0", "old1", "old2"]
    # What the previous version set up: its stream, its consumer, a job per printer.
    await bus.js.add_stream(
        StreamConfig(
            name=stream,
            subjects=[subjects.area("polljob", keyed=False)],
            retention=RetentionPolicy.WORK_QUEUE,
            max_msgs_per_subject=1,
        )
    )
    await bus.js.add_consumer(
        stream,
        ConsumerConfig(durable_name=subjects.name("poller_jobs"), ack_policy=AckPolicy.EXPLICIT),
    )
    printers = await bus.key_value("POLLER_PRINTERS")
    health = await bus.key_value("POLLER_HEALTH")
    now = time.time()
    due: dict[str, float] = {}
    for i, pid in enumerate(ids):
        await printers.put(
            token(pid), configured(pid, snmp_agent.port, COMMUNITIES[i], interval).to_bytes()
        )
        # Polled at its last slot, exactly (as the old poller's record was after a failure).
        last = schedule.next_slot(now, interval, pid) - interval
        await health.put(token(pid), PrinterHealth(last_poll_at=last).to_bytes())
        due[pid] = schedule.due_after_poll(last, interval, pid)
        await bus.js.publish(
            subjects.subject("hq", "polljob", pid), b'{"printer_id": "%s"}' % pid.encode()
        )
    async with listening(bus) as readings, replica(bus, nats_url, "a"):
        await eventually(lambda: all(readings.count(p) >= 1 for p in ids), timeout_s=interval + 20)
        info = await bus.js.stream_info(stream, subjects_filter=subjects.all)
        consumers = [c.name for c in await bus.js.consumers_info(stream)]
    assert info.state.subjects is not None
    assert not [
        s for s in info.state.subjects if not s.startswith(f"{subjects.root}._fleet.polljob.part.")
    ]
    assert len(info.state.subjects) == 16
    assert consumers == [subjects.name("poller_leases")]
    for pid in ids:
        first = min(r.occurred_at.timestamp() for r in readings.by_printer[pid])
        assert first >= due[pid] - schedule.SLOT_GRID_S, (
            pid,
            first,
            due[pid],
        )  # not before its slot
