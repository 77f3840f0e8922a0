"""The NATS operations of a steady poll, counted on a real NATS (issue 15: about 6 before, 1 now).

A steady poll sends its reading (a JetStream publish, which waits for the stream's ack) and
nothing else: the printer's partition is held by this replica (leases.py), which polls it from a
local timer, so no job is delivered and no nak is sent per poll. Configuration and health come
from the in-memory mirrors of their KV buckets; health is not rewritten while it does not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from tonerwatch_poller.service import HEALTH_REFRESH_INTERVALS, Poller, PrinterHealth
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.subjects import token
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_shared.testing.nats_traffic import counting

from ._poller import configured


def polls(poller: Poller) -> float:
    value = poller.metrics.registry.get_sample_value(
        "tonerwatch_polls_total", {"result": "ok", "protocol": "snmp"}
    )
    return value or 0.0


@contextlib.asynccontextmanager
async def holding(poller: Poller) -> AsyncIterator[None]:
    """Run the poller's partitions and schedule; its rounds (in progress, heartbeat) are ten
    minutes apart, so what a window counts is the polls' own traffic."""
    poller.settings = poller.settings.model_copy(update={"job_ack_wait_s": 2000.0})
    stop = asyncio.Event()
    loop = asyncio.create_task(poller.run_jobs(stop))
    try:
        await eventually(lambda: len(poller.leases) == poller.settings.poll_partitions, 20)
        yield
    finally:
        stop.set()
        await loop


async def test_a_steady_poll_is_one_round_trip_and_one_message(
    bus: Bus, poller: Poller, snmp_agent: SnmpSimulator
) -> None:
    await poller.on_config(configured("hp-steady", snmp_agent.port, interval_s=1.0), None)  # type: ignore[arg-type]
    readings = poller.subjects.subject("hq", "supply.reading", "hp-steady")
    async with holding(poller):
        # Bounded: the first poll (it learns the printer), then one a second.
        await eventually(lambda: polls(poller) >= 2, timeout_s=30)
        with counting(bus.nc) as traffic:
            before = polls(poller)
            await eventually(lambda: polls(poller) >= before + 3, timeout_s=30)
            steady = polls(poller) - before
    assert steady >= 3
    # Only the readings, each waiting for its ack; no job, no nak, no KV.
    assert traffic.requests == [readings] * len(traffic.requests), traffic
    assert traffic.published == traffic.requests, traffic
    assert steady - 1 <= traffic.round_trips <= steady + 1  # the window cuts a poll at most

    # Health stays current in KV for other replicas: exact after the first poll, then refreshed
    # every HEALTH_REFRESH_INTERVALS intervals (its refresh_s says how far it may lag).
    stored = PrinterHealth.from_bytes((await poller.health.get(token("hp-steady"))).value)
    assert stored.refresh_s == HEALTH_REFRESH_INTERVALS * 1.0 and not stored.unreachable
    assert stored.last_poll_at is not None


async def test_mirrors_follow_what_other_replicas_write(bus: Bus, poller: Poller) -> None:
    assert poller.config_mirror is not None and poller.health_mirror is not None
    other = ev.PrinterConfigured(
        source="test", site_id="hq", printer_id="hp-other", address="127.0.0.1", interval_s=60
    )
    # Another replica (here: the KV directly) configures a printer and records a failure.
    await poller.printers.put(token("hp-other"), other.to_bytes())
    down = PrinterHealth(failures=3, unreachable=True, last_poll_at=1.0)
    await poller.health.put(token("hp-other"), down.to_bytes())
    await eventually(lambda: poller.config_mirror.get(token("hp-other")) is not None)  # type: ignore[union-attr]
    await eventually(lambda: poller.health_mirror.get(token("hp-other")) is not None)  # type: ignore[union-attr]
    config = await poller.read_config("hp-other")
    assert config is not None and config.interval_s == 60
    health = await poller.read_health("hp-other")
    assert health.unreachable and health.failures == 3
    # Removed elsewhere: the mirror forgets it, and its next job ends.
    await poller.printers.delete(token("hp-other"))
    await eventually(lambda: poller.config_mirror.get(token("hp-other")) is None)  # type: ignore[union-attr]
    await asyncio.sleep(0)
    assert await poller.read_config("hp-other") is None


async def test_a_clock_behind_the_printer_seq_writes_health_at_every_poll(
    bus: Bus, poller: Poller, snmp_agent: SnmpSimulator
) -> None:
    """Health is written at every poll while the clock is behind the printer's seq (it stepped
    back): the seq then counts on from the last one, and a restart must continue it exactly."""
    await poller.on_config(configured("hp-clock", snmp_agent.port, interval_s=1.0), None)  # type: ignore[arg-type]
    readings = poller.subjects.subject("hq", "supply.reading", "hp-clock")
    health_key = f"$KV.{poller.subjects.name('POLLER_HEALTH')}.hp-clock"
    ahead = int((time.time() + 3600) * 1_000_000)  # the seq a clock an hour ahead stamped
    async with holding(poller):
        await eventually(lambda: "hp-clock" in poller.recent, timeout_s=30)
        poller.recent["hp-clock"].seq = ahead
        with counting(bus.nc) as traffic:

            def from_first_reading() -> list[str]:
                sent = traffic.requests
                return sent[sent.index(readings) :] if readings in sent else []

            # Two polls seen whole: the second's health record follows its reading (under load,
            # a moment later: a run on a loaded machine saw the count end between them).
            await eventually(lambda: from_first_reading().count(health_key) >= 2, timeout_s=30)
    # Each poll: its reading, then its health record (which carries the seq).
    counted = from_first_reading()
    assert counted[:4] == [readings, health_key, readings, health_key], traffic
    stored = PrinterHealth.from_bytes((await poller.health.get(token("hp-clock"))).value)
    assert stored.seq is not None and stored.seq >= ahead + 2
