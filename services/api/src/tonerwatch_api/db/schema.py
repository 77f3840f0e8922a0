"""The api's schema version: migrate to head under a PostgreSQL advisory lock, and what is pending.

Several api replicas (or a migrate Job and an api started with migrations on) may start together on
one database. Alembic's CREATE TABLEs would race (one loses with a unique violation on pg_type), so
on PostgreSQL whoever migrates first takes `pg_advisory_lock(migration_lock_key(...))` on a
connection of its own, migrates in one transaction on another, then unlocks; the others wait, then
find the schema at head and do nothing. The key is scoped to the database and schema, so two
installations on one server never wait for each other. SQLite is one process: no lock.

Alembic (with Mako and Pygments, ~8 MB of a process's memory) is imported only when there is
something to migrate: whether the schema is at head is read from the version table and the
migration files' own `revision` lines (`schema_at_head`), not through Alembic's loader.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from tonerwatch_api.db.metadata import VERSION_TABLE
from tonerwatch_shared.storage import migrate

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Prefix of the text hashed into the lock key; changing it would let an old and a new release
# migrate at once, so it is fixed.
LOCK_NAMESPACE = "tonerwatch.api.migrations"
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires


class DatabaseUnreachable(Exception):
    """The database refused or did not answer the connection; the message is one line."""


class MigrationLockTimeout(Exception):
    """Another process held the migration lock longer than the timeout; the message names it."""


def migration_lock_key(database: str, schema: str) -> int:
    """Return the advisory-lock key of this database and schema: a signed 64-bit hash.

    The first 8 bytes (big-endian, signed) of sha256("tonerwatch.api.migrations/<database>/<schema>").
    """
    digest = hashlib.sha256(f"{LOCK_NAMESPACE}/{database}/{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def upgrade_to_head(engine: Engine, lock_timeout_s: float = 300.0) -> None:
    """Bring the schema to the newest migration; on PostgreSQL under the advisory lock.

    Raises DatabaseUnreachable when no connection can be made, MigrationLockTimeout when another
    process holds the lock for more than lock_timeout_s.
    """
    if schema_at_head(engine):
        return  # nothing to do: Alembic is not even imported
    with migration_lock(engine, lock_timeout_s):
        migrate(engine, MIGRATIONS)


# `revision: str = "0028"`, `down_revision: str | None = "0027"` (a tuple for a merge) at a line's start.
_REVISION_LINE = re.compile(r"^(revision|down_revision)\b[^=\n]*=\s*(.+?)\s*$", re.MULTILINE)


@functools.cache
def head_revisions() -> frozenset[str]:
    """Return the newest revision(s) of the migration files, read from their revision lines."""
    revisions: set[str] = set()
    replaced: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            parsed = ast.literal_eval(value)
            if name == "revision":
                revisions.add(parsed)
            elif isinstance(parsed, str):
                replaced.add(parsed)
            elif parsed:
                replaced.update(parsed)
    return frozenset(revisions - replaced)


def current_revisions(engine: Engine) -> frozenset[str]:
    """Return the revision(s) the database is at (none for an empty database); DatabaseUnreachable if it does not answer."""
    with _connectable(engine) as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return frozenset()
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        return frozenset(str(r) for r in rows)


def schema_at_head(engine: Engine) -> bool:
    """Return whether the database is at the newest migration (read without Alembic)."""
    return current_revisions(engine) == head_revisions()


def pending_migrations(engine: Engine) -> str | None:
    """Return why the schema is not at head (e.g. "migrations pending: 0009, 0010"), or None when it is."""
    if schema_at_head(engine):
        return None
    from alembic.migration import MigrationContext
    from alembic.util import CommandError

    script = _scripts()
    heads = set(script.get_heads())
    with engine.connect() as conn:
        current = set(
            MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}
            ).get_current_heads()
        )
    if current == heads:
        return None
    try:
        behind = [
            rev.revision
            for rev in script.iterate_revisions(tuple(heads), tuple(current) or "base")
            if rev.revision not in current
        ]
    except CommandError:
        # A revision this release does not know: a newer release migrated this database.
        return f"schema at unknown revision {', '.join(sorted(current))} (newer than this release)"
    return f"migrations pending: {', '.join(sorted(behind))}"


def _scripts() -> ScriptDirectory:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def _connectable(engine: Engine) -> Connection:
    """Return a new connection, or raise DatabaseUnreachable in one line."""
    try:
        return engine.connect()
    except (OperationalError, DBAPIError) as exc:
        where = engine.url.render_as_string(hide_password=True)
        first = str(exc.orig or exc).strip().splitlines()
        raise DatabaseUnreachable(
            f"cannot reach the database {where}: {first[0] if first else type(exc).__name__}"
        ) from None


@contextmanager
def migration_lock(engine: Engine, timeout_s: float) -> Iterator[None]:
    """Hold the migration lock of this database and schema (PostgreSQL; SQLite needs none) inside.

    Migrations and the first-run bootstrap (default site, admin) run under it, so replicas starting
    together neither race on CREATE TABLE nor insert the same rows. Raises DatabaseUnreachable or
    MigrationLockTimeout.
    """
    if engine.dialect.name != "postgresql":
        _connectable(engine).close()
        yield
        return
    # Its own connection, in autocommit: a session-level lock outlives the migration's transaction
    # and is released by the server if this process dies.
    conn = _connectable(engine).execution_options(isolation_level="AUTOCOMMIT")
    try:
        database, schema = conn.execute(
            text(
                "SELECT current_database(), "
                "coalesce(current_schema(), current_setting('search_path'))"
            )
        ).one()
        key = migration_lock_key(database, schema)
        conn.execute(
            text("SELECT set_config('lock_timeout', :t, false)"),
            {"t": f"{int(timeout_s * 1000)}ms"},
        )
        try:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            raise MigrationLockTimeout(
                f"another process ({_holder(conn, key)}) has held the migration lock of "
                f"{database}/{schema} for more than {timeout_s:g} s; is a migration stuck? "
                "(set TONERWATCH_MIGRATE_LOCK_TIMEOUT_S)"
            ) from None
        finally:
            # The connection goes back to the pool: later statements must not inherit the timeout.
            conn.execute(text("RESET lock_timeout"))
        log.debug("migration lock %d taken on %s/%s", key, database, schema)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()


def _holder(conn: Connection, key: int) -> str:
    """Return "pid N, application X" of whoever holds the lock key, or "unknown"."""
    # pg_locks splits a bigint advisory key into classid (high 32 bits) and objid (low 32 bits).
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(
        text(
            "SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid = :hi AND l.objid = :lo LIMIT 1"
        ),
        {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF},
    ).first()
    if row is None:
        return "unknown"
    return f"pid {row[0]}, application {row[1] or '?'}"
