"""trigram index for printer search (PostgreSQL)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 13:45:00

Printer search is a case-insensitive substring match in id, name, address, vendor, model,
serial and location. The query (store.printer_search_text) matches one lower()'d expression
joining those columns; on PostgreSQL a GIN trigram index (pg_trgm) on exactly that expression
lets LIKE '%needle%' use the index instead of scanning every printer. Where pg_trgm cannot be
had (not installed, or the role may not create it) the index is skipped with a warning and
search still works, by a scan. SQLite: no index, same expression.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("tonerwatch_api.migrations")

INDEX = "ix_printers_search"
# Must stay the very expression store.printer_search_text() renders, or the planner cannot use
# the index (test_search.py proves it does with EXPLAIN). U+001F between columns: a needle
# without it cannot match across two columns.
SEARCH_TEXT = (
    "lower(coalesce(id, '') || '\x1f' || coalesce(name, '') || '\x1f' || coalesce(address, '')"
    " || '\x1f' || coalesce(vendor, '') || '\x1f' || coalesce(model, '') || '\x1f'"
    " || coalesce(serial, '') || '\x1f' || coalesce(location, ''))"
)


def _trigram_schema(bind: Connection) -> str | None:
    """Return the (quoted) schema holding pg_trgm, creating the extension if needed; None if it cannot."""
    find = sa.text(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
    )
    schema = bind.execute(find).scalar()
    if schema is not None:
        return str(schema)
    # One pg_trgm per database: put it in public, shared by every search_path, rather than in
    # this installation's own schema, whose DROP SCHEMA ... CASCADE would take other schemas'
    # indexes with it. Else the current schema.
    error: Exception | None = None
    for ddl in (
        "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    ):
        try:
            with bind.begin_nested():
                bind.execute(sa.text(ddl))
        except sa.exc.DBAPIError as exc:
            error = exc.orig if exc.orig is not None else exc
            continue
        created = bind.execute(find).scalar()
        if created is not None:
            return str(created)
    log.warning(
        "pg_trgm is not available (%s): printer search works without its index, by a scan",
        str(error).splitlines()[0] if error else "not installed",
    )
    return None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = _trigram_schema(bind)
    if schema is None:
        return
    # fastupdate off: the projections update printer rows all the time, and GIN's pending list
    # (read in full by every search until vacuum merges it) made searches 10x slower and the
    # planner shun the index.
    try:
        with bind.begin_nested():
            bind.execute(
                sa.text(
                    f"CREATE INDEX IF NOT EXISTS {INDEX} ON printers "
                    f"USING gin (({SEARCH_TEXT}) {schema}.gin_trgm_ops) WITH (fastupdate = off)"
                )
            )
    except sa.exc.DBAPIError as exc:
        log.warning(
            "printer search index not created (%s): search works without it, by a scan",
            str(exc.orig if exc.orig is not None else exc).splitlines()[0],
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")
