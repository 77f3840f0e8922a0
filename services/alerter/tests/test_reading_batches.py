"""Readings arriving in batches (SupplyReadingBatch) alert exactly as the same readings alone."""

from __future__ import annotations

from collections.abc import Sequence

from tonerwatch_alerter.service import consumer_specs
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import Event, SupplyReading, SupplyReadingBatch
from tonerwatch_shared.subjects import Subjects

from .test_service import alerter, alerts, feed, published, reading, settled

LEVELS = [40, 30, 25, 21, 19, 18, 5, 100, 99]


def _batch(readings: Sequence[SupplyReading]) -> SupplyReadingBatch:
    return SupplyReadingBatch(source="poller", site_id="hq", readings=tuple(readings))


def _what(events: Sequence[Event], printer_id: str) -> list[tuple[str, object, object]]:
    return [
        (type(e).__name__, getattr(e, "rule", None), getattr(e, "percent", None))
        for e in alerts(events)
        if getattr(e, "printer_id", None) == printer_id
    ]


async def test_a_batch_crosses_thresholds_as_its_readings_alone_and_a_replay_sends_nothing(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    alone = [reading(p, i, printer_id="alone") for i, p in enumerate(LEVELS)]
    batched = [reading(p, i, printer_id="batched") for i, p in enumerate(LEVELS)]
    async with alerter(nats_url, subjects):
        await feed(bus, alone)
        # Two batches, the second one repeating a reading of the first (a retried publish).
        await feed(bus, [_batch(batched[:5]), _batch(batched[4:])])
        await settled(bus, "alone", alone[-1])
        await settled(bus, "batched", batched[-1])
    before = await published(bus)
    want = _what(before, "alone")
    assert [w[0] for w in want] == [
        "ThresholdCrossed",
        "ThresholdCrossed",
        "AlertResolved",
        "SupplyReplaced",
        "AlertResolved",
    ]
    assert _what(before, "batched") == want
    # Another replica starting over (the consumer's position lost): every batch is delivered
    # again from its first reading, and the printer's state says what was announced already.
    for spec in consumer_specs(subjects):
        await bus.js.delete_consumer(subjects.events_stream, spec.durable)
    later = reading(98, len(LEVELS), printer_id="batched")
    async with alerter(nats_url, subjects):
        await feed(bus, [_batch([later])])
        await settled(bus, "batched", later)
    assert alerts(await published(bus)) == alerts(before)
