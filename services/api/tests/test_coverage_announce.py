"""The api announces each printer's service coverage on the bus: at start, then what changed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tonerwatch_api.db.orders import Order
from tonerwatch_api.db.tx import in_tx
from tonerwatch_api.domain.coverage_announce import (
    CoverageAnnouncer,
    coverage_digest,
    coverage_event_id,
    coverage_events,
)
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.coverage import ECONCIERGE, CoverageRule
from tonerwatch_shared.events import PrinterConfigured, PrinterCoverage, SupplyReading

P = "p-hp479"
NOW = datetime.now(UTC).replace(microsecond=0)


def add_order(db: Engine, order_id: str, ago_days: float, status: str = "requested") -> None:
    def add(session: Session) -> None:
        session.add(
            Order(
                id=order_id,
                site_id="default",
                printer_id=P,
                supply_index="1",
                supply_description="Black",
                status=status,
                created_at=NOW - timedelta(days=ago_days),
            )
        )

    in_tx(db, add)


def set_status(db: Engine, order_id: str, status: str) -> None:
    def change(session: Session) -> None:
        order = session.get(Order, order_id)
        assert order is not None
        order.status = status
        session.add(order)

    in_tx(db, change)


def seeded(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(db, configured())
    for ago in range(40, 0, -1):
        apply_now(db, reading(occurred_at=NOW - timedelta(days=ago)))


def test_digest_changes_with_what_coverage_rests_on_only() -> None:
    since = NOW - timedelta(days=40)
    one = {"o-1": ("requested", NOW)}
    base = coverage_digest(P, since, one, ECONCIERGE)
    assert base == coverage_digest(P, since, dict(one), ECONCIERGE)
    assert coverage_event_id(base) == coverage_event_id(base)
    assert base != coverage_digest(P, since + timedelta(days=1), one, ECONCIERGE)
    assert base != coverage_digest(P, since, {}, ECONCIERGE)
    # Placed then cancelled is not the state before it was placed.
    assert coverage_digest(P, since, {"o-1": ("cancelled", NOW)}, ECONCIERGE) != coverage_digest(
        P, since, {}, ECONCIERGE
    )
    assert base != coverage_digest(P, since, one, CoverageRule(monitoring_days=10))


def test_every_live_printer_is_described_with_its_orders_not_cancelled(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    seeded(db, configured, reading)
    add_order(db, "o-1", 5)
    add_order(db, "o-2", 3)
    add_order(db, "o-3", 2, status="cancelled")
    ((printer_id, digest, event),) = in_tx(db, lambda s: coverage_events(s, {}, NOW, "api/test"))
    assert event is not None and printer_id == P
    assert event.printer_id == P and event.site_id == "default"
    assert event.event_id == coverage_event_id(digest)
    assert event.orders_at == (NOW - timedelta(days=5), NOW - timedelta(days=3))
    assert event.monitoring_since == NOW - timedelta(days=40)
    assert event.last_seen_at == NOW - timedelta(days=1)
    assert (event.coverage.status, event.coverage.orders_counted) == ("covered", 2)
    # Unchanged since announced: not built again.
    unchanged = in_tx(db, lambda s: coverage_events(s, {}, NOW, "api/test", {P: digest}))
    assert unchanged == [(P, digest, None)]


async def test_announced_at_start_then_only_when_it_changes(
    db: Engine,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    seeded(db, configured, reading)
    add_order(db, "o-1", 5)
    announcer = CoverageAnnouncer(db, bus, {}, "api/test", clock=lambda: NOW)
    assert await announcer.announce() == 1  # at start: every printer
    assert await announcer.announce() == 0  # nothing changed
    apply_now(db, reading(occurred_at=NOW - timedelta(hours=1)))
    assert await announcer.announce() == 0  # a reading inside the run changes nothing
    add_order(db, "o-2", 3)
    assert await announcer.announce() == 1
    set_status(db, "o-2", "cancelled")
    assert await announcer.announce() == 1
    # A replica (or a restart) announcing the same thing publishes the same event id.
    again = CoverageAnnouncer(db, bus, {}, "api/other", clock=lambda: NOW)
    assert await again.announce() == 1

    sub = await bus.js.subscribe(
        PrinterCoverage.subject_filter(bus.subjects), ordered_consumer=True
    )
    got = []
    while True:
        try:
            msg = await sub.next_msg(timeout=2)
        except TimeoutError:
            break
        got.append(PrinterCoverage.model_validate_json(msg.data))
    await sub.unsubscribe()
    # Three announcements in the stream: the repeat of the last one was dropped as a duplicate.
    assert [len(e.orders_at) for e in got] == [1, 2, 1]
    assert [e.coverage.status for e in got] == ["eligible", "covered", "eligible"]
