"""Faults injected on purpose into real processes; every test counts what went in and came out.

The figures of each run are in docs/reliability.md. PostgreSQL is cut through a TCP relay this
test controls (never the shared server itself); NATS, when killed, is a server of our own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.storage import make_engine
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import drop_streams_sync
from tonerwatch_shared.testing.relay import TcpRelay

pytestmark = pytest.mark.timeout(180)

ADMIN_PW = "faults-admin-password"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    env.update(extra)
    return env


@pytest.fixture
def pg_schema(database_url: str) -> Iterator[str]:
    """Return a fresh schema on the shared PostgreSQL (dropped after)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def pg_relay(database_url: str) -> Iterator[TcpRelay]:
    """Return a relay in front of the shared PostgreSQL that the test may cut."""
    url = make_url(database_url)
    with TcpRelay(url.host or "127.0.0.1", url.port or 5432) as relay:
        yield relay


def relayed_url(database_url: str, relay: TcpRelay, schema: str) -> str:
    """Return database_url through relay, with schema as search_path."""
    url = make_url(database_url).set(host="127.0.0.1", port=relay.port)
    plain = url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
    sep = "&" if "?" in plain else "?"
    return f"{plain}{sep}options=-csearch_path%3D{schema}"


def _serve_api(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tonerwatch", "serve", "api"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=env,
    )


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None


def _wait(check: object, timeout_s: float, what: str, proc: subprocess.Popen[bytes]) -> object:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the process ended ({proc.returncode}) waiting for {what}"
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s}s")


def test_api_started_while_its_database_is_down_waits_not_ready_then_serves(
    tmp_path: Path, database_url: str, nats_url: str, pg_schema: str, pg_relay: TcpRelay
) -> None:
    """Injected: PostgreSQL unreachable at start for 20 schema checks. Out: alive, 503 naming
    the database, no traceback, no exit; ready and serving once it answers."""
    pg_relay.cut()
    port = free_tcp_port()
    tag = uuid.uuid4().hex[:8]
    log = tmp_path / "api.log"
    proc = _serve_api(
        _env(
            TONERWATCH_DATABASE_URL=relayed_url(database_url, pg_relay, pg_schema),
            TONERWATCH_NATS_URL=nats_url,
            TONERWATCH_SUBJECT_ROOT=f"f{tag}",
            TONERWATCH_STREAM_PREFIX=f"F{tag}",
            TONERWATCH_PORT=str(port),
            TONERWATCH_ADMIN_PASSWORD=ADMIN_PW,
            TONERWATCH_SCHEMA_CHECK_INTERVAL_S="0.25",
        ),
        log,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def not_ready() -> httpx.Response | None:
            r = _get(f"{base}/readyz")
            return r if r is not None and "database" in r.text else None

        ready = _wait(not_ready, 60, "/readyz naming the database", proc)
        assert isinstance(ready, httpx.Response)
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False and body["database"].startswith("unreachable"), body
        assert body["nats"] == "ok"
        health = _get(f"{base}/healthz")
        assert health is not None and health.status_code == 200
        # Far longer than a start-up retry: still waiting, still alive.
        refused = pg_relay.connections
        time.sleep(5)
        assert proc.poll() is None
        r = _get(f"{base}/readyz")
        assert r is not None and r.status_code == 503
        assert pg_relay.connections == refused  # nothing got through the cut

        pg_relay.restore()

        def is_ready() -> bool:
            r = _get(f"{base}/readyz")
            return r is not None and r.status_code == 200

        _wait(is_ready, 60, "ready after the database came back", proc)
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "admin", "password": ADMIN_PW},
            timeout=10,
        )
        assert token.status_code == 200, token.text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drop_streams_sync(nats_url, Subjects(f"f{tag}", f"F{tag}"))
    err = log.read_text()
    assert "Traceback" not in err, err[-3000:]
    assert "database unreachable, not ready until it answers" in err
