"""Reading history upkeep: hourly/daily rollups from known readings, idempotence, retention."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import (
    Alert,
    AlertOrder,
    CounterDaily,
    CounterHourly,
    CounterReading,
    ProcessedEvent,
    Reading,
    ReadingDaily,
    ReadingHourly,
)
from tonerwatch_api.db.tx import in_tx
from tonerwatch_api.domain.history import choose_resolution, counter_history, level_history
from tonerwatch_api.domain.retention import (
    RetentionPolicy,
    maintain,
    policy_from,
    prune_raw_batch,
    rollup_readings_batch,
)
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_shared.events import PrinterConfigured, SupplyReading
from tonerwatch_shared.printer.model import Counters

from .conftest import hp_supplies

# A day well inside the hourly retention but past the raw one.
DAY0 = (datetime.now(UTC) - timedelta(days=40)).replace(hour=0, minute=0, second=0, microsecond=0)
POLICY = RetentionPolicy(raw_days=30, hourly_days=365, processed_events_days=7, batch=5000)

# Black toner of an HP M479fdw over two hours: (minute after 10:00, percent, lifetime pages).
BLACK = [(5, 50.0, 1000), (20, 48.0, 1010), (50, 46.0, 1030), (70, 45.0, 1040)]


def rows(engine: Engine, model: type) -> list:  # type: ignore[type-arg]
    """Return every row of a table, ordered by its primary key."""
    with Session(engine) as s:
        pk = [col(c) for c in model.__table__.primary_key.columns]  # type: ignore[attr-defined]
        return list(s.exec(select(model).order_by(*pk)).all())


def count(engine: Engine, model: type, *where: object) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())  # type: ignore[arg-type]


def feed_black(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
    samples: list[tuple[int, float, int]] = BLACK,
) -> None:
    apply_now(db, configured(occurred_at=DAY0))
    for minute, black, pages in samples:
        at = DAY0 + timedelta(hours=10, minutes=minute)
        apply_now(
            db,
            reading(
                occurred_at=at,
                supplies=hp_supplies(black=black),
                counters=Counters(lifetime_pages=pages),
            ),
        )


def black_buckets(engine: Engine, model: type) -> list:  # type: ignore[type-arg]
    return [r for r in rows(engine, model) if r.supply_index == "1"]


async def test_hp_m479_black_toner_rolls_up_into_known_hourly_and_daily_buckets(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    feed_black(db, configured, reading)
    totals = await maintain(db, POLICY, now=DAY0 + timedelta(days=1))
    assert totals.rolled_readings == 4 * 5  # four polls, five supplies
    assert totals.rolled_counters == 4

    h10, h11 = black_buckets(db, ReadingHourly)
    assert h10.bucket_start == DAY0 + timedelta(hours=10)
    assert (h10.count, h10.min_percent, h10.max_percent, h10.avg_percent) == (3, 46.0, 50.0, 48.0)
    assert (h10.last_percent, h10.last_level) == (46.0, 46)
    assert h10.last_at == DAY0 + timedelta(hours=10, minutes=50)
    assert h11.bucket_start == DAY0 + timedelta(hours=11)
    assert (h11.count, h11.min_percent, h11.max_percent, h11.last_percent) == (1, 45.0, 45.0, 45.0)

    (day,) = black_buckets(db, ReadingDaily)
    assert day.bucket_start == DAY0
    assert (day.count, day.min_percent, day.max_percent, day.last_percent) == (4, 45.0, 50.0, 45.0)
    assert day.avg_percent == pytest.approx(47.25)

    c10, c11 = rows(db, CounterHourly)
    assert (c10.count, c10.min_lifetime_pages, c10.lifetime_pages) == (3, 1000, 1030)
    assert (c11.count, c11.lifetime_pages) == (1, 1040)
    (cday,) = rows(db, CounterDaily)
    assert (cday.min_lifetime_pages, cday.lifetime_pages) == (1000, 1040)


async def test_rerunning_the_rollup_changes_nothing(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    feed_black(db, configured, reading)
    # "now" keeps the raw rows (inside retention): only the rollup is re-run.
    now = DAY0 + timedelta(days=1)
    await maintain(db, POLICY, now=now)
    before = [vars(r).copy() for r in rows(db, ReadingHourly) + rows(db, ReadingDaily)]
    again = await maintain(db, POLICY, now=now)
    assert again.rolled_readings == 0 and again.rolled_counters == 0
    after = [vars(r).copy() for r in rows(db, ReadingHourly) + rows(db, ReadingDaily)]
    strip = [{k: v for k, v in d.items() if not k.startswith("_")} for d in before]
    assert strip == [{k: v for k, v in d.items() if not k.startswith("_")} for d in after]


async def test_batched_rollup_gives_the_same_buckets_as_one_pass(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    # Twelve polls at 5-minute steps = 60 raw rows; 7 rows per transaction splits buckets apart.
    polls = [(m, 60.0 - m / 5, 2000 + m) for m in range(0, 120, 10)]
    feed_black(db, configured, reading, polls)
    small = RetentionPolicy(batch=7, max_batches=3)
    runs = 0
    while count(db, Reading, col(Reading.rolled_up).is_(False)):
        await maintain(db, small, now=DAY0 + timedelta(days=1))
        runs += 1
    assert runs == 3  # 60 rows / (7 x 3 per run)
    h10, h11 = black_buckets(db, ReadingHourly)
    assert (h10.count, h10.min_percent, h10.max_percent, h10.last_percent) == (6, 50.0, 60.0, 50.0)
    assert h10.avg_percent == pytest.approx(55.0)
    assert (h11.count, h11.min_percent, h11.max_percent, h11.last_percent) == (6, 38.0, 48.0, 38.0)


async def test_late_reading_is_merged_into_an_already_rolled_hour(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    feed_black(db, configured, reading)
    await maintain(db, POLICY, now=DAY0 + timedelta(days=1))
    # A poll from 10:35 arrives after the 10:00 hour was rolled up (e.g. a poller's backlog).
    apply_now(
        db,
        reading(
            occurred_at=DAY0 + timedelta(hours=10, minutes=35),
            supplies=hp_supplies(black=52.0),
        ),
    )
    await maintain(db, POLICY, now=DAY0 + timedelta(days=1))
    h10 = black_buckets(db, ReadingHourly)[0]
    assert (h10.count, h10.max_percent, h10.avg_percent) == (4, 52.0, 49.0)
    assert h10.last_percent == 46.0  # 10:50 is still the latest of the hour


async def test_raw_rows_are_deleted_only_after_their_rollup(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    feed_black(db, configured, reading)
    now = datetime.now(UTC)  # DAY0 is 40 days back: past the 30-day raw retention
    deleted = in_tx(db, lambda s: prune_raw_batch(s, Reading, now - timedelta(days=30), 1000))
    assert deleted == 0 and count(db, Reading) == 20  # not rolled up yet: kept

    totals = await maintain(db, POLICY, now=now)
    assert totals.rolled_readings == 20 and totals.pruned_readings == 20
    assert totals.pruned_counters == 4
    assert count(db, Reading) == 0 and count(db, CounterReading) == 0
    assert count(db, ReadingHourly) == 10 and count(db, ReadingDaily) == 5
    # The history is still there, from the rollups.
    points = in_tx(
        db,
        lambda s: level_history(s, "p-hp479", DAY0, DAY0 + timedelta(days=1), "hourly", 100),
    )
    black = [p for p in points if p.supply_index == "1"]
    assert [(p.at.hour, p.percent, p.count) for p in black] == [(10, 48.0, 3), (11, 45.0, 1)]


async def test_hourly_buckets_expire_daily_ones_stay(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    feed_black(db, configured, reading)
    await maintain(db, POLICY, now=DAY0 + timedelta(days=1))
    totals = await maintain(db, POLICY, now=DAY0 + timedelta(days=366))
    assert totals.pruned_hourly == 10 + 2  # readings (2 hours x 5 supplies) + counters
    assert count(db, ReadingHourly) == 0 and count(db, CounterHourly) == 0
    assert count(db, ReadingDaily) == 5 and count(db, CounterDaily) == 1


async def test_processed_events_older_than_the_stream_are_pruned(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    feed_black(db, configured, reading)  # five events, processed "now"
    now = datetime.now(UTC)
    assert (await maintain(db, POLICY, now=now)).pruned_processed == 0
    totals = await maintain(db, POLICY, now=now + timedelta(days=8))
    assert totals.pruned_processed == 5 and count(db, ProcessedEvent) == 0


async def test_alert_order_rows_of_long_closed_alerts_are_pruned(db: Engine) -> None:
    """Issue 16: alert_order grows by one row per distinct alert; upkeep deletes the rows of alerts
    closed longer than a stale event can arrive, and keeps open and recent ones."""
    now = datetime.now(UTC)
    policy = RetentionPolicy(alert_order_days=97, batch=2)  # batch 2: the drain loops
    old, recent = now - timedelta(days=98), now - timedelta(days=96)
    orders = {
        "closed-old-1": old,  # resolved long ago
        "closed-old-2": old,
        "closed-old-3": old,
        "never-opened-old": old,  # a "resolved" seen before its "crossed": no alert row
        "closed-recent": recent,
        "open-old": old,  # still open: its row stays however old
        "reopened-old": old,  # one closed occurrence, one open
    }
    alerts = [
        ("closed-old-1", old),
        ("closed-old-2", old),
        ("closed-old-3", old),
        ("closed-recent", recent),
        ("open-old", None),
        ("reopened-old", old),
        ("reopened-old", None),
    ]

    def seed(s: Session) -> None:
        for alert_id, at in orders.items():
            s.add(AlertOrder(alert_id=alert_id, seq=7, at=at))
        for alert_id, resolved_at in alerts:
            s.add(
                Alert(
                    alert_id=alert_id,
                    site_id="default",
                    rule="collector-offline",
                    severity="warning",
                    message="m",
                    raised_at=old - timedelta(days=1),
                    resolved_at=resolved_at,
                )
            )

    in_tx(db, seed)
    totals = await maintain(db, policy, now=now)
    assert totals.pruned_alert_order == 4
    kept = {row.alert_id for row in rows(db, AlertOrder)}
    assert kept == {"closed-recent", "open-old", "reopened-old"}
    assert count(db, Alert) == len(alerts)  # the alerts themselves are history: untouched
    assert (await maintain(db, policy, now=now)).pruned_alert_order == 0


def test_alert_order_is_kept_as_long_as_the_stream_and_dead_letters_keep_events() -> None:
    """The api keeps alert_order as long as the KV position buckets: the events stream's max age
    (configurable) plus the dead-letter stream's 90 days of replays."""
    from tonerwatch_api.settings import Settings

    assert policy_from(Settings()).alert_order_days == 7 + 90
    assert policy_from(Settings(events_max_age_s=30 * 86400)).alert_order_days == 30 + 90


