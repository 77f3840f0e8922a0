"""Readings arriving in batches (SupplyReadingBatch) give the api the rows singles give."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Printer, ProcessedEvent, Reading, SupplyStateRow
from tonerwatch_api.db.usage import NetworkUsageDay
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.activity import run_activity
from tonerwatch_api.projections.outbox import Outbox
from tonerwatch_api.projections.printers import ProjectionOptions
from tonerwatch_api.projections.projector import Projector
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured, SupplyReading, SupplyReadingBatch
from tonerwatch_shared.testing.infra import eventually

from .conftest import hp_supplies

NOW = datetime.now(UTC).replace(microsecond=0)
LEVELS = {1: 60.0, 2: 55.0, 3: 50.0, 4: 45.0}


def _processed(engine: Engine, consumer: str) -> int:
    with Session(engine) as s:
        q = select(func.count()).select_from(ProcessedEvent)
        return int(s.exec(q.where(ProcessedEvent.consumer == consumer)).one())


def _rows(engine: Engine, printer_id: str) -> dict[str, object]:
    """Return what the api keeps of a printer's readings (ids and times aside)."""
    with Session(engine) as s:
        printer = s.get(Printer, printer_id)
        assert printer is not None
        states = s.exec(
            select(SupplyStateRow)
            .where(SupplyStateRow.printer_id == printer_id)
            .order_by(col(SupplyStateRow.supply_index))
        ).all()
        history = s.exec(
            select(Reading.supply_index, Reading.percent)
            .where(Reading.printer_id == printer_id)
            .order_by(col(Reading.supply_index), col(Reading.percent))
        ).all()
        usage = s.exec(
            select(NetworkUsageDay).where(NetworkUsageDay.printer_id == printer_id)
        ).all()
        return {
            "status_seq": printer.status_seq,
            "last_seen_at": printer.last_seen_at,
            "states": [(r.supply_index, r.percent, r.seq) for r in states],
            "history": [tuple(h) for h in history],
            "usage": [(u.kind, u.bytes_sent, u.bytes_received, u.operations) for u in usage],
        }


async def test_a_batch_through_the_bus_gives_the_rows_singles_give_and_a_repeat_adds_nothing(
    bus: Bus,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    projector = Projector(pg, bus, Outbox(pg, bus), Metrics(), ProjectionOptions())
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(projector.run(stop)),
        asyncio.create_task(run_activity(pg, bus, stop)),
    ]

    def series(printer_id: str) -> list[SupplyReading]:
        return [
            reading(
                printer_id=printer_id,
                seq=1_000 + s,
                occurred_at=NOW + timedelta(minutes=s),
                supplies=hp_supplies(black=p),
            )
            for s, p in LEVELS.items()
        ]

    alone, batched = series("p-alone"), series("p-batched")
    try:
        for pid in ("p-alone", "p-batched"):
            await bus.publish(configured(printer_id=pid))

        def known() -> bool:
            with Session(pg) as s:
                return all(s.get(Printer, p) is not None for p in ("p-alone", "p-batched"))

        await eventually(known, timeout_s=20)
        for r in alone:
            assert await bus.publish(r)
        site = batched[0].site_id
        await bus.publish(
            SupplyReadingBatch(source="poller", site_id=site, readings=tuple(batched[:3]))
        )
        # Readings 2 and 3 again, in another batch (a poller's retry, a replay, a site's re-send):
        # each reading is applied once, by its own id.
        await bus.publish(
            SupplyReadingBatch(source="poller", site_id=site, readings=tuple(batched[1:]))
        )
        await eventually(lambda: _processed(pg, "api-readings") == 8, timeout_s=30)
        await eventually(lambda: _processed(pg, "api-network-usage") == 8, timeout_s=30)
        await asyncio.sleep(0.5)  # a repeat applied late would show now
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    assert _processed(pg, "api-readings") == 8
    single, batch = _rows(pg, "p-alone"), _rows(pg, "p-batched")
    assert batch == single
    assert single["status_seq"] == 1_004
    assert len(single["history"]) == 4 * 5  # type: ignore[arg-type]


async def test_a_reading_waiting_for_its_printer_waits_alone_and_its_batch_goes_on(
    bus: Bus,
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    """A batch's reading of a printer not configured yet no longer holds back the readings after it.

    The reading of p-late (not known: its PrinterConfigured is still on its way) comes first in
    the batch. Before, the batch was retried from it with back-off for up to 5 minutes
    (UNKNOWN_PRINTER_GRACE), so p-known's reading behind it waited as long. Now it is published
    again alone (for api-readings only), the batch is acked, p-known's reading is applied at once,
    and p-late's once its printer is configured: each once, none set aside.
    """
    projector = Projector(db, bus, Outbox(db, bus), Metrics(), ProjectionOptions())
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    late = reading(printer_id="p-late", seq=2_001, occurred_at=NOW)
    on_time = reading(printer_id="p-known", seq=2_001, occurred_at=NOW)

    def seq_of(printer_id: str) -> int | None:
        with Session(db) as s:
            printer = s.get(Printer, printer_id)
            return None if printer is None else printer.status_seq

    try:
        await bus.publish(configured(printer_id="p-known"))
        await eventually(lambda: seq_of("p-known") is None and _known(db, "p-known"), 20)
        await bus.publish(
            SupplyReadingBatch(source="poller", site_id=late.site_id, readings=(late, on_time))
        )
        await eventually(lambda: seq_of("p-known") == 2_001, timeout_s=15)
        assert not _known(db, "p-late")
        subject = late.subject(bus.subjects)
        lone = await bus.js.stream_info(bus.subjects.events_stream, subjects_filter=subject)
        assert (lone.state.subjects or {}).get(subject) == 1  # the waiting reading, alone, once
        await bus.publish(configured(printer_id="p-late"))
        await eventually(lambda: seq_of("p-late") == 2_001, timeout_s=45)
        await eventually(lambda: _processed(db, "api-readings") == 2, timeout_s=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert _processed(db, "api-readings") == 2
    assert await bus.dead_letters() == []


def _known(engine: Engine, printer_id: str) -> bool:
    with Session(engine) as s:
        return s.get(Printer, printer_id) is not None
