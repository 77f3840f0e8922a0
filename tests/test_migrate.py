"""Migrations as their own step: `tonerwatch migrate` on real PostgreSQL, the advisory lock, and an api
started with TONERWATCH_MIGRATE_ON_START=false waiting (not ready) until the schema is at head.

Each test works in its own PostgreSQL schema (pg_engine); the lock key includes the schema, so tests
holding the lock never delay another test's migrations on the same server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from tonerwatch_api import service as api
from tonerwatch_api.db.metadata import api_metadata
from tonerwatch_api.db.schema import MIGRATIONS, migration_lock_key
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.storage import make_engine, migrate
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import drop_streams_sync, eventually

# The api's tables at head, alembic_version_api included (test_migrations checks they match the models).
HEAD_TABLES = len(api_metadata().tables) + 1


def tonerwatch(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.Popen[str]:
    """Start `tonerwatch args` with only the given TONERWATCH_* settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "tonerwatch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base, "TONERWATCH_LOG_LEVEL": "INFO", **env},
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    """Return (exit code, stdout, stderr) of proc once it ends (killed after timeout)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def current_schema(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT current_schema()")).scalar_one())


def schema_url(database_url: str, schema: str) -> str:
    """Return database_url with libpq's search_path option, as an operator could configure it."""
    sep = "&" if "?" in database_url else "?"
    return f"{database_url}{sep}options=-csearch_path%3D{schema}"


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version_api"))]


def scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def head() -> str:
    return str(scripts().get_current_head())


def previous() -> str:
    """Return the revision before head: the schema of the previous release."""
    down = scripts().get_revision(head()).down_revision
    assert isinstance(down, str)
    return down


@contextmanager
def holding_migration_lock(engine: Engine) -> Iterator[Connection]:
    """Hold the schema's migration lock from another session, as a stuck migration would."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
        key = migration_lock_key(database, schema)
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield conn
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


def waiting_for_lock(holder: Connection) -> int:
    """Return how many sessions wait for the advisory lock holder holds."""
    return int(
        holder.execute(
            text(
                "SELECT count(*) FROM pg_locks w JOIN pg_locks h USING (locktype, classid, objid, objsubid) "
                "WHERE w.locktype = 'advisory' AND NOT w.granted AND h.granted "
                "AND h.pid = pg_backend_pid()"
            )
        ).scalar_one()
    )


@pytest.fixture
def pg_url(pg_engine: Engine, database_url: str) -> str:
    """Return a URL whose connections land in this test's empty schema."""
    return schema_url(database_url, current_schema(pg_engine))


