"""When the snapshot and the month-end reads are due, and how the fleet is folded (pure)."""

from __future__ import annotations

import datetime as dt

from tonerwatch_shared import events as ev
from tonerwatch_shared.printer.model import Counters, PrinterIdentity
from tonerwatch_syncer.fleet import fold, site_entries
from tonerwatch_syncer.schedule import meter_reads_due, previous_period, snapshot_due
from tonerwatch_syncer.service import Settings, next_ask_in

AT = dt.time(2, 0)


def local(day: int, hour: int, month: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, 0, tzinfo=dt.UTC)


def test_the_snapshot_is_due_once_a_day_from_its_time() -> None:
    assert snapshot_due(local(5, 1), AT, None) is None
    assert snapshot_due(local(5, 2), AT, None) == dt.date(2026, 12, 5)
    assert snapshot_due(local(5, 23), AT, "2026-12-05") is None
    # Down all night: the day's snapshot still goes when the syncer is back.
    assert snapshot_due(local(6, 9), AT, "2026-12-04") == dt.date(2026, 12, 6)


def test_month_end_reads_are_for_the_month_that_ended_and_never_twice() -> None:
    assert meter_reads_due(local(1, 0), None) == "2026-11"
    assert meter_reads_due(local(1, 0), "2026-11") is None
    assert meter_reads_due(local(3, 12), "2026-10") == "2026-11"  # an outage at the turn
    assert meter_reads_due(local(4, 0), "2026-10") is None  # too late to call it month-end
    assert meter_reads_due(local(1, 0, month=1), "2025-11") == "2025-12"
    assert previous_period(dt.date(2026, 1, 1)) == "2025-12"


def test_a_late_reading_never_rolls_a_printer_back() -> None:
    now = dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)

    def reading(at: dt.datetime, pages: int) -> ev.SupplyReading:
        return ev.SupplyReading(
            source="poller",
            site_id="hq",
            printer_id="brother-hl-l8360-01",
            occurred_at=at,
            address="127.0.0.1",
            printer=PrinterIdentity(vendor="Brother", serial="E78123J0N123456"),
            counters=Counters(lifetime_pages=pages),
        )

    known = fold(None, reading(now, 900))
    assert known is not None
    late = fold(known, reading(now - dt.timedelta(minutes=5), 850))
    # The levels and meters stay the newer ones; continuous monitoring reaches back to it.
    assert late is not None and late.entry == known.entry
    assert late.monitoring_since == now - dt.timedelta(minutes=5)
    assert fold(late, reading(now - dt.timedelta(minutes=5), 850)) is None  # a redelivery
    removed = fold(
        known, ev.PrinterRemoved(source="api", site_id="hq", printer_id="brother-hl-l8360-01")
    )
    assert removed is not None and site_entries([removed], "hq") == ()
    assert [e.counters.lifetime_pages for e in site_entries([known], "hq")] == [900]


def test_fold_orders_readings_and_reachability_by_seq() -> None:
    """The fleet snapshot follows the printer's seq, not a replica's clock; a late
    (un)reachable does not overwrite a newer status."""
    t0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)

    def reading(seq: int, minute: int, pages: int) -> ev.SupplyReading:
        return ev.SupplyReading(
            source="poller",
            site_id="hq",
            printer_id="p-1",
            occurred_at=t0 + dt.timedelta(minutes=minute),
            address="127.0.0.1",
            printer=PrinterIdentity(vendor="Brother"),
            counters=Counters(lifetime_pages=pages),
            seq=seq,
        )

    common = {"source": "poller", "site_id": "hq", "printer_id": "p-1", "address": "127.0.0.1"}
    known = fold(None, reading(10, 0, 100))
    assert known is not None
    skewed = fold(known, reading(11, -5, 110))  # newer by seq, earlier by a skewed clock
    assert skewed is not None and skewed.entry.counters.lifetime_pages == 110
    assert fold(skewed, reading(9, 3, 90)) is None  # older by seq
    assert fold(skewed, reading(11, -5, 110)) is None  # the same again
    down = fold(skewed, ev.PrinterUnreachable(**common, consecutive_failures=3, reason="x", seq=13))
    assert down is not None and down.entry.reachable is False
    late_up = ev.PrinterReachable(**common, seq=12, occurred_at=t0 + dt.timedelta(hours=1))
    assert fold(down, late_up) is None
    up = fold(down, ev.PrinterReachable(**common, seq=14))
    assert up is not None and up.entry.reachable is True and up.status_seq == 14


def test_readings_overtaken_by_an_unreachable_still_fold_but_keep_it_unreachable() -> None:
    t0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    common = {"source": "poller", "site_id": "hq", "printer_id": "p-2", "address": "127.0.0.1"}

    def reading(seq: int, pages: int) -> ev.SupplyReading:
        return ev.SupplyReading(
            **common,
            occurred_at=t0 + dt.timedelta(minutes=seq),
            printer=PrinterIdentity(vendor="Brother"),
            counters=Counters(lifetime_pages=pages),
            seq=seq,
        )

    known = fold(None, reading(1, 100))
    assert known is not None
    down = fold(known, ev.PrinterUnreachable(**common, consecutive_failures=3, reason="x", seq=9))
    assert down is not None
    late = fold(down, reading(5, 150))  # polled before the printer went down, folded after
    assert late is not None and late.entry.counters.lifetime_pages == 150
    assert late.entry.reachable is False and late.status_seq == 9 and late.read_seq == 5


def test_the_downlink_is_asked_again_at_once_only_after_news_or_a_held_request() -> None:
    hourly = Settings(sync_downlink_interval_s=3600)
    assert next_ask_in(hourly, taken=0, took_s=0.2) == 3599.8
    assert next_ask_in(hourly, taken=2, took_s=0.2) == 0.0  # items: there may be more
    long_poll = Settings(sync_downlink_interval_s=3600, sync_downlink_wait_s=600)
    assert next_ask_in(long_poll, taken=0, took_s=600.4) == 0.0  # held: listen again at once
    # A portal that ignores Prefer: wait answers at once: asked no more often than hourly.
    assert next_ask_in(long_poll, taken=0, took_s=0.1) == 3599.9
