"""Reading history upkeep: raw rows rolled up into hourly and daily buckets, then pruned.

Raw readings are merged into their hour and day once (the rolled_up flag moves in the same
transaction as the merge, so a second run finds nothing to do), in batches so no run holds locks
for long. Raw rows are deleted only once rolled up and older than the raw retention; hourly
buckets after the hourly retention; daily buckets are kept. processed_events rows older than the
stream's max age go too: JetStream cannot redeliver those events any more. alert_order rows of
closed alerts go once no stale event can arrive any more (tonerwatch_shared.bus.positions_max_age:
the events stream's max age plus the dead-letter stream's, issue 16).

The merge runs in SQL (issue 15): one INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE
per bucket table, so raw rows never travel to Python; merge_levels/merge_counters are the same
merge for the history pages' rows not rolled up yet (and the reference the SQL is tested against).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    any_,
    bindparam,
    case,
    delete,
    func,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

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
from tonerwatch_api.db.tx import run_tx, run_write_tx
from tonerwatch_api.projections.status import refresh_statuses_batch
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import positions_max_age

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Rows per multi-row INSERT and per IN list: under SQLite's and PostgreSQL's bind limits.
_CHUNK = 500


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each resolution is kept and how much one transaction may touch."""

    raw_days: float = 30.0
    hourly_days: float = 365.0
    processed_events_days: float = 7.0
    # alert_order rows of closed alerts: kept as long as a stale event about them can arrive.
    alert_order_days: float = 97.0
    batch: int = 5000
    max_batches: int = 20  # per run and kind: a backlog drains over several runs


def hour_start(at: datetime) -> datetime:
    """Return the start of at's UTC hour."""
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def day_start(at: datetime) -> datetime:
    """Return the start of at's UTC day."""
    return hour_start(at).replace(hour=0)


# --- pure merging ---------------------------------------------------------------------------------


@dataclass
class LevelBucket:
    """Supply levels merged over one bucket; the same fields as the rollup tables."""

    count: int = 0
    percent_count: int = 0
    sum_percent: float = 0.0
    min_percent: float | None = None
    max_percent: float | None = None
    last_at: datetime | None = None
    last_percent: float | None = None
    last_level: int | None = None

    def add(self, at: datetime, percent: float | None, level: int | None) -> None:
        """Merge one raw reading in (a later or equal time replaces the last values)."""
        self.count += 1
        if percent is not None:
            self.percent_count += 1
            self.sum_percent += percent
            self.min_percent = (
                percent if self.min_percent is None else min(self.min_percent, percent)
            )
            self.max_percent = (
                percent if self.max_percent is None else max(self.max_percent, percent)
            )
        if self.last_at is None or at >= self.last_at:
            self.last_at, self.last_percent, self.last_level = at, percent, level

    @property
    def avg_percent(self) -> float | None:
        """Return the mean percent, None when no reading had one."""
        return self.sum_percent / self.percent_count if self.percent_count else None


@dataclass
class CounterBucketAgg:
    """Page counters merged over one bucket: last values seen and the lowest lifetime count."""

    count: int = 0
    last_at: datetime | None = None
    min_lifetime_pages: int | None = None
    values: dict[str, int | None] = field(default_factory=dict)

    def add(self, at: datetime, values: dict[str, int | None]) -> None:
        """Merge one raw counter reading in."""
        self.count += 1
        life = values.get("lifetime_pages")
        if life is not None:
            self.min_lifetime_pages = (
                life if self.min_lifetime_pages is None else min(self.min_lifetime_pages, life)
            )
        if self.last_at is None or at >= self.last_at:
            self.last_at, self.values = at, dict(values)


LevelKey = tuple[str, datetime, str]  # printer_id, bucket_start, supply_index
CounterKey = tuple[str, datetime]
COUNTER_FIELDS = ("lifetime_pages", "mono_pages", "colour_pages", "duplex_pages")