def test_two_migrates_at_once_on_an_empty_schema_both_succeed_and_migrate_once(
    pg_engine: Engine, pg_url: str
) -> None:
    env = {"TONERWATCH_DATABASE_URL": pg_url}
    # Held while both start, so both are waiting on the lock together when it is released:
    # without the lock their CREATE TABLEs race (one dies with a unique violation on pg_type).
    with holding_migration_lock(pg_engine) as holder:
        procs = [tonerwatch("migrate", env=env) for _ in range(2)]
        deadline = time.monotonic() + 90
        while waiting_for_lock(holder) < 2 and time.monotonic() < deadline:
            assert [p.poll() for p in procs] == [None, None]
            time.sleep(0.2)
        assert waiting_for_lock(holder) == 2  # both blocked on the lock, neither migrating
        assert "alembic_version_api" not in inspect(pg_engine).get_table_names()
    results = [finish(p) for p in procs]
    assert [rc for rc, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    # One of them ran the migrations; the other found the schema at head and did nothing.
    ran = sorted(err.count("Running upgrade") for _, _, err in results)
    assert ran == [0, len(list(scripts().walk_revisions()))]
    assert versions(pg_engine) == [head()]
    assert len(inspect(pg_engine).get_table_names()) == HEAD_TABLES


def test_migrate_twice_changes_nothing_the_second_time(pg_engine: Engine, pg_url: str) -> None:
    env = {"TONERWATCH_DATABASE_URL": pg_url}
    rc, out, err = finish(tonerwatch("migrate", env=env))
    assert rc == 0 and "newest version" in out and "Running upgrade" in err
    assert "127.0.0.1" in out  # which database was migrated
    rc, out, err = finish(tonerwatch("migrate", env=env))
    assert rc == 0 and "newest version" in out
    assert "Running upgrade" not in err
    assert versions(pg_engine) == [head()]


def test_migrate_without_a_database_url_migrates_the_sqlite_database_up_uses(
    tmp_path: Path,
) -> None:
    rc, out, err = finish(tonerwatch("migrate", "--data-dir", str(tmp_path), env={}))
    assert rc == 0, err[-2000:]
    db = tmp_path / "tonerwatch.db"
    assert str(db.resolve()) in out  # named, so a Job missing its URL cannot pass unnoticed
    engine = make_engine(f"sqlite:///{db}")
    try:
        assert versions(engine) == [head()]
    finally:
        engine.dispose()


def test_unreachable_database_exits_2_in_one_line_without_the_password() -> None:
    url = f"postgresql://tonerwatch:s3cret-pw@127.0.0.1:{free_tcp_port()}/tonerwatch"
    rc, out, err = finish(tonerwatch("migrate", env={"TONERWATCH_DATABASE_URL": url}), 60)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("tonerwatch: cannot reach the database")
    assert "Traceback" not in err and "s3cret-pw" not in err and out == ""


def test_serve_api_with_an_unreachable_database_waits_without_traceback_or_password(
    nats_url: str, tmp_path: Path
) -> None:
    """The api waits for its database, not ready (tests/test_faults.py: until it answers)."""
    tag = uuid.uuid4().hex[:8]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")},
        "TONERWATCH_DATABASE_URL": f"postgresql://tw:s3cret-pw@127.0.0.1:{free_tcp_port()}/tw",
        "TONERWATCH_NATS_URL": nats_url,
        "TONERWATCH_SUBJECT_ROOT": f"m{tag}",
        "TONERWATCH_STREAM_PREFIX": f"M{tag}",
        "TONERWATCH_PORT": str(free_tcp_port()),
        "TONERWATCH_SCHEMA_CHECK_INTERVAL_S": "0.5",
    }
    log = tmp_path / "api.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tonerwatch", "serve", "api"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=env,
        )
    waiting = "database unreachable, not ready until it answers"
    try:
        deadline = time.monotonic() + 60
        while waiting not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(3)  # several more checks: still waiting, still alive
        alive = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drop_streams_sync(nats_url, Subjects(f"m{tag}", f"M{tag}"))
    err = log.read_text()
    assert alive and rc == 0, err[-2000:]
    assert "Traceback" not in err and "s3cret-pw" not in err
    assert err.count(waiting) == 1, err[-2000:]


def test_a_stuck_migration_lock_ends_migrate_with_exit_2_naming_the_holder(
    pg_engine: Engine, pg_url: str
) -> None:
    env = {"TONERWATCH_DATABASE_URL": pg_url, "TONERWATCH_MIGRATE_LOCK_TIMEOUT_S": "1"}
    with holding_migration_lock(pg_engine) as holder:
        pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
        rc, _, err = finish(tonerwatch("migrate", env=env), 60)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "migration lock" in err and f"pid {pid}" in err
    assert "alembic_version_api" not in inspect(pg_engine).get_table_names()


