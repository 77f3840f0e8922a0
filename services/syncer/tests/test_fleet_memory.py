"""The fleet bucket read from memory: steady readings held, every change written before the ack."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
from prometheus_client import CollectorRegistry

from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, ConsumerSpec
from tonerwatch_shared.kv import ModelKv
from tonerwatch_shared.printer.model import Counters, PrinterIdentity, Supply, SupplyKind
from tonerwatch_shared.settings import load_settings
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_syncer.fleet import (
    FLEET_BUCKET,
    STATE_BUCKET,
    KnownPrinter,
    SiteSyncState,
    fold,
    only_read_times_differ,
)
from tonerwatch_syncer.service import Settings, Syncer

T0 = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)
PID = "hp-m479-07"


def reading(minute: int, percent: float = 60, pages: int = 1200) -> ev.SupplyReading:
    """An HP M479 poll: black toner at percent, the page counter at pages."""
    return ev.SupplyReading(
        source="poller/test",
        site_id="hq",
        printer_id=PID,
        occurred_at=T0 + dt.timedelta(minutes=minute),
        seq=minute + 1,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="HP", model="Color LaserJet MFP M479fdw", serial="S7"),
        supplies=(
            Supply(
                index="1.1",
                description="Black Cartridge HP 415A",
                kind=SupplyKind.TONER,
                colour="black",
                percent=percent,
            ),
        ),
        counters=Counters(lifetime_pages=pages),
    )


def test_a_steady_reading_differs_only_in_when_the_printer_was_read() -> None:
    first = fold(None, reading(0))
    assert first is not None
    steady = fold(first, reading(1))
    assert steady is not None and only_read_times_differ(first, steady)
    assert steady.entry.last_read_at == T0 + dt.timedelta(minutes=1)
    printed = fold(first, reading(1, pages=1201))
    lower = fold(first, reading(1, percent=59))
    assert printed is not None and not only_read_times_differ(first, printed)
    assert lower is not None and not only_read_times_differ(first, lower)


async def syncer_on(bus: Bus) -> tuple[Syncer, ModelKv[KnownPrinter], httpx.AsyncClient]:
    settings = load_settings(
        Settings,
        nats_url="nats://unused",
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
    )
    fleet = ModelKv(await bus.key_value(FLEET_BUCKET), KnownPrinter)
    client = httpx.AsyncClient()
    syncer = Syncer(
        settings,
        bus,
        client,
        fleet,
        ModelKv(await bus.key_value(STATE_BUCKET), SiteSyncState),
        CollectorRegistry(),
    )
    await syncer.start_fleet()
    return syncer, fleet, client


async def test_steady_readings_are_held_and_every_change_is_written_at_once(bus: Bus) -> None:
    syncer, fleet, client = await syncer_on(bus)
    try:
        await syncer.remember(reading(0), None)  # type: ignore[arg-type]
        first = await fleet.read(PID)
        for minute in (1, 2, 3):
            await syncer.remember(reading(minute), None)  # type: ignore[arg-type]
        assert syncer.fleet_mirror.holds == 3
        assert (await fleet.read(PID)).revision == first.revision  # nothing written for them
        # What the snapshot is made of knows the newest reading all the same.
        [known] = await syncer.printers()
        assert known.entry.last_read_at == T0 + dt.timedelta(minutes=3) and known.read_seq == 4
        # Pages printed: written before the reading is acked, with the times held so far.
        await syncer.remember(reading(4, pages=1210), None)  # type: ignore[arg-type]
        stored = (await fleet.read(PID)).value
        assert stored is not None and stored.entry.counters.lifetime_pages == 1210
        assert stored.read_seq == 5
        await syncer.remember(reading(5, pages=1210), None)  # type: ignore[arg-type]
    finally:
        await syncer.stop_fleet()
        await client.aclose()
    # Stopping writes what was held.
    stored = (await fleet.read(PID)).value
    assert stored is not None and stored.read_seq == 6
    assert stored.entry.last_read_at == T0 + dt.timedelta(minutes=5)


async def test_readings_in_batches_fold_as_alone_and_a_batch_again_changes_nothing(
    bus: Bus,
) -> None:
    """Through the bus: two batches (the second repeating part of the first) give the fleet
    entry the readings alone give."""
    readings = [reading(m, percent=60 - m, pages=1200 + 3 * m) for m in range(6)]
    alone: KnownPrinter | None = None
    for r in readings:
        alone = fold(alone, r)
    await bus.ensure_event_stream()
    syncer, fleet, client = await syncer_on(bus)
    stop = asyncio.Event()
    spec = ConsumerSpec("t-fleet", ev.SupplyReading.subject_filter(bus.subjects))
    task = asyncio.create_task(bus.consume(spec, syncer.remember, stop=stop))
    try:
        for part in (readings[:4], readings[2:]):
            await bus.publish(ev.SupplyReadingBatch(source="p", site_id="hq", readings=tuple(part)))

        async def taken() -> bool:
            info = await bus.js.consumer_info(bus.subjects.events_stream, "t-fleet")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(taken, timeout_s=15)
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        stop.set()
        await syncer.stop_fleet()
        await client.aclose()
    stored = (await fleet.read(PID)).value
    assert stored is not None and alone is not None
    assert stored == alone and stored.read_seq == 6
