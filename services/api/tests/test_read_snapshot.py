"""Pages and API reads see one snapshot of the database, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy.exc
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import CounterReading, Printer, Reading
from tonerwatch_api.db.tx import in_tx, read_tx, run_read_tx
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_shared.events import PrinterConfigured, SupplyReading

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _counters(s: Session) -> int:
    q = select(func.count()).select_from(CounterReading).where(CounterReading.printer_id == "p-1")
    return int(s.exec(q).one())


def _levels(s: Session) -> int:
    q = select(func.count()).select_from(Reading).where(col(Reading.printer_id) == "p-1")
    return int(s.exec(q).one())


def _page_while_a_reading_commits(
    db: Engine,
    tx: Callable[[Engine, Callable[[Session], tuple[int, int]]], tuple[int, int]],
    reading: Callable[..., SupplyReading],
) -> tuple[int, int]:
    """Return (counter rows, level rows) read by tx with a reading committed between the two."""

    def page(s: Session) -> tuple[int, int]:
        counters = _counters(s)
        # Another connection commits the next reading (counters and levels in one transaction).
        assert apply_now(db, reading("p-1", occurred_at=T0 + timedelta(minutes=5))) == "applied"
        return counters, _levels(s)

    return tx(db, page)


def test_a_page_read_sees_the_state_before_a_batch_that_commits_while_it_reads(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    apply_now(db, configured("p-1"))
    apply_now(db, reading("p-1", occurred_at=T0))
    # Before: each query of a plain transaction sees what is committed when it runs (one counter
    # row, then the levels of two readings): the mixed page.
    assert _page_while_a_reading_commits(db, in_tx, reading) == (1, 10)
    # One snapshot: both queries see the state before the third reading, though it committed
    # between them (and the writer was not held up by the open snapshot).
    assert _page_while_a_reading_commits(db, read_tx, reading) == (2, 10)
    with Session(db) as s:
        assert (_counters(s), _levels(s)) == (3, 15)


async def test_the_snapshot_ends_with_the_read_and_the_next_one_sees_everything(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    apply_now(db, configured("p-1"))
    assert await run_read_tx(db, lambda s: (_counters(s), _levels(s))) == (0, 0)
    apply_now(db, reading("p-1", occurred_at=T0))
    assert await run_read_tx(db, lambda s: (_counters(s), _levels(s))) == (1, 5)
    # The pooled connection is back in its ordinary mode: a write transaction on it works.
    in_tx(db, lambda s: s.add(Printer(id="p-2", site_id="default", address="127.0.0.2")))
    assert read_tx(db, lambda s: s.get(Printer, "p-2")) is not None


def test_a_read_snapshot_refuses_to_write_on_postgresql(pg: Engine) -> None:
    with pytest.raises(sqlalchemy.exc.InternalError, match="read-only transaction"):
        read_tx(pg, lambda s: s.exec(update(Printer).values(name="changed")))
