"""Per-printer order in the api's read models (issue 16): stale events never overwrite newer state.

An event is stale when it is older than what the projection already applied for its printer (the
status, each supply) or its alert: by the printer's `seq` when both carry one, else by
occurred_at (tonerwatch_shared.ordering). Stale readings still go into the history: nothing is
lost, only the current state stays newer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import (
    Alert,
    AlertOrder,
    Printer,
    ProcessedEvent,
    Reading,
    SupplyStateRow,
)
from tonerwatch_api.db.tx import in_tx
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.outbox import Outbox
from tonerwatch_api.projections.printers import ProjectionOptions, apply_event
from tonerwatch_api.projections.projector import Projector, apply_now
from tonerwatch_api.projections.readings import apply_readings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    AlertResolved,
    PrinterConfigured,
    PrinterReachable,
    PrinterUnreachable,
    SupplyReading,
    ThresholdCrossed,
)
from tonerwatch_shared.testing.infra import eventually

from .conftest import HP_M479, hp_supplies

PID = "p-hp479"
NOW = datetime.now(UTC).replace(microsecond=0)


def _black(engine: Engine, printer_id: str = PID) -> SupplyStateRow:
    with Session(engine) as s:
        row = s.get(SupplyStateRow, (printer_id, "1"))
        assert row is not None
        return row


def _printer(engine: Engine, printer_id: str = PID) -> Printer:
    with Session(engine) as s:
        printer = s.get(Printer, printer_id)
        assert printer is not None
        return printer


def _history(engine: Engine, printer_id: str = PID) -> int:
    with Session(engine) as s:
        q = select(func.count()).select_from(Reading).where(Reading.printer_id == printer_id)
        return int(s.exec(q).one())


def test_seq_not_the_clock_decides_the_current_supply_levels(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    """Two poller replicas, one with its clock 10 minutes behind: the newest seq wins."""
    apply_now(db, configured())
    assert apply_now(db, reading(occurred_at=NOW, seq=100, supplies=hp_supplies(black=40.0))) == (
        "applied"
    )
    skewed = reading(occurred_at=NOW - timedelta(minutes=10), seq=101, supplies=hp_supplies(30.0))
    assert apply_now(db, skewed) == "applied"
    assert _black(db).percent == 30.0 and _black(db).seq == 101
    # Held back in an outage, delivered late with a later-looking time: older by seq, stale.
    late = reading(occurred_at=NOW + timedelta(minutes=1), seq=99, supplies=hp_supplies(60.0))
    assert apply_now(db, late) == "applied"  # its history is kept ...
    assert _black(db).percent == 30.0  # ... the current level stays the newest
    printer = _printer(db)
    assert printer.status_seq == 101
    assert _history(db) == 3 * 5, "every reading's supplies are in the history (in = out)"


def test_a_stale_reachability_event_does_not_overwrite_the_status(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    apply_now(db, configured())
    common = {"source": "poller/a", "site_id": "default", "printer_id": PID, "address": "127.0.0.1"}
    down = PrinterUnreachable(**common, consecutive_failures=3, reason="timeout", seq=20)
    back_earlier = PrinterReachable(**common, seq=18, occurred_at=NOW + timedelta(minutes=2))
    assert apply_now(db, reading(occurred_at=NOW - timedelta(minutes=5), seq=17)) == "applied"
    assert apply_now(db, down) == "applied"
    assert apply_now(db, back_earlier) == "stale"
    assert apply_now(db, reading(occurred_at=NOW + timedelta(minutes=3), seq=19)) == "applied"
    printer = _printer(db)
    assert printer.reachable is False and printer.last_error == "timeout"
    assert printer.status_seq == 20
    # Readings come through another consumer than (un)reachable: one overtaken by the
    # unreachable still counts among readings (what it says of the printer), not for reachability.
    assert printer.read_seq == 19 and printer.last_seen_at == NOW + timedelta(minutes=3)
    # The printer answers again: a newer reading and reachable put it back.
    assert apply_now(db, reading(occurred_at=NOW + timedelta(minutes=4), seq=21)) == "applied"
    assert apply_now(db, PrinterReachable(**common, seq=22)) == "applied"
    assert _printer(db).reachable is True


def _alert(seq: int, minute: int, resolved: bool = False) -> ThresholdCrossed | AlertResolved:
    common = {
        "source": "alerter/a",
        "site_id": "default",
        "printer_id": PID,
        "alert_id": f"{PID}:4:low",
        "rule": "low",
        "occurred_at": NOW + timedelta(minutes=minute),
        "seq": seq,
    }
    if resolved:
        return AlertResolved(**common, message="cleared")
    return ThresholdCrossed(**common, severity="warning", supply_index="4", message="low")


def _open_alerts(engine: Engine) -> int:
    with Session(engine) as s:
        q = select(func.count()).select_from(Alert).where(col(Alert.resolved_at).is_(None))
        return int(s.exec(q).one())


def test_resolved_before_its_crossed_leaves_no_alert_open(
    db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    """ "resolved" overtook its "crossed" (redelivered late after an outage): the portal's and the
    api's last word must be the true final state, no alert open."""
    apply_now(db, configured())
    assert apply_now(db, _alert(4, 4, resolved=True)) == "ignored"  # nothing open yet
    assert apply_now(db, _alert(2, 2)) == "stale"
    assert _open_alerts(db) == 0
    # A later crossing of the same condition is news: it opens the alert.
    assert apply_now(db, _alert(6, 6)) == "applied"
    assert _open_alerts(db) == 1
    # ... and a late resolve of the earlier crossing does not close it.
    assert apply_now(db, _alert(5, 5, resolved=True)) == "stale"
    assert _open_alerts(db) == 1
    with Session(db) as s:
        order = s.get(AlertOrder, f"{PID}:4:low")
        assert order is not None and order.seq == 6