def merge_levels(
    rows: Iterable[tuple[str, str, datetime, float | None, int | None]], hourly: bool
) -> dict[LevelKey, LevelBucket]:
    """Return buckets of (printer_id, supply_index, occurred_at, percent, level) rows."""
    out: dict[LevelKey, LevelBucket] = {}
    start = hour_start if hourly else day_start
    for printer_id, supply_index, at, percent, level in rows:
        key = (printer_id, start(at), supply_index)
        out.setdefault(key, LevelBucket()).add(at, percent, level)
    return out


def merge_counters(
    rows: Iterable[tuple[str, datetime, dict[str, int | None]]], hourly: bool
) -> dict[CounterKey, CounterBucketAgg]:
    """Return buckets of (printer_id, occurred_at, counter values) rows."""
    out: dict[CounterKey, CounterBucketAgg] = {}
    start = hour_start if hourly else day_start
    for printer_id, at, values in rows:
        out.setdefault((printer_id, start(at)), CounterBucketAgg()).add(at, values)
    return out


# --- SQL rollups ----------------------------------------------------------------------------------


def _insert(session: Session, table: Table) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        # Imported where used: SQLAlchemy's PostgreSQL dialect is ~6 MB `up` on SQLite does without.
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"rollups need PostgreSQL or SQLite, not {name}")


def _least(session: Session, a: Any, b: Any) -> ColumnElement[Any]:
    # Either side may be NULL: coalesce so the other wins (SQLite's min() would give NULL).
    fn = func.least if session.get_bind().dialect.name == "postgresql" else func.min
    return fn(func.coalesce(a, b), func.coalesce(b, a))


def _greatest(session: Session, a: Any, b: Any) -> ColumnElement[Any]:
    fn = func.greatest if session.get_bind().dialect.name == "postgresql" else func.max
    return fn(func.coalesce(a, b), func.coalesce(b, a))


