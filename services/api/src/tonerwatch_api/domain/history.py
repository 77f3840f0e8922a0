"""Supply level and page counter history at raw, hourly or daily resolution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import (
    CounterDaily,
    CounterHourly,
    CounterReading,
    Reading,
    ReadingDaily,
    ReadingHourly,
)
from tonerwatch_api.domain.retention import (
    COUNTER_FIELDS,
    CounterBucketAgg,
    LevelBucket,
    RetentionPolicy,
    merge_counters,
    merge_levels,
    table_of,
)

Resolution = Literal["raw", "hourly", "daily"]
RAW_MAX_SPAN = timedelta(days=2)  # 576 points per supply at 5-minute polls
HOURLY_MAX_SPAN = timedelta(days=62)  # ~1,500 points per supply


def choose_resolution(
    since: datetime, until: datetime, now: datetime, policy: RetentionPolicy
) -> Resolution:
    """Return the finest resolution that still holds since and keeps the point count chartable."""
    span = until - since
    if span <= RAW_MAX_SPAN and since >= now - timedelta(days=policy.raw_days):
        return "raw"
    if span <= HOURLY_MAX_SPAN and since >= now - timedelta(days=policy.hourly_days):
        return "hourly"
    return "daily"


@dataclass(frozen=True)
class LevelPoint:
    """One supply's level at one time (raw) or over one bucket (hourly/daily)."""

    supply_index: str
    at: datetime  # the reading's time, or the bucket's start
    percent: float | None  # raw value, or the bucket's mean
    level: int | None  # raw value, or the bucket's last
    min_percent: float | None = None
    max_percent: float | None = None
    last_percent: float | None = None
    count: int = 1


@dataclass(frozen=True)
class CounterPoint:
    """Page counters at one time (raw) or at the end of one bucket."""

    at: datetime
    lifetime_pages: int | None
    mono_pages: int | None
    colour_pages: int | None
    duplex_pages: int | None
    count: int = 1
    # The lowest total in the bucket (a bucket's values are its last): pages printed within the
    # first bucket count too.
    min_lifetime_pages: int | None = None


def _bucket_point(index: str, start: datetime, b: LevelBucket) -> LevelPoint:
    return LevelPoint(
        supply_index=index,
        at=start,
        percent=b.avg_percent,
        level=b.last_level,
        min_percent=b.min_percent,
        max_percent=b.max_percent,
        last_percent=b.last_percent,
        count=b.count,
    )


def history_start(session: Session, printer_id: str, since: datetime) -> datetime | None:
    """Return when the printer's level history after since begins (None: no history yet)."""
    firsts = []
    for model, column, slack in (
        (Reading, Reading.occurred_at, timedelta(0)),
        (ReadingHourly, None, timedelta(hours=1)),
        (ReadingDaily, None, timedelta(days=1)),
    ):
        if column is not None:
            firsts.append(
                session.exec(
                    select(func.min(col(column))).where(
                        Reading.printer_id == printer_id, col(column) >= since
                    )
                ).first()
            )
            continue
        t = table_of(model).c
        firsts.append(
            session.execute(
                sa_select(func.min(t.bucket_start)).where(
                    t.printer_id == printer_id, t.bucket_start > since - slack
                )
            ).scalar()
        )
    found = [max(f, since) for f in firsts if f is not None]
    return min(found, default=None)


def level_history(
    session: Session,
    printer_id: str,
    since: datetime,
    until: datetime,
    resolution: Resolution,
    limit: int,
    *,
    newest_first: bool = False,
) -> list[LevelPoint]:
    """Return a printer's supply levels in [since, until], oldest (or newest) first, at most
    limit points.

    Hourly and daily include raw rows the periodic rollup has not merged yet, so they are
    current to the last poll.
    """
    if resolution == "raw":
        at, index = col(Reading.occurred_at), col(Reading.supply_index)
        q = (
            select(Reading.supply_index, Reading.occurred_at, Reading.percent, Reading.level)
            .where(
                Reading.printer_id == printer_id,
                col(Reading.occurred_at) >= since,
                col(Reading.occurred_at) <= until,
            )
            .order_by(*((at.desc(), index.desc()) if newest_first else (at, index)))
            .limit(limit)
        )
        return [LevelPoint(i, at, p, lv) for i, at, p, lv in session.exec(q).all()]
    hourly = resolution == "hourly"
    model = ReadingHourly if hourly else ReadingDaily
    t = table_of(model).c
    # A bucket straddling since still counts: start the bucket search one bucket earlier.
    first = since - (timedelta(hours=1) if hourly else timedelta(days=1))
    pending_rows = session.exec(
        select(Reading.supply_index, Reading.occurred_at, Reading.percent, Reading.level).where(
            Reading.printer_id == printer_id,
            col(Reading.rolled_up).is_(False),
            col(Reading.occurred_at) >= since,
            col(Reading.occurred_at) <= until,
        )
    ).all()
    raw = ((printer_id, i, at, p, lv) for i, at, p, lv in pending_rows)
    pending = {(s, i): b for (_, s, i), b in merge_levels(raw, hourly=hourly).items()}
    # Plain column tuples, not ORM objects: a year of hourly buckets is ~50,000 rows.
    rows = session.execute(
        sa_select(
            t.bucket_start,
            t.supply_index,
            t.count,
            t.percent_count,
            t.sum_percent,
            t.min_percent,
            t.max_percent,
            t.last_at,
            t.last_percent,
            t.last_level,
        )
        .where(t.printer_id == printer_id, t.bucket_start > first, t.bucket_start <= until)
        .order_by(
            *(
                (t.bucket_start.desc(), t.supply_index.desc())
                if newest_first
                else (t.bucket_start, t.supply_index)
            )
        )
        .limit(limit)
    ).all()
    points: list[LevelPoint] = []
    for start, index, n, pn, total, lo, hi, last_at, last_p, last_lv in rows:
        extra = pending.pop((start, index), None)
        if extra is None:
            points.append(
                LevelPoint(index, start, total / pn if pn else None, last_lv, lo, hi, last_p, n)
            )
            continue
        bucket = LevelBucket(n, pn, total, lo, hi, last_at, last_p, last_lv)
        _merge_into(bucket, extra)
        points.append(_bucket_point(index, start, bucket))
    if pending:
        points.extend(_bucket_point(i, s, b) for (s, i), b in pending.items())
        points.sort(key=lambda p: (p.at, p.supply_index), reverse=newest_first)
    return points[:limit]


