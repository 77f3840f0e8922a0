"""processed_events, the record of what each projection applied: many keys in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from tonerwatch_api.db.models import ProcessedEvent
from tonerwatch_api.projections.arrays import insert_rows

# Built once per dialect: compiling the statement cost more than running it for a batch.
_INSERTS: dict[str, Any] = {}


def record_processed(
    session: Session, keys: Sequence[str], consumer: str, now: datetime
) -> set[str]:
    """Insert keys into processed_events (skipping those there); return the keys that were new.

    One cached statement: on PostgreSQL arrays (arrays.insert_rows), on SQLite an executemany
    (multi-row VALUES through SQLAlchemy's insertmanyvalues); a multi-row .values() was compiled
    again for every batch. Callers pass the
    keys sorted, one key order everywhere: concurrent batches never deadlock.
    """
    if not keys:
        return set()
    dialect = session.get_bind().dialect.name
    rows = [{"event_id": k, "consumer": consumer, "processed_at": now} for k in keys]
    table = cast(Table, ProcessedEvent.__table__)  # type: ignore[attr-defined]
    if dialect == "postgresql":
        return set(
            insert_rows(
                session,
                table,
                ("event_id", "consumer", "processed_at"),
                rows,
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            ).scalars()
        )
    statement = _INSERTS.get(dialect)
    if statement is None:
        statement = _INSERTS[dialect] = (
            sqlite_insert(table)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(table.c.event_id)
        )
    return set(session.execute(statement, rows).scalars())
