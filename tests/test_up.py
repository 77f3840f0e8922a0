"""`tonerwatch up` as a newcomer runs it: embedded NATS + SQLite, all five services, the demo fleet, clean Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import nats
import nats.errors
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
def system(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    port = free_tcp_port()
    data_dir = tmp_path / "data"
    args = getattr(request, "param", [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    env["TONERWATCH_ADMIN_PASSWORD"] = PASSWORD
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tonerwatch",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
        # Its own process group, like a shell job: Ctrl-C on a terminal signals the whole group.
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        banner = ""
        assert proc.stdout is not None
        while "Press Ctrl-C" not in banner:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(
                    f"tonerwatch up exited early: {(tmp_path / 'up.log').read_text()[-3000:]}"
                )
            banner += line
            assert time.monotonic() < deadline, "tonerwatch up did not come up in 90 s"
        assert url in banner
        yield proc, url, data_dir
    finally:
        if proc.poll() is None:
            ctrl_c(proc)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def ctrl_c(proc: subprocess.Popen[str]) -> None:
    """Press Ctrl-C as a terminal does: SIGINT to every process of the foreground group."""
    os.killpg(proc.pid, signal.SIGINT)


def _token(url: str) -> dict[str, str]:
    resp = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}, timeout=10
    )
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
    assert any((data_dir / "nats").iterdir()), (
        "the embedded nats-server keeps its store in the data dir"
    )
    assert _processes_mentioning(str(data_dir / "nats")), "embedded nats-server runs"
    ctrl_c(proc)
    assert proc.wait(timeout=30) == 0
    lines = [
        json.loads(line)
        for line in (data_dir.parent / "up.log").read_text().splitlines()
        if line.startswith("{")
    ]
    services = {line["service"] for line in lines}
    assert {"api", "poller", "alerter", "discovery", "syncer"} <= services, (
        "every line names its own service"
    )
    # Ctrl-C reached the services, which drained their connections; only then did `up` stop the
    # server (SIGTERM). Had the server taken the Ctrl-C itself, it would have gone first and each
    # service would have logged its lost connection.
    server_log = (data_dir / "nats" / "nats-server.log").read_text()
    assert 'Trapped "terminated" signal' in server_log
    assert 'Trapped "interrupt" signal' not in server_log
    assert [line for line in lines if line["level"] in ("WARNING", "ERROR")] == []
    time.sleep(0.5)
    assert _processes_mentioning(str(data_dir / "nats")) == [], (
        "nothing is left running after Ctrl-C"
    )


@pytest.mark.parametrize("system", [["--demo", "--demo-count", "10"]], indirect=True)
def test_up_demo_shows_a_live_fleet_within_a_minute(
    system: tuple[subprocess.Popen[str], str, Path],
) -> None:
    _proc, url, _data_dir = system
    headers = _token(url)
    deadline = time.monotonic() + 60
    with_supplies: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        printers = httpx.get(
            f"{url}/api/v1/printers", params={"limit": 100}, headers=headers, timeout=10
        ).json()["items"]
        with_supplies = [p for p in printers if p.get("supplies")]
        if len(printers) == 10 and len(with_supplies) >= 8:
            break
        time.sleep(1)
    assert len(with_supplies) >= 8, (
        f"only {len(with_supplies)} demo printers reported supplies within a minute"
    )
    page = httpx.get(f"{url}/", headers=headers, timeout=10, follow_redirects=True)
    assert page.status_code == 200


@pytest.mark.parametrize("system", [["--demo", "--demo-count", "3"]], indirect=True)
def test_up_demo_xerox_c405_shows_three_weeks_of_history_and_a_forecast_at_once(
    system: tuple[subprocess.Popen[str], str, Path],
) -> None:
    proc, url, data_dir = system
    assert proc.stdout is not None
    banner = ""
    while "three weeks of history" not in banner:  # printed once monitoring has started
        line = proc.stdout.readline()
        assert line, f"up exited: {(data_dir.parent / 'up.log').read_text()[-3000:]}"
        banner += line
    assert (data_dir / "demo" / "history-seeded").exists()
    headers = _token(url)
    printers = httpx.get(
        f"{url}/api/v1/printers", params={"limit": 100}, headers=headers, timeout=10
    ).json()["items"]
    assert {p["monitored"] for p in printers} == {True}
    xerox = next(p for p in printers if p["name"] == "c405-02")
    since = {"since": "2000-01-01T00:00:00Z", "resolution": "raw"}
    readings = httpx.get(
        f"{url}/api/v1/printers/{xerox['id']}/readings", params=since, headers=headers, timeout=10
    ).json()["items"]
    times = sorted(datetime.fromisoformat(r["occurred_at"]) for r in readings)
    assert times[-1] - times[0] > timedelta(days=14)
    black = [r["percent"] for r in readings if r["supply_index"] == "1.1"]
    assert black[0] > black[-1], "the black toner was fuller three weeks ago"
    counters = httpx.get(
        f"{url}/api/v1/printers/{xerox['id']}/counters", params=since, headers=headers, timeout=10
    ).json()["items"]
    # The seeded ones split mono and colour; live polls of this model give the lifetime count only.
    split = [c for c in counters if c["mono_pages"] is not None and c["colour_pages"] is not None]
    assert len(split) >= 80
    assert split[0]["mono_pages"] < split[-1]["mono_pages"]
    assert split[0]["colour_pages"] < split[-1]["colour_pages"]
    detail = httpx.get(f"{url}/api/v1/printers/{xerox['id']}", headers=headers, timeout=10).json()
    assert [s for s in detail["supplies"] if s.get("days_to_empty") is not None]


def _embedded_nats_url(log: Path) -> str:
    for line in log.read_text().splitlines():
        if line.startswith("{") and "embedded nats-server on " in line:
            return str(json.loads(line)["message"].split()[3])
    raise AssertionError("up did not log its embedded nats-server")


def test_up_embedded_nats_refuses_strangers_and_each_service_has_its_own_user(
    system: tuple[subprocess.Popen[str], str, Path],
) -> None:
    """Each service connected as its own user (passwords 0600 in the data dir); no one else gets in."""
    _proc, _url, data_dir = system
    users_file = data_dir / "nats-users.json"
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "nats" / "nats-server.conf").stat().st_mode) == 0o600
    # No TONERWATCH_SECRET_KEY given: up made the key sealing SNMP secrets, owner-only.
    assert stat.S_IMODE((data_dir / "secret-key").stat().st_mode) == 0o600
    assert len((data_dir / "secret-key").read_text().strip()) >= 32
    passwords = json.loads(users_file.read_text())["users"]
    assert set(passwords) == {"api", "poller", "alerter", "discovery", "syncer"}
    assert len(set(passwords.values())) == 5 and all(len(p) >= 40 for p in passwords.values())
    nats_url = _embedded_nats_url(data_dir.parent / "up.log")
    # The server's own list of connections: every service is there under its user, nobody else.
    monitor = httpx.get(_monitoring_url(data_dir.parent / "up.log") + "/connz?auth=true", timeout=5)
    users = sorted(c.get("authorized_user") for c in monitor.json()["connections"])
    assert users == ["alerter", "api", "discovery", "poller", "syncer"]

    async def probe() -> tuple[list[str], list[str]]:
        refused = []
        for user, password in ((None, None), ("poller", "guess"), ("admin", passwords["api"])):
            try:
                nc = await nats.connect(
                    nats_url,
                    user=user,
                    password=password,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    connect_timeout=2,
                )
            except (nats.errors.Error, OSError):
                refused.append(str(user))
            else:
                await nc.close()
        # The poller's own password works, for the poller's subjects only.
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        nc = await nats.connect(
            nats_url,
            user="poller",
            password=passwords["poller"],
            inbox_prefix="_INBOX.poller",
            allow_reconnect=False,
            connect_timeout=2,
            error_cb=on_error,
        )
        try:
            await nc.publish("tw.default.printer.configured.p-1", b"{}")
            await nc.flush(timeout=2)
            await asyncio.sleep(0.3)  # a violation comes back as an asynchronous -ERR
        finally:
            await nc.close()
        return refused, errors

    refused, errors = asyncio.run(probe())
    assert refused == ["None", "poller", "admin"]
    assert any("permissions violation" in e and "printer.configured" in e for e in errors)


def _monitoring_url(log: Path) -> str:
    for line in log.read_text().splitlines():
        if line.startswith("{") and "embedded nats-server on " in line:
            message = json.loads(line)["message"]
            return str(message.split("monitoring ")[1].split("/varz")[0])
    raise AssertionError("up did not log its embedded nats-server")


def test_up_migrates_a_new_database_in_a_child_so_alembic_never_loads_in_up(
    tmp_path: Path,
) -> None:
    # Alembic brings Mako and Pygments (~8 MB) that `up` never needs after the migration.
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tonerwatch.services import service_module\n"
        "from tonerwatch.up import migrate_in_child\n"
        "from tonerwatch_shared.settings import load_settings\n"
        "api = service_module('api')\n"
        f"settings = load_settings(api.Settings, data_dir=Path({str(tmp_path)!r}))\n"
        "before = api.schema_at_head(settings)\n"
        "migrate_in_child(settings)\n"
        "print(before, api.schema_at_head(settings), sorted({'alembic', 'mako'} & set(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "False True []"


def test_up_at_start_has_not_imported_what_only_a_mail_a_webhook_a_websocket_postgresql_or_a_secret_needs(
    tmp_path: Path,
) -> None:
    # Issue 15 (memory): aiosmtplib loads with the first mail, the api serves no websocket, and
    # httpx (with its SSL context and certifi's bundle) loads only for a webhook, a portal
    # (TONERWATCH_SYNC_URL), the demo or `tonerwatch collector`: none is set here. SQLAlchemy's
    # PostgreSQL dialect loads only for a PostgreSQL database (or its DDL): this one is SQLite;
    # cryptography only to seal or open a secret: there is none yet.
    # -X importtime names every module the process imports, until it stops.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    env["TONERWATCH_ADMIN_PASSWORD"] = PASSWORD
    err = (tmp_path / "up.err").open("w")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-X", "importtime", "-m", "tonerwatch", "up"),
            *("--data-dir", str(tmp_path / "data"), "--port", str(free_tcp_port())),
        ],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        banner = ""
        while "Press Ctrl-C" not in banner:
            line = proc.stdout.readline()
            assert line, f"tonerwatch up exited early: {(tmp_path / 'up.err').read_text()[-3000:]}"
            banner += line
        ctrl_c(proc)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        err.close()
    lines = (tmp_path / "up.err").read_text().splitlines()
    imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    assert {"tonerwatch_alerter.channels.mail", "uvicorn.config", "email.parser"} <= imported, (
        "the mail channel and the api did load"
    )
    unneeded = (
        "aiosmtplib",
        "websockets",
        "wsproto",
        "httpx",
        "httpcore",
        "certifi",
        "cryptography",
    )
    assert not {m for m in imported if m.split(".")[0] in unneeded}
    assert not {m for m in imported if m.startswith("sqlalchemy.dialects.postgresql")}


def test_up_limits_mallocs_arenas_unless_malloc_arena_max_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tonerwatch.up import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not limit_malloc_arenas(), "glibc's own setting wins"
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas() == (platform.libc_ver()[0] == "glibc")


def test_up_fixes_mallocs_thresholds_unless_the_environment_or_glibc_tunables_set_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tonerwatch.up import fix_malloc_thresholds

    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.setenv(name, "65536")
        assert not fix_malloc_thresholds(), "glibc's own setting wins"
        monkeypatch.delenv(name)
    for tunable in ("glibc.malloc.mmap_threshold=65536", "glibc.malloc.trim_threshold=65536"):
        monkeypatch.setenv("GLIBC_TUNABLES", f"glibc.malloc.arena_max=2:{tunable}")
        assert not fix_malloc_thresholds(), "glibc's tunables win too"
    monkeypatch.delenv("GLIBC_TUNABLES")
    assert fix_malloc_thresholds() == (platform.libc_ver()[0] == "glibc")
