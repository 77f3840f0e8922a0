"""Database set-up: migrations, first-run bootstrap (tenant, site, admin) and thread-offloaded sessions."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.db.models import Site, Tenant, User
from tonerwatch_api.db.schema import MIGRATIONS as MIGRATIONS  # where tests and tools look
from tonerwatch_api.db.schema import migration_lock, upgrade_to_head
from tonerwatch_api.security import Role, generate_password, hash_password

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
ADMIN_USERNAME = "admin"

T = TypeVar("T")


def upgrade(engine: Engine, lock_timeout_s: float = 300.0) -> None:
    """Bring the schema to the newest migration (on PostgreSQL under the migration advisory lock)."""
    upgrade_to_head(engine, lock_timeout_s)


def in_tx(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Return fn(session) run in one transaction (committed when fn returns, rolled back on error)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return fn(session)


async def run_tx(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Return fn(session) run in one transaction in a worker thread (the engine is synchronous)."""
    return await asyncio.to_thread(in_tx, engine, fn)


def read_tx(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Return fn(session) run in one read-only snapshot: every query sees what the first one saw.

    A page built from several queries otherwise mixes states: pysqlite sends no BEGIN before a
    SELECT (each SELECT is a snapshot of its own) and PostgreSQL's READ COMMITTED gives each
    statement the rows committed when it starts, so a page rendered while a batch of readings
    committed showed the counters after it and the supplies before it. fn must not write.
    """
    with Session(engine, expire_on_commit=False) as session, session.begin():
        if engine.dialect.name == "sqlite":
            # Only here, not engine-wide (SQLAlchemy's pysqlite recipe): a writer's transaction
            # that read first would then hold a WAL snapshot that SQLite refuses to turn into a
            # write once another connection has committed (SQLITE_BUSY_SNAPSHOT, at once, past
            # any busy timeout), and only the consumers' writes share run_write_tx's lock. A
            # reader's snapshot never blocks the writer in WAL mode, nor waits for it.
            session.connection().exec_driver_sql("BEGIN")
        elif engine.dialect.name == "postgresql":
            # Set on the connection before its BEGIN; a read-only transaction at REPEATABLE READ
            # never fails to serialize, and the pool resets both when the connection returns.
            session.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ",
                    "postgresql_readonly": True,
                }
            )
        return fn(session)


async def run_read_tx(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Return read_tx(engine, fn) run in a worker thread: for pages and API reads."""
    return await asyncio.to_thread(read_tx, engine, fn)


# SQLite has one writer at a time. Writers in one process wait for each other on a lock (woken
# the moment it is free) rather than in SQLite's busy handler, which sleeps in steps of up to
# 100 ms and, when a transaction that read first cannot take the write lock, fails at once: a
# failed batch of readings is then applied one by one.
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_WRITERS_GUARD = threading.Lock()


def _writer_lock(engine: Engine) -> threading.Lock | None:
    if engine.dialect.name != "sqlite":
        return None
    with _WRITERS_GUARD:
        lock = _SQLITE_WRITERS.get(engine)
        if lock is None:
            lock = _SQLITE_WRITERS[engine] = threading.Lock()
        return lock


def write_tx(engine: Engine, fn: Callable[[Session], T]) -> T:
    """in_tx for a writer: on SQLite one writer of this process at a time (see _SQLITE_WRITERS)."""
    lock = _writer_lock(engine)
    if lock is None:
        return in_tx(engine, fn)
    with lock:
        return in_tx(engine, fn)


async def run_write_tx(engine: Engine, fn: Callable[[Session], T]) -> T:
    """run_tx for the consumers' writes (projections, upkeep): see write_tx."""
    return await asyncio.to_thread(write_tx, engine, fn)


def ping(engine: Engine) -> None:
    """Raise when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def ensure_tenant(session: Session, tenant_id: str, name: str | None = None) -> Tenant:
    """Return the tenant, creating it if missing."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        tenant = Tenant(id=tenant_id, name=name or tenant_id)
        session.add(tenant)
        session.flush()
    return tenant


def ensure_site(
    session: Session, site_id: str, tenant_id: str = DEFAULT_TENANT, name: str | None = None
) -> Site:
    """Return the site, creating it (and its tenant) if missing."""
    site = session.get(Site, site_id)
    if site is None:
        ensure_tenant(session, tenant_id)
        site = Site(id=site_id, tenant_id=tenant_id, name=name or site_id)
        session.add(site)
        session.flush()
    return site


def create_user(
    session: Session, username: str, password: str, role: Role, tenant_id: str = DEFAULT_TENANT
) -> User:
    """Return a new user with an argon2 password hash."""
    ensure_tenant(session, tenant_id)
    user = User(
        username=username, password_hash=hash_password(password), role=role, tenant_id=tenant_id
    )
    session.add(user)
    session.flush()
    return user


def ensure_admin(engine: Engine, password: str | None) -> str | None:
    """Create user 'admin' if missing; return the generated password when one was made, else None.

    An existing admin is left alone (its password is not reset from the environment).
    """

    def work(session: Session) -> str | None:
        existing = session.exec(select(User).where(User.username == ADMIN_USERNAME)).first()
        if existing is not None:
            return None
        generated = None if password else generate_password()
        create_user(session, ADMIN_USERNAME, password or generated or "", "provider")
        log.info("created user %s", ADMIN_USERNAME)
        return generated

    return in_tx(engine, work)


def ensure_default_site(engine: Engine, site_id: str) -> None:
    """Create the default tenant and site if missing."""
    in_tx(engine, lambda s: ensure_site(s, site_id, DEFAULT_TENANT, name=site_id))


def bootstrap(
    engine: Engine, site_id: str, admin_password: str | None, lock_timeout_s: float = 300.0
) -> str | None:
    """Create the default site and the admin if missing; return the admin's generated password, if one was made.

    Under the migration lock: replicas starting together would otherwise insert the same tenant.
    """
    with migration_lock(engine, lock_timeout_s):
        ensure_default_site(engine, site_id)
        return ensure_admin(engine, admin_password)


def database_probe(engine: Engine) -> Callable[[], Awaitable[None]]:
    """Return a probe that raises while the database does not answer (pauses the consumers)."""

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def probe() -> None:
        await asyncio.to_thread(ping)

    return probe
