"""processed_events, the record of what each projection applied: many keys in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from tonerwatch_api.db.models import ProcessedEvent

# Built once per dialect: compiling the statement cost more than running it for a batch.
_INSERTS: dict[str, Any] = {}


def record_processed(
    session: Session, keys: Sequence[str], consumer: str, now: datetime
) -> set[str]:
    """Insert keys into processed_events (skipping those there); return the keys that were new.

    One cached statement sent as an executemany (multi-row VALUES through SQLAlchemy's
    insertmanyvalues): a multi-row .values() was compiled again for every batch. Callers pass the
    keys sorted, one key order everywhere: concurrent batches never deadlock.
    """
    if not keys:
        return set()
    dialect = session.get_bind().dialect.name
    statement = _INSERTS.get(dialect)
    if statement is None:
        table = cast(Table, ProcessedEvent.__table__)  # type: ignore[attr-defined]
        insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
        statement = _INSERTS[dialect] = insert.on_conflict_do_nothing(
            index_elements=["event_id"]
        ).returning(table.c.event_id)
    rows = [{"event_id": k, "consumer": consumer, "processed_at": now} for k in keys]
    return set(session.execute(statement, rows).scalars())
