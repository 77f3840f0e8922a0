"""The NATS operations of a steady poll, counted on a real NATS (issue 15: about 6 before, 2 now).

A steady poll sends the reading (a JetStream publish, which waits for the stream's ack) and the
job's nak with the delay to the next slot. Configuration and health come from the in-memory
mirrors of their KV buckets; "in progress" is not sent for a quick poll; health is not rewritten
while it does not change.
"""

from __future__ import annotations

import asyncio
import json
import time

from nats.js.api import AckPolicy, ConsumerConfig

from tonerwatch_poller.service import HEALTH_REFRESH_INTERVALS, Poller, PrinterHealth
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.subjects import token
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_shared.testing.nats_traffic import counting


async def jobs(poller: Poller) -> object:
    durable = poller.subjects.name("poller_jobs")
    await poller.bus.js.add_consumer(
        poller.jobs_stream,
        ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
    )
    return await poller.bus.js.pull_subscribe_bind(durable, stream=poller.jobs_stream)


async def test_a_steady_poll_is_one_round_trip_and_two_messages(
    bus: Bus, poller: Poller, snmp_agent: SnmpSimulator
) -> None:
    interval = 1.0
    config = ev.PrinterConfigured(
        source="test",
        site_id="hq",
        printer_id="hp-steady",
        address="127.0.0.1",
        port=snmp_agent.port,
        credentials=ev.SnmpCredentials(community="jetdirect_m252dw"),
        interval_s=interval,
    )
    await poller.on_config(config, None)  # type: ignore[arg-type]
    sub = await jobs(poller)
    readings = poller.subjects.subject("hq", "supply.reading", "hp-steady")

    polled_once = False
    counted = []
    for _ in range(20):  # bounded: the first poll (it learns the printer), then three steady ones
        (msg,) = await sub.fetch(1, timeout=10)  # type: ignore[attr-defined]
        assert json.loads(msg.data)["printer_id"] == "hp-steady"
        with counting(bus.nc) as traffic:
            await poller.handle_job(msg)
        if not polled_once:  # before it: the job waiting for the first slot
            polled_once = readings in traffic.requests
            continue
        counted.append(traffic)
        assert traffic.requests == [readings], traffic  # only the reading waits for an answer
        assert traffic.published == [readings, msg.reply], traffic  # the reading, then the nak
        if len(counted) == 3:
            break
    assert [t.round_trips for t in counted] == [1, 1, 1]
    assert [t.messages for t in counted] == [2, 2, 2]

    # Health stays current in KV for other replicas: exact after the first poll, then refreshed
    # every HEALTH_REFRESH_INTERVALS intervals (its refresh_s says how far it may lag).
    stored = PrinterHealth.from_bytes((await poller.health.get(token("hp-steady"))).value)
    assert stored.refresh_s == HEALTH_REFRESH_INTERVALS * interval and not stored.unreachable
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
    config = ev.PrinterConfigured(
        source="test",
        site_id="hq",
        printer_id="hp-clock",
        address="127.0.0.1",
        port=snmp_agent.port,
        credentials=ev.SnmpCredentials(community="jetdirect_m252dw"),
        interval_s=1.0,
    )
    await poller.on_config(config, None)  # type: ignore[arg-type]
    sub = await jobs(poller)
    readings = poller.subjects.subject("hq", "supply.reading", "hp-clock")
    health_key = f"$KV.{poller.subjects.name('POLLER_HEALTH')}.hp-clock"
    ahead = int((time.time() + 3600) * 1_000_000)  # the seq a clock an hour ahead stamped
    stepped = 0
    for _ in range(20):  # bounded
        (msg,) = await sub.fetch(1, timeout=10)  # type: ignore[attr-defined]
        if "hp-clock" in poller.recent and stepped == 0:
            poller.recent["hp-clock"].seq = ahead
        with counting(bus.nc) as traffic:
            await poller.handle_job(msg)
        if readings in traffic.requests and poller.recent["hp-clock"].seq > ahead - 1:
            stepped += 1
            assert traffic.requests == [readings, health_key], traffic
            stored = PrinterHealth.from_bytes((await poller.health.get(token("hp-clock"))).value)
            assert stored.seq == ahead + stepped
            if stepped == 2:
                break
    assert stepped == 2