def test_hourly_history_includes_readings_not_rolled_up_yet(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    feed_black(db, configured, reading)
    # Roll up only the first two polls (10 rows), the rest stays pending.
    assert in_tx(db, lambda s: rollup_readings_batch(s, 10)) == 10
    points = in_tx(
        db,
        lambda s: level_history(s, "p-hp479", DAY0, DAY0 + timedelta(days=1), "hourly", 100),
    )
    black = [
        (p.at.hour, p.count, p.min_percent, p.last_percent) for p in points if p.supply_index == "1"
    ]
    assert black == [(10, 3, 46.0, 46.0), (11, 1, 45.0, 45.0)]
    daily = in_tx(
        db,
        lambda s: counter_history(s, "p-hp479", DAY0, DAY0 + timedelta(days=1), "daily", 10),
    )
    assert [(p.count, p.lifetime_pages) for p in daily] == [(4, 1040)]


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (NOW - timedelta(hours=6), NOW, "raw"),
        (NOW - timedelta(days=2), NOW, "raw"),
        (NOW - timedelta(days=7), NOW, "hourly"),
        (NOW - timedelta(days=62), NOW, "hourly"),
        (NOW - timedelta(days=365), NOW, "daily"),
        # A short range older than the raw retention: raw rows are gone, hourly holds it.
        (NOW - timedelta(days=45), NOW - timedelta(days=44), "hourly"),
        # A short range older than the hourly retention: only daily holds it.
        (NOW - timedelta(days=400), NOW - timedelta(days=399), "daily"),
    ],
)
def test_auto_resolution_by_range(since: datetime, until: datetime, expected: str) -> None:
    assert choose_resolution(since, until, NOW, POLICY) == expected


