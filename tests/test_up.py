"""`tonerwatch up` as a newcomer runs it: embedded NATS + SQLite, all five services, the demo fleet, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tonerwatch_shared.embedded import free_tcp_port

PASSWORD = "correct-horse-battery"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


@pytest.fixture
def system(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    port = free_tcp_port()
    data_dir = tmp_path / "data"
    args = getattr(request, "param", [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    env["TONERWATCH_ADMIN_PASSWORD"] = PASSWORD
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tonerwatch", "up", "--data-dir", str(data_dir), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        banner = ""
        assert proc.stdout is not None
        while "Press Ctrl-C" not in banner:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"tonerwatch up exited early: {(tmp_path / 'up.log').read_text()[-3000:]}")
            banner += line
            assert time.monotonic() < deadline, "tonerwatch up did not come up in 90 s"
        assert url in banner
        yield proc, url, data_dir
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _token(url: str) -> dict[str, str]:
    resp = httpx.post(f"{url}/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}, timeout=10)
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def test_up_runs_every_service_on_embedded_defaults_and_stops_cleanly(
    system: tuple[subprocess.Popen[str], str, Path],
) -> None:
    proc, url, data_dir = system
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    assert httpx.get(f"{url}/api/v1/printers", headers=_token(url), timeout=5).status_code == 200
    assert (data_dir / "tonerwatch.db").exists(), "SQLite is the embedded default"
    assert any((data_dir / "nats").iterdir()), "the embedded nats-server keeps its store in the data dir"
    assert _processes_mentioning(str(data_dir / "nats")), "embedded nats-server runs"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    lines = [json.loads(line) for line in (data_dir.parent / "up.log").read_text().splitlines() if line.startswith("{")]
    services = {line["service"] for line in lines}
    assert {"api", "poller", "alerter", "discovery", "syncer"} <= services, "every line names its own service"
    time.sleep(0.5)
    assert _processes_mentioning(str(data_dir / "nats")) == [], "nothing is left running after Ctrl-C"


@pytest.mark.parametrize("system", [["--demo", "--demo-count", "10"]], indirect=True)
def test_up_demo_shows_a_live_fleet_within_a_minute(system: tuple[subprocess.Popen[str], str, Path]) -> None:
    _proc, url, _data_dir = system
    headers = _token(url)
    deadline = time.monotonic() + 60
    with_supplies: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        printers = httpx.get(f"{url}/api/v1/printers", params={"limit": 100}, headers=headers, timeout=10).json()["items"]
        with_supplies = [p for p in printers if p.get("supplies")]
        if len(printers) == 10 and len(with_supplies) >= 8:
            break
        time.sleep(1)
    assert len(with_supplies) >= 8, f"only {len(with_supplies)} demo printers reported supplies within a minute"
    page = httpx.get(f"{url}/", headers=headers, timeout=10, follow_redirects=True)
    assert page.status_code == 200
