"""History upkeep and the readings workers at the same time on PostgreSQL: no deadlock, nothing lost.

The bench (bench/E2E.md) saw "history upkeep failed, will retry: DeadlockDetected": the rollup's
upserts into the hourly/daily tables take a KEY SHARE lock on each bucket's printer row (the
foreign key), in the order the buckets were first met, while a readings batch locks its printers
in id order. Two batches of different printers and one rollup made a cycle.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from tonerwatch_api.db.models import CounterReading, Reading, ReadingDaily, ReadingHourly
from tonerwatch_api.db.tx import in_tx
from tonerwatch_api.domain.retention import rollup_counters_batch, rollup_readings_batch
from tonerwatch_api.projections.printers import ProjectionOptions
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.projections.readings import apply_readings
from tonerwatch_shared.events import PrinterConfigured, SupplyReading

PRINTERS = 24
BATCHES_PER_WORKER = 40
PER_BATCH = 8


def _total(engine: Engine, column: object) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.coalesce(func.sum(column), 0))).one())  # type: ignore[call-overload]


def _count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())  # type: ignore[arg-type]


def test_upkeep_and_readings_workers_run_together_without_deadlock(
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    ids = [f"p-{i:03d}" for i in range(PRINTERS)]
    for pid in ids:
        apply_now(pg, configured(printer_id=pid))
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    options = ProjectionOptions()
    errors: list[BaseException] = []
    applied = [0]
    lock = threading.Lock()
    done = threading.Event()

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(BATCHES_PER_WORKER):
                # A fetch brings readings of some printers, of several hours (late ones too).
                batch = [
                    reading(printer_id=pid, occurred_at=now - timedelta(hours=rnd.randrange(6)))
                    for pid in rnd.sample(ids, PER_BATCH)
                ]
                batch.sort(key=lambda e: (e.printer_id, e.occurred_at))  # as the projector does
                outcomes = in_tx(
                    pg, lambda s, b=batch: apply_readings(s, b, "api-readings", options, now)
                )
                with lock:
                    applied[0] += outcomes.count("applied")
        except BaseException as exc:  # collected: the assertion names it
            errors.append(exc)

    def upkeep() -> None:
        try:
            while not done.is_set():
                in_tx(pg, lambda s: rollup_readings_batch(s, 50))
                in_tx(pg, lambda s: rollup_counters_batch(s, 50))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(seed,)) for seed in (1, 2, 3)]
    rollup = threading.Thread(target=upkeep)
    rollup.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    done.set()
    rollup.join(timeout=60)
    assert not any(t.is_alive() for t in [*workers, rollup]), "a thread hung"
    deadlocks = [e for e in errors if isinstance(e, DBAPIError) and "deadlock" in str(e).lower()]
    assert not deadlocks, f"{len(deadlocks)} deadlock(s): {deadlocks[0]}"
    assert not errors, errors

    # What the upkeep did not reach is rolled up now: every raw row sits in exactly one bucket.
    while in_tx(pg, lambda s: rollup_readings_batch(s, 500)):
        pass
    while in_tx(pg, lambda s: rollup_counters_batch(s, 500)):
        pass
    assert applied[0] == 3 * BATCHES_PER_WORKER * PER_BATCH
    raw = _count(pg, Reading)
    assert raw == applied[0] * 5  # five supplies per HP M479fdw reading
    assert _total(pg, ReadingHourly.count) == raw
    assert _total(pg, ReadingDaily.count) == raw
    assert _count(pg, CounterReading) == applied[0]
