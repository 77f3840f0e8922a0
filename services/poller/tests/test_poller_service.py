"""The poller service over real NATS and real UDP: configured printers get polled and published."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tonerwatch_poller.service import Settings
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.printer.model import SupplyKind
from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port
from tonerwatch_shared.testing.infra import eventually

from ._poller import configured, first_reading, replica


async def test_hp_m252dw_configured_is_polled_and_published(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    async with replica(bus, nats_url):
        await bus.publish(configured("hp-1", snmp_agent.port, "jetdirect_m252dw"))
        reading = await first_reading(bus)
    assert reading.printer_id == "hp-1" and reading.site_id == "hq"
    assert reading.printer.model and "M252dw" in reading.printer.model
    toners = {s.colour: s for s in reading.supplies if s.kind == SupplyKind.TONER}
    assert set(toners) == {"black", "cyan", "magenta", "yellow"}
    assert toners["black"].percent == 63.0 and toners["black"].part_number == "CF400X"
    assert reading.bytes_sent > 0 and reading.bytes_received > 0 and reading.requests >= 1


async def test_polls_repeat_at_the_interval_with_steady_gets(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    seen: list[ev.SupplyReading] = []

    async with replica(bus, nats_url):
        await bus.publish(configured("hp-2", snmp_agent.port, "jetdirect_m252dw", interval_s=1.0))

        def second(e: ev.Event) -> bool:
            if isinstance(e, ev.SupplyReading) and e.printer_id == "hp-2":
                seen.append(e)
            return len(seen) >= 2

        await wait_for_event(bus, bus.subjects.filter("supply.reading"), second, timeout_s=30)
    first, steady = seen[0], seen[1]
    assert steady.requests == 1, "a steady poll is one GET of the learned OIDs"
    assert steady.bytes_sent + steady.bytes_received < first.bytes_sent + first.bytes_received
    assert [s.percent for s in steady.supplies] == [s.percent for s in first.supplies]
    # The printer's sequence only grows (receivers drop what is older than what they applied).
    assert first.seq is not None and steady.seq is not None and steady.seq > first.seq


async def test_silent_printer_becomes_unreachable_then_reachable(
    bus: Bus, nats_url: str, printer_walks_dir: object
) -> None:
    port = free_udp_port()
    recording = Path(str(printer_walks_dir)) / "jetdirect_m252dw.snmprec"
    async with replica(bus, nats_url, unreachable_after=2):
        await bus.publish(configured("hp-3", port, "jetdirect_m252dw", interval_s=1.0))
        down = await wait_for_event(
            bus,
            bus.subjects.filter("printer.unreachable"),
            lambda e: isinstance(e, ev.PrinterUnreachable),
            timeout_s=30,
        )
        assert isinstance(down, ev.PrinterUnreachable) and down.consecutive_failures == 2
        async with SnmpSimulator([recording], [("127.0.0.1", port)]):
            up = await wait_for_event(
                bus,
                bus.subjects.filter("printer.reachable"),
                lambda e: isinstance(e, ev.PrinterReachable),
                timeout_s=30,
            )
    assert isinstance(up, ev.PrinterReachable) and up.printer_id == "hp-3"
    assert down.seq is not None and up.seq is not None and up.seq > down.seq


async def test_the_jobs_are_one_per_partition_however_many_printers_are_configured(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    async with replica(bus, nats_url, poll_partitions=4):
        for i in range(3):
            for _ in range(2):
                await bus.publish(
                    configured(f"hp-4{i}", snmp_agent.port, "jetdirect_m252dw", interval_s=60)
                )
        readings: list[ev.SupplyReading] = []

        def all_polled(e: ev.Event) -> bool:
            if isinstance(e, ev.SupplyReading):
                readings.append(e)
            return len({r.printer_id for r in readings}) == 3

        await wait_for_event(bus, bus.subjects.filter("supply.reading"), all_polled, timeout_s=20)
        info = await bus.js.stream_info(
            bus.subjects.name("POLLJOBS"), subjects_filter=bus.subjects.all
        )
    assert info.state.subjects == {
        bus.subjects.subject("_fleet", "polljob.part", str(n)): 1 for n in range(4)
    }
    assert sorted(r.printer_id for r in readings) == ["hp-40", "hp-41", "hp-42"]  # each once


async def test_two_replicas_share_the_fleet_without_double_polls(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    printers = [
        "jetdirect_m252dw",
        "xerox_phaser",
        "lexmarkprinter",
        "kyocera",
        "ricoh_mpc3002",
        "sharp_mx2614n",
    ]
    readings: list[ev.SupplyReading] = []
    async with replica(bus, nats_url), replica(bus, nats_url):
        for i, name in enumerate(printers):
            await bus.publish(configured(f"p{i}", snmp_agent.port, name, interval_s=30))

        def all_polled(e: ev.Event) -> bool:
            if isinstance(e, ev.SupplyReading):
                readings.append(e)
            return len({r.printer_id for r in readings}) == len(printers)

        await wait_for_event(bus, bus.subjects.filter("supply.reading"), all_polled, timeout_s=40)
        await asyncio.sleep(1.0)
    ids = [r.printer_id for r in readings]
    assert sorted(ids) == sorted(f"p{i}" for i in range(len(printers))), (
        "each printer polled exactly once"
    )
    sources = {r.source for r in readings}
    assert len(sources) >= 1


async def test_removed_printer_stops_being_polled(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    readings: list[ev.SupplyReading] = []

    async def record(event: ev.Event) -> None:
        if isinstance(event, ev.SupplyReading):
            readings.append(event)

    def of(printer_id: str) -> list[ev.SupplyReading]:
        return [r for r in readings if r.printer_id == printer_id]

    stop = asyncio.Event()
    listener = asyncio.create_task(
        bus.subscribe_events(bus.subjects.filter("supply.reading"), stop=stop, handler=record)
    )
    try:
        async with replica(bus, nats_url):
            await bus.publish(
                configured("hp-5", snmp_agent.port, "jetdirect_m252dw", interval_s=1.0)
            )
            await eventually(lambda: len(of("hp-5")) >= 2, timeout_s=20)
            await bus.publish(ev.PrinterRemoved(source="test", site_id="hq", printer_id="hp-5"))
            # Configured after the removal, through the same consumer: once it is polled twice
            # (1 s apart), the removal had reached the schedule well before.
            await bus.publish(
                configured("hp-6", snmp_agent.port, "jetdirect_m252dw", interval_s=1.0)
            )
            await eventually(lambda: len(of("hp-6")) >= 3, timeout_s=20)
    finally:
        stop.set()
        await asyncio.wait_for(listener, 10)
    first_of_hp6 = of("hp-6")[0].occurred_at
    assert not [r for r in of("hp-5") if r.occurred_at > first_of_hp6], "polled after removal"


def test_settings_reject_a_zero_timeout() -> None:
    with pytest.raises(ValueError):
        Settings(poll_timeout_s=0)
