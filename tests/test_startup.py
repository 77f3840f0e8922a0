"""Start-up and shutdown as ops see them: real `tonerwatch` processes, NATS down, ports taken."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tonerwatch_shared.embedded import free_tcp_port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    env.update(extra)
    return env


@pytest.fixture
def held_port() -> Iterator[int]:
    """Return a loopback port another process (this test) is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def _tonerwatch(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tonerwatch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


@pytest.mark.parametrize("service", ["poller", "alerter", "syncer", "discovery", "api"])
def test_service_waiting_for_nats_is_live_not_ready_and_stops_on_sigterm(
    tmp_path: Path, service: str
) -> None:
    ops = free_tcp_port()
    closed = free_tcp_port()  # nothing listens here: NATS is "down"
    # The api answers /healthz and /readyz on its own web port (its database: SQLite, migrated first).
    own = (
        {"TONERWATCH_PORT": str(ops), "TONERWATCH_DATA_DIR": str(tmp_path / "data")}
        if service == "api"
        else {"TONERWATCH_OPS_PORT": str(ops)}
    )
    proc = _tonerwatch(
        "serve",
        service,
        env=_env(
            TONERWATCH_NATS_URL=f"nats://127.0.0.1:{closed}",
            TONERWATCH_NATS_CONNECT_TIMEOUT_S="1",
            **own,
        ),
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        health = None
        while health is None:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no /healthz within 30 s"
            try:
                health = httpx.get(f"http://127.0.0.1:{ops}/healthz", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.1)
        assert health.status_code == 200  # liveness: do not restart a pod during a NATS outage
        ready = httpx.get(f"http://127.0.0.1:{ops}/readyz", timeout=5)
        assert ready.status_code == 503
        assert "NATS not connected" in ready.text
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0
    assert took < 5, f"took {took:.1f}s to stop while waiting for NATS"


def test_serve_with_its_ops_port_taken_exits_2_naming_the_port(
    tmp_path: Path, held_port: int
) -> None:
    proc = _tonerwatch(
        "serve",
        "poller",
        env=_env(
            TONERWATCH_NATS_URL=f"nats://127.0.0.1:{free_tcp_port()}",
            TONERWATCH_OPS_PORT=str(held_port),
        ),
        cwd=tmp_path,
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"127.0.0.1:{held_port}" in lines[0] and "ops port" in lines[0]
    assert "TONERWATCH_OPS_PORT" in lines[0]


def test_up_with_its_web_port_taken_exits_2_at_once(tmp_path: Path, held_port: int) -> None:
    proc = _tonerwatch(
        "up",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(held_port),
        env=_env(TONERWATCH_ADMIN_PASSWORD="port-test-password"),
        cwd=tmp_path,
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"127.0.0.1:{held_port}" in lines[0] and "web/API port" in lines[0]
    # Refused before anything started: no embedded NATS was left behind.
    assert not (tmp_path / "data" / "nats").exists()


def test_up_with_the_ops_port_taken_exits_2_naming_it(tmp_path: Path, held_port: int) -> None:
    proc = _tonerwatch(
        "up",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(free_tcp_port()),
        env=_env(
            TONERWATCH_ADMIN_PASSWORD="port-test-password", TONERWATCH_OPS_PORT=str(held_port)
        ),
        cwd=tmp_path,
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0, err
    assert f"ops port 127.0.0.1:{held_port}" in err


def test_up_serves_the_ops_port_once_with_stream_fill_and_overdue_polls(tmp_path: Path) -> None:
    ops, web = free_tcp_port(), free_tcp_port()
    data = tmp_path / "data"
    proc = _tonerwatch(
        "up",
        "--data-dir",
        str(data),
        "--port",
        str(web),
        env=_env(TONERWATCH_ADMIN_PASSWORD="ops-port-password", TONERWATCH_OPS_PORT=str(ops)),
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        banner = ""
        while "Press Ctrl-C" not in banner:
            line = proc.stdout.readline()
            assert line, f"up exited: {proc.communicate()[1][-2000:]}"
            banner += line
            assert time.monotonic() < deadline, "up not ready in 90 s"
        metrics = httpx.get(f"http://127.0.0.1:{ops}/metrics", timeout=10).text
        assert "tonerwatch_poll_jobs_overdue" in metrics
        assert 'tonerwatch_stream_fill_ratio{stream="TW_EVENTS"}' in metrics
        assert httpx.get(f"http://127.0.0.1:{ops}/readyz", timeout=10).status_code == 200
        # The embedded server runs from its config file: fsync before every ack.
        config = (data / "nats" / "nats-server.conf").read_text()
        assert "sync_interval: always" in config and "max_file_store" in config
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


# Sends SIGTERM to its own process the moment `tonerwatch serve` starts importing its command
# (tonerwatch.cli: seconds of imports on a busy machine), then runs `python -m tonerwatch serve api`.
SIGTERM_WHILE_LOADING = """
import importlib.abc, os, runpy, signal, sys

class Kick(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tonerwatch.cli":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, Kick())
sys.argv = ["tonerwatch", "serve", "api"]
runpy.run_module("tonerwatch", run_name="__main__")
"""


def test_sigterm_while_serve_is_still_loading_is_a_clean_stop(tmp_path: Path) -> None:
    """A SIGTERM while `serve` is still importing (nothing started) exits 0 without a
    traceback, instead of the process dying by the signal."""
    run = subprocess.run(
        [sys.executable, "-c", SIGTERM_WHILE_LOADING],
        capture_output=True,
        text=True,
        env=_env(
            TONERWATCH_NATS_URL=f"nats://127.0.0.1:{free_tcp_port()}",
            TONERWATCH_PORT=str(free_tcp_port()),
            TONERWATCH_DATA_DIR=str(tmp_path / "data"),
        ),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