def _merge_into(into: LevelBucket, extra: LevelBucket) -> None:
    into.count += extra.count
    into.percent_count += extra.percent_count
    into.sum_percent += extra.sum_percent
    for attr, pick in (("min_percent", min), ("max_percent", max)):
        a, b = getattr(into, attr), getattr(extra, attr)
        setattr(into, attr, b if a is None else a if b is None else pick(a, b))
    if extra.last_at is not None and (into.last_at is None or extra.last_at >= into.last_at):
        into.last_at, into.last_percent, into.last_level = (
            extra.last_at,
            extra.last_percent,
            extra.last_level,
        )


def counter_history(
    session: Session,
    printer_id: str,
    since: datetime,
    until: datetime,
    resolution: Resolution,
    limit: int,
    *,
    newest_first: bool = False,
) -> list[CounterPoint]:
    """Return a printer's page counters in [since, until], oldest (or newest) first, at most
    limit points."""
    if resolution == "raw":
        at = col(CounterReading.occurred_at)
        q = (
            select(CounterReading)
            .where(
                CounterReading.printer_id == printer_id,
                col(CounterReading.occurred_at) >= since,
                col(CounterReading.occurred_at) <= until,
            )
            .order_by(at.desc() if newest_first else at)
            .limit(limit)
        )
        return [
            CounterPoint(
                r.occurred_at, r.lifetime_pages, r.mono_pages, r.colour_pages, r.duplex_pages
            )
            for r in session.exec(q).all()
        ]
    hourly = resolution == "hourly"
    model = CounterHourly if hourly else CounterDaily
    first = since - (timedelta(hours=1) if hourly else timedelta(days=1))
    buckets: dict[datetime, CounterBucketAgg] = {}
    for r in session.exec(
        select(model).where(
            model.printer_id == printer_id,
            col(model.bucket_start) > first,
            col(model.bucket_start) <= until,
        )
    ).all():
        buckets[r.bucket_start] = CounterBucketAgg(
            count=r.count,
            last_at=r.last_at,
            min_lifetime_pages=r.min_lifetime_pages,
            values={f: getattr(r, f) for f in COUNTER_FIELDS},
        )
    pending = session.exec(
        select(CounterReading).where(
            CounterReading.printer_id == printer_id,
            col(CounterReading.rolled_up).is_(False),
            col(CounterReading.occurred_at) >= since,
            col(CounterReading.occurred_at) <= until,
        )
    ).all()
    raw = [
        (r.printer_id, r.occurred_at, {f: getattr(r, f) for f in COUNTER_FIELDS}) for r in pending
    ]
    for (_, start), extra in merge_counters(raw, hourly=hourly).items():
        into = buckets.get(start)
        if into is None:
            buckets[start] = extra
            continue
        into.count += extra.count
        if extra.min_lifetime_pages is not None:
            into.min_lifetime_pages = min(
                into.min_lifetime_pages or extra.min_lifetime_pages, extra.min_lifetime_pages
            )
        if extra.last_at is not None and (into.last_at is None or extra.last_at >= into.last_at):
            into.last_at, into.values = extra.last_at, extra.values
    points = [
        CounterPoint(
            start,
            b.values.get("lifetime_pages"),
            b.values.get("mono_pages"),
            b.values.get("colour_pages"),
            b.values.get("duplex_pages"),
            b.count,
            b.min_lifetime_pages,
        )
        for start, b in sorted(buckets.items(), reverse=newest_first)
    ]
    return points[:limit]