def _pending(session: Session, model: Any, columns: Sequence[str], batch: int) -> Any:
    # Plain column tuples (id first), not ORM objects: thousands of rows per batch.
    t = table_of(model)
    q = (
        select(t.c.id, *(t.c[c] for c in columns))
        .where(t.c.rolled_up.is_(False))
        .order_by(t.c.id)
        .limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Another api replica rolling up at the same time takes other rows, never the same ones.
        q = q.with_for_update(skip_locked=True)
    return q


def _ids_in(column: Any, session: Session) -> ColumnElement[bool]:
    """column among the bound :ids: on PostgreSQL `= ANY(:ids)`, one array parameter.

    An expanding IN of thousands of ids writes a placeholder per id into a new SQL text, which
    psycopg then parses again (placeholder by placeholder, in Python) on every run: more of the
    api's CPU than the rollup's own work. SQLite keeps the expanding IN.
    """
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return column == any_(bindparam("ids", type_=postgresql.ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(bindparam("ids", expanding=True))  # type: ignore[no-any-return]


def _mark_rolled(
    session: Session, model: type[Reading] | type[CounterReading], ids: Sequence[int]
) -> None:
    if session.get_bind().dialect.name == "postgresql":
        t = table_of(model)
        session.execute(
            update(t).where(_ids_in(t.c.id, session)).values(rolled_up=True), {"ids": list(ids)}
        )
        return
    for i in range(0, len(ids), _CHUNK):
        session.execute(
            update(model).where(col(model.id).in_(ids[i : i + _CHUNK])).values(rolled_up=True)
        )


def _bucket(session: Session, at: Any, hourly: bool) -> ColumnElement[Any]:
    """Return SQL for the start of at's UTC hour or day, as the rollup tables store it."""
    if session.get_bind().dialect.name == "postgresql":
        unit = "hour" if hourly else "day"
        return func.timezone("UTC", func.date_trunc(unit, func.timezone("UTC", at)))
    # SQLite: naive UTC text in SQLAlchemy's format (microseconds always written).
    return func.strftime("%Y-%m-%d %H:00:00.000000" if hourly else "%Y-%m-%d 00:00:00.000000", at)


# How a bucket column merges into a stored bucket: added, the lower, the higher, or the newer's.
_ADD, _LEAST, _GREATEST, _LAST = "add", "least", "greatest", "last"


@dataclass(frozen=True)
class _Rollup:
    """One raw table rolled up in SQL: its bucket keys, aggregates, and values kept from the latest row."""

    model: type[Reading] | type[CounterReading]
    keys: tuple[str, ...]  # besides bucket_start
    columns: tuple[str, ...]  # the raw columns read
    # bucket column -> (how it merges, SQL of it over the ranked raw rows r)
    aggregates: Any
    lasts: tuple[tuple[str, str], ...]  # (bucket column, raw column) of the latest row
    targets: tuple[tuple[Any, bool], ...]  # (bucket model, hourly)


def _rollup_statement(session: Session, spec: _Rollup, target: Table, hourly: bool) -> Any:
    """Return INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE of the raw rows :ids.

    The rows never leave the database. A bucket's last values are those of its latest row (the
    highest id among equal times), as LevelBucket.add keeps them; buckets are inserted in key
    order (one lock order: each bucket's foreign key locks its printer row).
    """
    raw = table_of(spec.model)
    bucket = _bucket(session, raw.c.occurred_at, hourly).label("bucket_start")
    keys = [raw.c[k] for k in spec.keys]
    ranked = (
        select(
            *(raw.c[c] for c in spec.columns),
            bucket,
            func.row_number()
            .over(
                partition_by=[*keys, bucket],
                order_by=[raw.c.occurred_at.desc(), raw.c.id.desc()],
            )
            .label("rn"),
        )
        .where(_ids_in(raw.c.id, session))
        .subquery()
    )
    r = ranked.c
    merges: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, (merge, sql) in spec.aggregates(r).items():
        merges[name], values[name] = merge, sql
    values["last_at"] = func.max(r.occurred_at)
    for name, column in spec.lasts:
        merges[name], values[name] = _LAST, func.max(case((r.rn == 1, r[column])))
    group = [*(r[k] for k in spec.keys), r.bucket_start]
    query = (
        select(*group, *values.values())
        .where(true())  # SQLite parses INSERT ... SELECT ... ON CONFLICT only with a WHERE
        .group_by(*group)
        .order_by(*group)
    )
    stmt = _insert(session, target).from_select([*spec.keys, "bucket_start", *values], query)
    t, ex = target.c, stmt.excluded
    newer = ex.last_at >= t.last_at
    set_: dict[str, Any] = {"last_at": case((newer, ex.last_at), else_=t.last_at)}
    for name, merge in merges.items():
        if merge == _ADD:
            set_[name] = t[name] + ex[name]
        elif merge == _LEAST:
            set_[name] = _least(session, t[name], ex[name])
        elif merge == _GREATEST:
            set_[name] = _greatest(session, t[name], ex[name])
        else:
            set_[name] = case((newer, ex[name]), else_=t[name])
    return stmt.on_conflict_do_update(index_elements=[*spec.keys, "bucket_start"], set_=set_)


def _rollup(session: Session, spec: _Rollup, batch: int) -> int:
    """Roll up to batch raw rows not rolled up yet (locked, skipped by other replicas); return how many."""
    ids = [row[0] for row in session.execute(_pending(session, spec.model, (), batch)).all()]
    if not ids:
        return 0
    for model, hourly in spec.targets:
        session.execute(_rollup_statement(session, spec, table_of(model), hourly), {"ids": ids})
    _mark_rolled(session, spec.model, ids)
    return len(ids)


_READINGS = _Rollup(
    model=Reading,
    keys=("printer_id", "supply_index"),
    columns=("id", "printer_id", "supply_index", "occurred_at", "percent", "level"),
    aggregates=lambda r: {
        "count": (_ADD, func.count()),
        "percent_count": (_ADD, func.count(r.percent)),
        "sum_percent": (_ADD, func.coalesce(func.sum(r.percent), 0.0)),
        "min_percent": (_LEAST, func.min(r.percent)),
        "max_percent": (_GREATEST, func.max(r.percent)),
    },
    lasts=(("last_percent", "percent"), ("last_level", "level")),
    targets=((ReadingHourly, True), (ReadingDaily, False)),
)
_COUNTERS = _Rollup(
    model=CounterReading,
    keys=("printer_id",),
    columns=("id", "printer_id", "occurred_at", *COUNTER_FIELDS),
    aggregates=lambda r: {
        "count": (_ADD, func.count()),
        "min_lifetime_pages": (_LEAST, func.min(r.lifetime_pages)),
    },
    lasts=tuple((f, f) for f in COUNTER_FIELDS),
    targets=((CounterHourly, True), (CounterDaily, False)),
)


def rollup_readings_batch(session: Session, batch: int) -> int:
    """Merge up to batch raw readings into hourly and daily buckets, in SQL; return how many."""
    return _rollup(session, _READINGS, batch)


def rollup_counters_batch(session: Session, batch: int) -> int:
    """Merge up to batch raw counter readings into hourly and daily buckets, in SQL; return how many."""
    return _rollup(session, _COUNTERS, batch)


def table_of(model: Any) -> Table:
    """Return the Table behind a SQLModel table class."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


# --- pruning --------------------------------------------------------------------------------------


def prune_raw_batch(
    session: Session, model: type[Reading] | type[CounterReading], cutoff: datetime, batch: int
) -> int:
    """Delete up to batch rolled-up raw rows older than cutoff; return how many."""
    ids = (
        select(col(model.id))
        .where(col(model.rolled_up).is_(True), col(model.occurred_at) < cutoff)
        .limit(batch)
    )
    result = session.execute(delete(model).where(col(model.id).in_(ids.scalar_subquery())))
    return int(getattr(result, "rowcount", 0) or 0)


def prune_hourly_batch(session: Session, model: Any, cutoff: datetime, batch: int) -> int:
    """Delete up to batch hourly buckets that start before cutoff; return how many."""
    t = table_of(model)
    pk = [c for c in t.primary_key.columns]
    keys = select(*pk).where(t.c.bucket_start < cutoff).limit(batch)
    result = session.execute(delete(t).where(tuple_(*pk).in_(keys)))
    return int(getattr(result, "rowcount", 0) or 0)


def prune_processed_batch(session: Session, cutoff: datetime, batch: int) -> int:
    """Delete up to batch processed_events rows older than cutoff; return how many."""
    keys = (
        select(col(ProcessedEvent.event_id))
        .where(col(ProcessedEvent.processed_at) < cutoff)
        .limit(batch)
    )
    result = session.execute(
        delete(ProcessedEvent).where(col(ProcessedEvent.event_id).in_(keys.scalar_subquery()))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def prune_alert_order_batch(session: Session, cutoff: datetime, batch: int) -> int:
    """Delete up to batch alert_order rows last moved before cutoff whose alert is closed (no open
    alert row has that alert_id); return how many. An open alert keeps its row however old."""
    open_ids = select(col(Alert.alert_id)).where(col(Alert.resolved_at).is_(None))
    keys = (
        select(col(AlertOrder.alert_id))
        .where(col(AlertOrder.at) < cutoff, col(AlertOrder.alert_id).not_in(open_ids))
        .limit(batch)
    )
    result = session.execute(
        delete(AlertOrder).where(col(AlertOrder.alert_id).in_(keys.scalar_subquery()))
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- the periodic task ----------------------------------------------------------------------------


@dataclass
class RunTotals:
    """What one maintenance run did."""

    rolled_readings: int = 0
    rolled_counters: int = 0
    pruned_readings: int = 0
    pruned_counters: int = 0
    pruned_hourly: int = 0
    pruned_processed: int = 0
    pruned_alert_order: int = 0


async def _drain(engine: Engine, step: Any, policy: RetentionPolicy) -> int:
    """Return rows handled by running step (one transaction each) until it falls short."""
    total = 0
    for _ in range(policy.max_batches):
        n: int = await run_write_tx(engine, step)
        total += n
        if n < policy.batch:
            break
    return total


async def maintain(
    engine: Engine, policy: RetentionPolicy, now: datetime | None = None
) -> RunTotals:
    """Run one rollup-then-prune pass; return what it did."""
    now = now or datetime.now(UTC)
    b = policy.batch
    raw_cutoff = now - timedelta(days=policy.raw_days)
    hourly_cutoff = now - timedelta(days=policy.hourly_days)
    processed_cutoff = now - timedelta(days=policy.processed_events_days)
    order_cutoff = now - timedelta(days=policy.alert_order_days)
    totals = RunTotals()
    # Rollups first: pruning only takes rows already rolled up.
    totals.rolled_readings = await _drain(engine, lambda s: rollup_readings_batch(s, b), policy)
    totals.rolled_counters = await _drain(engine, lambda s: rollup_counters_batch(s, b), policy)
    totals.pruned_readings = await _drain(
        engine, lambda s: prune_raw_batch(s, Reading, raw_cutoff, b), policy
    )
    totals.pruned_counters = await _drain(
        engine, lambda s: prune_raw_batch(s, CounterReading, raw_cutoff, b), policy
    )
    totals.pruned_hourly = await _drain(
        engine, lambda s: prune_hourly_batch(s, ReadingHourly, hourly_cutoff, b), policy
    ) + await _drain(
        engine, lambda s: prune_hourly_batch(s, CounterHourly, hourly_cutoff, b), policy
    )
    totals.pruned_processed = await _drain(
        engine, lambda s: prune_processed_batch(s, processed_cutoff, b), policy
    )
    totals.pruned_alert_order = await _drain(
        engine, lambda s: prune_alert_order_batch(s, order_cutoff, b), policy
    )
    return totals


async def run(
    engine: Engine, policy: RetentionPolicy, stop: asyncio.Event, interval_s: float = 60.0
) -> None:
    """Run maintain() every interval_s until stop is set; a failed run is retried next time."""
    while not stop.is_set():
        try:
            totals = await maintain(engine, policy)
            if any(vars(totals).values()):
                log.info("history upkeep: %s", totals)
        except Exception as exc:
            log.warning("history upkeep failed, will retry: %r", exc)
        try:
            async with asyncio.timeout(interval_s):
                await stop.wait()
        except TimeoutError:
            pass


def policy_from(settings: Settings) -> RetentionPolicy:
    """Return the retention policy the api settings ask for."""
    return RetentionPolicy(
        raw_days=settings.raw_retention_days,
        hourly_days=settings.hourly_retention_days,
        # Kept as long as the events stream may redeliver them (TONERWATCH_EVENTS_MAX_AGE_S).
        processed_events_days=settings.events_max_age / 86400,
        alert_order_days=positions_max_age(settings.events_max_age) / 86400,
        batch=settings.history_batch,
    )


async def refresh_all_statuses(engine: Engine, batch: int = 1000) -> None:
    """Recompute every printer's stored status (after an upgrade added the column)."""
    after: str | None = ""
    while after is not None:
        after = await run_tx(
            engine, functools.partial(refresh_statuses_batch, after=after, batch=batch)
        )


async def run_upkeep(engine: Engine, settings: Settings, stop: asyncio.Event) -> None:
    """Refresh printer statuses once, then roll up and prune history until stop is set."""
    try:
        await refresh_all_statuses(engine)
    except Exception as exc:
        log.warning("refreshing printer statuses failed: %r", exc)
    await run(engine, policy_from(settings), stop, settings.history_upkeep_interval_s)
