"""The snapshot's service coverage: the api's newest announcement wins over the syncer's own fold (pure)."""

from __future__ import annotations

import datetime as dt

from tonerwatch_shared import events as ev
from tonerwatch_shared.coverage import ECONCIERGE, CoverageRule, evaluate
from tonerwatch_shared.printer.model import PrinterIdentity
from tonerwatch_syncer.fleet import KnownPrinter, fold, with_coverage

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
P = "p-1"


def reading(at: dt.datetime) -> ev.SupplyReading:
    return ev.SupplyReading(
        source="poller/test",
        site_id="hq",
        printer_id=P,
        occurred_at=at,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="HP", model="M479", serial="S1"),
    )


def announced(
    at: dt.datetime,
    since: dt.datetime | None,
    orders: tuple[dt.datetime, ...],
    rule: CoverageRule = ECONCIERGE,
) -> ev.PrinterCoverage:
    return ev.PrinterCoverage(
        source="api/test",
        site_id="hq",
        printer_id=P,
        occurred_at=at,
        monitoring_since=since,
        last_seen_at=at - dt.timedelta(hours=1),
        orders_at=orders,
        coverage=evaluate(rule, since, orders, at, last_seen=at - dt.timedelta(hours=1)),
    )


def order(order_id: str, created: dt.datetime, status: str = "requested") -> ev.OrderChanged:
    return ev.OrderChanged(
        source="api/test",
        site_id="hq",
        printer_id=P,
        order_id=order_id,
        change="created" if status == "requested" else "status",
        status=status,  # type: ignore[arg-type]
        supply_index="1",
        supply_description="Black",
        quantity=1,
        created_at=created,
    )


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=n)


def folded(*events: ev.Event) -> KnownPrinter:
    known: KnownPrinter | None = None
    for event in events:
        known = fold(known, event) or known
    assert known is not None
    return known


def test_without_an_announcement_the_own_fold_counts_only_what_the_syncer_saw() -> None:
    known = folded(reading(NOW - dt.timedelta(hours=1)))
    coverage = with_coverage(known, {}, NOW).coverage
    assert coverage is not None and coverage.status == "monitoring"
    assert coverage.monitored_since == NOW - dt.timedelta(hours=1)


def test_the_api_announcement_decides_though_the_syncer_saw_one_reading() -> None:
    since = NOW - days(40)
    api = announced(NOW - days(1), since, (NOW - days(5), NOW - days(3)))
    known = folded(reading(NOW - dt.timedelta(hours=1)), api)
    coverage = with_coverage(known, {}, NOW).coverage
    assert coverage is not None
    assert (coverage.status, coverage.orders_counted) == ("covered", 2)
    assert coverage.monitored_since == since and coverage.covered_since == NOW - days(3)


def test_an_older_announcement_never_replaces_a_newer_one() -> None:
    newer = announced(NOW - days(1), NOW - days(40), (NOW - days(5), NOW - days(3)))
    older = announced(NOW - days(2), NOW - days(40), (NOW - days(5),))
    known = folded(reading(NOW - dt.timedelta(hours=1)), newer)
    assert fold(known, older) is None
    assert fold(known, newer) is None  # the same again
    arrived_first = folded(reading(NOW - dt.timedelta(hours=1)), older, newer)
    assert arrived_first.api_coverage == newer


def test_orders_the_syncer_saw_after_the_announcement_count_too() -> None:
    # Announced eligible (one order); the second order came after it, before the next one.
    api = announced(NOW - days(2), NOW - days(40), (NOW - days(5),))
    known = folded(reading(NOW - dt.timedelta(hours=1)), api, order("o-2", NOW - days(1)))
    coverage = with_coverage(known, {}, NOW).coverage
    assert coverage is not None and (coverage.status, coverage.orders_counted) == ("covered", 2)
    # An order from before the announcement is already in it: not counted twice.
    again = fold(known, order("o-1", NOW - days(5)))
    assert again is not None
    coverage = with_coverage(again, {}, NOW).coverage
    assert coverage is not None and coverage.orders_counted == 2


def test_time_moves_an_announcement_on_by_the_api_rule() -> None:
    # Announced 15 days into monitoring: still monitoring then, eligible 10 days later, by the
    # rule the api applied (a 20-day rule here; the syncer's own rules say nothing of it).
    rule = CoverageRule(monitoring_days=20)
    api = announced(NOW - days(10), NOW - days(25), (), rule=rule)
    assert api.coverage.status == "monitoring"
    strict = {"*": CoverageRule(monitoring_days=90)}
    known = folded(reading(NOW - dt.timedelta(hours=1)), api)
    coverage = with_coverage(known, strict, NOW).coverage
    assert coverage is not None and coverage.status == "eligible" and coverage.rule == rule
    # Silent for longer than the rule's gap since both the announcement and the last reading.
    later = with_coverage(known, strict, NOW + days(8)).coverage
    assert later is not None and later.status == "monitoring"


def test_the_announcement_round_trips_as_a_registered_event() -> None:
    api = announced(NOW, NOW - days(40), (NOW - days(3),))
    assert ev.EVENT_TYPES["tonerwatch.printer_coverage.v1"] is ev.PrinterCoverage
    assert ev.parse_event(api.to_bytes()) == api
    assert api.subject(ev.sj.Subjects("tw")) == "tw.hq.printer.coverage.p-1"