def test_alert_events_without_seq_are_ordered_by_time(
    db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    """An older alerter (no seq): occurred_at orders its crossed/resolved the same way."""
    apply_now(db, configured())
    resolved = _alert(0, 4, resolved=True).model_copy(update={"seq": None})
    crossed = _alert(0, 2).model_copy(update={"seq": None})
    assert apply_now(db, resolved) == "ignored"
    assert apply_now(db, crossed) == "stale"
    assert _open_alerts(db) == 0


def test_a_batch_orders_by_seq_like_one_by_one(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    """apply_readings (set-based) and apply_event agree on seq-ordered, clock-skewed readings."""
    options = ProjectionOptions()
    events: dict[str, list[SupplyReading]] = {}
    for prefix in ("a-", "b-"):
        pid = f"{prefix}kyo"
        apply_now(db, configured(printer_id=pid))
        events[prefix] = [
            reading(printer_id=pid, seq=10, occurred_at=NOW, supplies=hp_supplies(black=50.0)),
            # Newest by seq, stamped earliest (a replica's clock behind).
            reading(
                printer_id=pid,
                seq=12,
                occurred_at=NOW - timedelta(minutes=9),
                supplies=hp_supplies(black=45.0),
            ),
            # Oldest by seq, stamped latest: stale.
            reading(
                printer_id=pid,
                seq=8,
                occurred_at=NOW + timedelta(minutes=5),
                supplies=hp_supplies(black=70.0),
            ),
            # No seq (an older poller): ordered by time against the state, keeps seq 12.
            reading(
                printer_id=pid,
                occurred_at=NOW + timedelta(minutes=1),
                supplies=hp_supplies(black=44.0)[:1],
            ),
        ]

    def key(e: SupplyReading) -> tuple[str, datetime]:
        return (e.printer_id, e.occurred_at)

    singles = [
        in_tx(db, lambda s, e=e: apply_event(s, e, "api-readings", options, NOW))
        for e in sorted(events["a-"], key=key)
    ]
    ordered = sorted(events["b-"], key=key)
    batched = in_tx(db, lambda s: apply_readings(s, ordered, "api-readings", options, NOW))
    assert batched == singles == ["applied"] * 4
    for pid in ("a-kyo", "b-kyo"):
        black, printer = _black(db, pid), _printer(db, pid)
        assert (black.percent, black.seq) == (44.0, 12), pid
        assert printer.status_seq == 12, pid
        with Session(db) as s:
            cyan = s.get(SupplyStateRow, (pid, "2"))
            assert cyan is not None and cyan.seq == 12 and cyan.percent == 80.0
        assert _history(db, pid) == 5 + 5 + 5 + 1


async def test_readings_redelivered_late_out_of_order_through_the_bus(
    bus: Bus,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    """Through an outage: the api's projections consume while some readings of a printer are
    held back (a site link down) and arrive later, in reverse order, one of them twice (its
    original and the collector's re-send of it). Each reading is applied exactly once, the
    history holds every one (in = out), the current levels and status end at the newest seq."""
    projector = Projector(pg, bus, Outbox(pg, bus), Metrics(), ProjectionOptions())
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    levels = {1: 60.0, 2: 55.0, 3: 50.0, 4: 45.0, 5: 40.0, 6: 35.0}
    by_seq = {
        s: reading(
            seq=1_000 + s,
            occurred_at=NOW + timedelta(minutes=s),
            supplies=hp_supplies(black=p),
        )
        for s, p in levels.items()
    }
    try:
        await bus.publish(configured())

        def printer_known() -> bool:
            with Session(pg) as s:
                return s.get(Printer, PID) is not None

        # Readings and configuration have consumers of their own: a reading for a printer the
        # api does not know yet is dropped, so the printer is known first (as in production).
        await eventually(printer_known, timeout_s=20)
        for s in (1, 2, 5, 6):
            assert await bus.publish(by_seq[s])

        def applied(n: int) -> Callable[[], bool]:
            def check() -> bool:
                with Session(pg) as s:
                    q = select(func.count()).select_from(ProcessedEvent)
                    q = q.where(ProcessedEvent.consumer == "api-readings")
                    return int(s.exec(q).one()) >= n

            return check

        await eventually(applied(4), timeout_s=20)
        assert _black(pg).percent == 35.0
        # The held-back readings: 4, then 3, then 3 again (same event id: JetStream and the
        # projection drop it) - the newest state must not move.
        for s in (4, 3, 3):
            await bus.publish(by_seq[s])
        await eventually(applied(6), timeout_s=20)
        # One more, newer: applied on top.
        newer = reading(
            seq=1_007, occurred_at=NOW + timedelta(minutes=7), supplies=hp_supplies(30.0)
        )
        await bus.publish(newer)
        await eventually(applied(7), timeout_s=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    black, printer = _black(pg), _printer(pg)
    assert (black.percent, black.seq) == (30.0, 1_007)
    assert printer.status_seq == 1_007
    assert _history(pg) == 7 * 5, "7 distinct readings in, 7 in the history"
    with Session(pg) as s:
        levels_in_history = sorted(
            r.percent
            for r in s.exec(
                select(Reading).where(Reading.printer_id == PID, Reading.supply_index == "1")
            ).all()
        )
    assert levels_in_history == sorted([*levels.values(), 30.0])


def test_a_sweep_older_than_an_unreachable_does_not_make_the_printer_reachable(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    """A PrinterFound (no seq: discovery's) is a status event ordered by time."""
    from tonerwatch_shared.events import PrinterFound

    apply_now(db, configured())
    apply_now(db, reading(occurred_at=NOW - timedelta(minutes=10), seq=1))
    down = PrinterUnreachable(
        source="poller/a",
        site_id="default",
        printer_id=PID,
        address="127.0.0.1",
        consecutive_failures=3,
        reason="timeout",
        occurred_at=NOW,
        seq=2,
    )
    assert apply_now(db, down) == "applied"
    with Session(db) as s:
        stored = s.get(Printer, PID)
        assert stored is not None and stored.serial
        ident = HP_M479.model_copy(update={"serial": stored.serial})

    def found(at: datetime) -> PrinterFound:
        return PrinterFound(
            source="discovery",
            site_id="default",
            address="127.0.0.1",
            port=16100,
            identity=ident,
            occurred_at=at,
        )

    apply_now(db, found(NOW - timedelta(minutes=5)))  # swept before it went down
    assert _printer(db).reachable is False
    apply_now(db, found(NOW + timedelta(minutes=5)))  # swept after: it answers
    assert _printer(db).reachable is True


async def test_a_backdated_reading_published_before_its_printer_is_applied_once_it_is_known(
    bus: Bus,
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    """The readings consumer runs ahead of the printers consumer (a backlog after an outage, the
    demo's history): a three-week-old reading of a printer not configured yet waits for it
    instead of being dropped at once, and is in the history once the configuration is."""
    options = ProjectionOptions()
    projector = Projector(db, bus, Outbox(db, bus), Metrics(), options)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    old = reading(occurred_at=NOW - timedelta(days=21))
    try:
        await bus.publish(old)
        # The api tried it and found no printer: it waits (retried with back-off).
        await eventually(lambda: options.unknown.is_waiting(old), timeout_s=20)
        with Session(db) as s:
            assert s.get(Printer, PID) is None
        await bus.publish(configured())

        def in_history() -> bool:
            with Session(db) as s:
                q = select(func.count()).select_from(Reading).where(Reading.printer_id == PID)
                return int(s.exec(q).one()) == 5

        await eventually(in_history, timeout_s=30)
    finally:
        stop.set()
        await task