def test_the_sql_rollup_keeps_what_the_python_merge_keeps(
    db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    """Rollups run in SQL (INSERT ... SELECT ... GROUP BY): the same buckets as merge_levels and
    merge_counters over the same rows, with equal times (the later row wins), unknown percents,
    hours and days apart, rolled in several batches into buckets that already hold rows."""
    import random

    from tonerwatch_api.domain.retention import (
        merge_counters,
        merge_levels,
        rollup_counters_batch,
    )

    rnd = random.Random(15)
    for pid in ("p-a", "p-b"):
        apply_now(db, configured(printer_id=pid, occurred_at=DAY0))
    levels, counters = [], []
    for _ in range(120):
        pid = rnd.choice(("p-a", "p-b"))
        # Few distinct minutes over two days: many rows share a time.
        at = DAY0 + timedelta(hours=rnd.choice((1, 2, 25)), minutes=rnd.choice((0, 15, 59)))
        percent = rnd.choice((None, 10.0, 55.5, 80.0))
        levels.append(
            {
                "printer_id": pid,
                "supply_index": rnd.choice("12"),
                "occurred_at": at,
                "percent": percent,
                "level": None if percent is None else int(percent),
            }
        )
        life = rnd.randrange(1000, 2000)
        counters.append(
            {
                "printer_id": pid,
                "occurred_at": at,
                "lifetime_pages": life,
                "mono_pages": life - 7,
                "colour_pages": None,
                "duplex_pages": rnd.choice((None, 3)),
            }
        )
    with Session(db) as s, s.begin():
        for row in levels:
            s.add(Reading(**row))
            s.flush()  # ids in list order: the order merge_levels sees them in
        for row in counters:
            s.add(CounterReading(**row))
            s.flush()
    while in_tx(db, lambda s: rollup_readings_batch(s, 37)):  # several batches
        pass
    while in_tx(db, lambda s: rollup_counters_batch(s, 37)):
        pass

    def level_rows(model: type) -> dict:  # type: ignore[type-arg]
        return {
            (r.printer_id, r.bucket_start, r.supply_index): (
                r.count,
                r.percent_count,
                pytest.approx(r.sum_percent),
                r.min_percent,
                r.max_percent,
                r.last_at,
                r.last_percent,
                r.last_level,
            )
            for r in rows(db, model)
        }

    for model, hourly in ((ReadingHourly, True), (ReadingDaily, False)):
        expected = merge_levels(
            (
                (r["printer_id"], r["supply_index"], r["occurred_at"], r["percent"], r["level"])
                for r in levels
            ),
            hourly=hourly,
        )
        assert level_rows(model) == {
            k: (
                b.count,
                b.percent_count,
                b.sum_percent,
                b.min_percent,
                b.max_percent,
                b.last_at,
                b.last_percent,
                b.last_level,
            )
            for k, b in expected.items()
        }
    for model, hourly in ((CounterHourly, True), (CounterDaily, False)):
        merged = merge_counters(
            (
                (
                    r["printer_id"],
                    r["occurred_at"],
                    {
                        f: r[f]
                        for f in ("lifetime_pages", "mono_pages", "colour_pages", "duplex_pages")
                    },
                )
                for r in counters
            ),
            hourly=hourly,
        )
        assert {
            (r.printer_id, r.bucket_start): (
                r.count,
                r.min_lifetime_pages,
                r.last_at,
                r.lifetime_pages,
                r.mono_pages,
                r.duplex_pages,
            )
            for r in rows(db, model)
        } == {
            k: (
                b.count,
                b.min_lifetime_pages,
                b.last_at,
                b.values["lifetime_pages"],
                b.values["mono_pages"],
                b.values["duplex_pages"],
            )
            for k, b in merged.items()
        }