def test_the_lock_key_is_scoped_to_database_and_schema(
    pg_engine: Engine, database_url: str
) -> None:
    key = migration_lock_key
    assert key("tonerwatch", "public") == key("tonerwatch", "public")
    assert key("tonerwatch", "public") != key("tonerwatch", "tenant2")
    assert key("tonerwatch", "public") != key("staging", "public")
    assert -(2**63) <= key("tonerwatch", "public") < 2**63
    # Another installation's migration holding its lock does not delay this one.
    other = make_engine(database_url)
    other_schema = f"{current_schema(pg_engine)}_other"
    try:
        with other.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{other_schema}"'))
        other_engine = make_engine(database_url, schema=other_schema)
        with holding_migration_lock(other_engine):
            started = time.monotonic()
            settings = api.Settings(
                database_url=schema_url(database_url, current_schema(pg_engine)),
                migrate_lock_timeout_s=5,
            )
            api.migrate(settings)
            assert time.monotonic() - started < 5
        other_engine.dispose()
        assert versions(pg_engine) == [head()]
    finally:
        with other.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{other_schema}" CASCADE'))
        other.dispose()


async def test_two_api_replicas_started_together_on_an_empty_database_both_come_up(
    pg_engine: Engine, pg_url: str, nats_url: str, bus: Bus
) -> None:
    ports = [free_tcp_port(), free_tcp_port()]
    stop = asyncio.Event()
    readies = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(
            api.run(
                api.Settings(
                    nats_url=nats_url,
                    database_url=pg_url,
                    subject_root=bus.subjects.root,
                    stream_prefix=bus.subjects.stream_prefix,
                    port=port,
                    instance=f"replica-{i}",
                    admin_password="replica-admin-pw",
                ),
                stop=stop,
                ready=ready,
            )
        )
        for i, (port, ready) in enumerate(zip(ports, readies, strict=True))
    ]
    try:
        both_ready = asyncio.gather(*(r.wait() for r in readies))
        done, _ = await asyncio.wait(
            [both_ready, *tasks], timeout=60, return_when=asyncio.FIRST_COMPLETED
        )
        # A replica that crashed (unique violation on pg_type or on the default tenant) ends first.
        assert both_ready in done, [t.exception() for t in tasks if t.done()]
        async with httpx.AsyncClient(timeout=10) as c:
            for port in ports:
                assert (await c.get(f"http://127.0.0.1:{port}/readyz")).json()["ready"] is True
    finally:
        stop.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    assert results == [None, None]
    assert versions(pg_engine) == [head()]


async def test_api_without_migrate_on_start_waits_not_ready_until_migrate_has_run(
    pg_engine: Engine, pg_url: str, nats_url: str, bus: Bus
) -> None:
    # The database of the previous release: one migration behind.
    behind = previous()
    migrate(pg_engine, MIGRATIONS, behind)
    port = free_tcp_port()
    settings = api.Settings(
        nats_url=nats_url,
        database_url=pg_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        port=port,
        admin_password="waiting-admin-pw",
        migrate_on_start=False,
        schema_check_interval_s=0.2,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(api.run(settings, stop=stop, ready=ready))
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:

            async def says_pending() -> bool:
                try:
                    r = await c.get("/readyz")
                except httpx.TransportError:
                    return False
                return (
                    r.status_code == 503 and r.json()["database"] == f"migrations pending: {head()}"
                )

            await eventually(says_pending, timeout_s=30)
            assert (await c.get("/healthz")).status_code == 200  # alive: not restarted meanwhile
            await asyncio.sleep(1)
            assert not ready.is_set() and versions(pg_engine) == [behind]  # schema left alone

            proc = tonerwatch("migrate", env={"TONERWATCH_DATABASE_URL": pg_url})
            rc, _, err = await asyncio.to_thread(finish, proc)
            assert rc == 0, err[-2000:]

            await asyncio.wait_for(ready.wait(), 30)
            r = await c.get("/readyz")
            assert r.status_code == 200 and r.json()["database"] == "ok"
            token = await c.post(
                "/api/v1/auth/token", data={"username": "admin", "password": "waiting-admin-pw"}
            )
            assert token.status_code == 200  # bootstrapped once migrated: the admin exists
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
