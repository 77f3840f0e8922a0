"""The poller publishes the readings of polls made together as one batch, on a real NATS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import nats.js.errors
import pytest
from nats.aio.msg import Msg

from tonerwatch_poller.batching import ReadingBatcher
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.printer.model import PrinterIdentity
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.subjects import BATCH_KEY, Subjects
from tonerwatch_shared.testing.infra import eventually

from ._poller import configured, replica


def _reading(printer_id: str, seq: int) -> ev.SupplyReading:
    return ev.SupplyReading(
        source="poller/t",
        site_id="hq",
        printer_id=printer_id,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="HP"),
        seq=seq,
    )


@contextlib.asynccontextmanager
async def published(bus: Bus) -> AsyncIterator[list[Msg]]:
    """Collect every readings message (single or batch) published while the block runs."""
    got: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        got.append(msg)

    sub = await bus.nc.subscribe(ev.SupplyReading.subject_filter(bus.subjects), cb=on_msg)
    try:
        yield got
    finally:
        await sub.unsubscribe()


def readings_of(msgs: list[Msg]) -> list[ev.SupplyReading]:
    out = []
    for msg in msgs:
        for event in ev.unbatched(ev.parse_event(msg.data)):
            assert isinstance(event, ev.SupplyReading)
            out.append(event)
    return out


class Polls:
    """Polls under way, as the poller counts them: each ends when its reading's publish returns."""

    def __init__(self) -> None:
        self.under_way = 0

    def busy(self) -> int:
        return self.under_way

    async def hand_in(self, batcher: ReadingBatcher, readings: list[ev.SupplyReading]) -> None:
        self.under_way += len(readings)

        async def poll(r: ev.SupplyReading) -> None:
            try:
                await batcher.publish("hq", r.printer_id, r.to_bytes(), str(r.event_id))
            finally:
                self.under_way -= 1

        await asyncio.gather(*(poll(r) for r in readings))


async def _hand_in(batcher: ReadingBatcher, readings: list[ev.SupplyReading]) -> None:
    await asyncio.gather(
        *(batcher.publish("hq", r.printer_id, r.to_bytes(), str(r.event_id)) for r in readings)
    )


async def test_readings_of_polls_under_way_together_go_out_as_one_batch(bus: Bus) -> None:
    await bus.ensure_event_stream()
    readings = [_reading(f"p{i}", i + 1) for i in range(5)]
    # Five polls under way and a long wait: the batch goes when the fifth reading is handed in
    # (and the first has waited settle_s).
    polls = Polls()
    batcher = ReadingBatcher(bus, source="poller/t", busy=polls.busy, wait_s=30.0, settle_s=0.01)
    async with published(bus) as msgs:
        await asyncio.wait_for(polls.hand_in(batcher, readings), 10)  # each returned: kept
        await eventually(lambda: len(msgs) == 1, timeout_s=5)
    assert msgs[0].subject == f"{bus.subjects.root}.hq.supply.reading.{BATCH_KEY}"
    assert readings_of(msgs) == readings
    assert (batcher.batches, batcher.published) == (1, 5)
    info = await bus.js.stream_info(bus.subjects.events_stream)
    assert info.state.messages == 1


async def test_a_batch_is_bounded_and_a_lone_reading_goes_as_itself(bus: Bus) -> None:
    await bus.ensure_event_stream()
    readings = [_reading(f"p{i}", 1) for i in range(5)]
    polls = Polls()
    batcher = ReadingBatcher(
        bus, source="poller/t", busy=polls.busy, max_readings=2, wait_s=30.0, settle_s=0.01
    )
    async with published(bus) as msgs:
        await asyncio.wait_for(polls.hand_in(batcher, readings), 10)
        await eventually(lambda: len(msgs) == 3, timeout_s=5)
    assert sorted(len(ev.unbatched(ev.parse_event(m.data))) for m in msgs) == [1, 2, 2]
    lone = [m for m in msgs if not m.subject.endswith(BATCH_KEY)]
    assert [type(ev.parse_event(m.data)) for m in lone] == [ev.SupplyReading]
    assert sorted(r.printer_id for r in readings_of(msgs)) == [f"p{i}" for i in range(5)]

    # Nobody else under way and no limit reached: the wait ends it.
    batcher = ReadingBatcher(bus, source="poller/t", busy=lambda: 99, wait_s=0.05)
    async with published(bus) as msgs:
        await asyncio.wait_for(_hand_in(batcher, readings[:3]), 10)
        await eventually(lambda: len(msgs) == 1, timeout_s=5)
    assert readings_of(msgs) == readings[:3]


async def test_with_batches_off_every_reading_goes_alone(bus: Bus) -> None:
    await bus.ensure_event_stream()
    readings = [_reading(f"p{i}", 1) for i in range(4)]
    batcher = ReadingBatcher(bus, source="poller/t", busy=lambda: 4, max_readings=1)
    async with published(bus) as msgs:
        await asyncio.wait_for(_hand_in(batcher, readings), 10)
        await eventually(lambda: len(msgs) == 4, timeout_s=5)
    assert sorted(m.subject for m in msgs) == [
        f"{bus.subjects.root}.hq.supply.reading.p{i}" for i in range(4)
    ]
    assert batcher.batches == 0


async def test_a_batch_not_kept_fails_every_poll_in_it(bus: Bus) -> None:
    """No stream takes the subject: each waiting poll gets the error (its job is retried)."""
    nowhere = Bus(
        bus.nc, Subjects(root="tw-nowhere", stream_prefix="NOWHERE"), max_age_s=60, source="t"
    )
    batcher = ReadingBatcher(nowhere, source="poller/t", busy=lambda: 3, wait_s=0.05)
    readings = [_reading(f"p{i}", 1) for i in range(3)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(batcher.publish("hq", r.printer_id, r.to_bytes(), str(r.event_id)) for r in readings),
            return_exceptions=True,
        ),
        10,
    )
    assert all(isinstance(o, nats.js.errors.NoStreamResponseError) for o in outcomes), outcomes
    assert batcher.published == 0


PRINTERS = ("jetdirect_m252dw", "xerox_phaser", "lexmarkprinter", "kyocera", "ricoh_mpc3002")


@pytest.mark.parametrize("batch_max", [128, 1], ids=["batches", "singles"])
async def test_the_poller_publishes_batches_under_load_and_singles_when_set_to(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator, batch_max: int
) -> None:
    async with (
        published(bus) as msgs,
        replica(bus, nats_url, poll_timeout_s=0.5, reading_batch_max=batch_max),
    ):
        for i, community in enumerate(PRINTERS * 2):
            await bus.publish(configured(f"p{i}", snmp_agent.port, community, interval_s=2.0))

        def polled_thrice() -> bool:
            per_printer: dict[str, int] = {}
            for r in readings_of(list(msgs)):
                per_printer[r.printer_id] = per_printer.get(r.printer_id, 0) + 1
            return len(per_printer) == 10 and min(per_printer.values()) >= 3

        # Slots on a 1 s grid: the ten printers' steady polls come due together.
        await eventually(polled_thrice, timeout_s=40)
    batches = [m for m in msgs if m.subject.endswith(BATCH_KEY)]
    readings = readings_of(msgs)
    if batch_max == 1:
        assert batches == [] and len(msgs) == len(readings)
    else:
        assert batches and len(msgs) < len(readings)
    # Each printer's readings in seq order, none twice.
    for i in range(10):
        seqs = [r.seq or 0 for r in readings if r.printer_id == f"p{i}"]
        assert seqs == sorted(set(seqs))
