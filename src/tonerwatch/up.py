"""`tonerwatch up`: every service in one process, on embedded NATS and SQLite unless servers are set."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tonerwatch.services import SERVICES, CliError, service_module
from tonerwatch_shared.bus import BusStopped
from tonerwatch_shared.embedded import EMBEDDED_GO_MEMORY, EmbeddedNats, free_tcp_port
from tonerwatch_shared.lifecycle import PortInUse, ensure_port_free, install_stop_signals
from tonerwatch_shared.logs import current_service
from tonerwatch_shared.nats_users import USERS_FILE, embedded_authorization, embedded_passwords
from tonerwatch_shared.sealing import generate_key
from tonerwatch_shared.settings import CommonSettings, load_settings
from tonerwatch_shared.simulator import free_udp_port
from tonerwatch_shared.storage import sqlite_url
from tonerwatch_shared.subjects import Subjects

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("tonerwatch.up")
READY_TIMEOUT_S = 120.0
ADMIN_PASSWORD_FILE = "admin-password"
SECRET_KEY_FILE = "secret-key"
HISTORY_MARKER = "history-seeded"
HISTORY_WAIT_S = 60.0


# glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MALLOC_ARENAS = 2
# Blocks from this size up get a mapping of their own, and the heap's top is given back from this
# much free (glibc's own defaults, 128 KiB each, before its dynamic threshold raises them).
MALLOC_THRESHOLD = 128 * 1024


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Have glibc's malloc use at most `arenas` arenas in this process; return whether it took.

    glibc gives each thread that meets a locked arena one of its own (up to 8 per core), and
    memory freed in one stays there for that arena's reuse: with the api's worker threads that
    was ~10 MB of free memory held in `up` at 1,000 printers (issue 15, bench/E2E.md). Python's
    lock serialises most allocation anyway. MALLOC_ARENA_MAX in the environment is glibc's own
    setting and wins; elsewhere than glibc nothing changes.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return _mallopt((M_ARENA_MAX, arenas))


def fix_malloc_thresholds(threshold: int = MALLOC_THRESHOLD) -> bool:
    """Keep glibc's mmap and trim thresholds at `threshold` bytes; return whether it took.

    glibc raises both each time a mapped block is freed (up to 32 MiB): a peak's large blocks
    (a batch's JSON, a listing's rows) then come from the heap, and what they leave free between
    the blocks that live on stays in `up`. Fixed, `up`'s PSS median at 1,000 printers was ~3.5 MB
    lower (five runs against five, CPU per poll within the runs' spread; bench/E2E.md, "Less
    imported, malloc's thresholds fixed"). MALLOC_MMAP_THRESHOLD_
    or MALLOC_TRIM_THRESHOLD_ in the environment, or either in GLIBC_TUNABLES, are glibc's own
    settings and win.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "malloc.mmap_threshold" in tunables or "malloc.trim_threshold" in tunables:
        return False
    return _mallopt((M_MMAP_THRESHOLD, threshold), (M_TRIM_THRESHOLD, threshold))


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Set each (parameter, value) with glibc's mallopt; return whether every one took (False off glibc)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return all([bool(libc.mallopt(param, value)) for param, value in settings])
    except (OSError, AttributeError):
        return False


def _say(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


@dataclass(frozen=True)
class Nats:
    """Where the services connect, and as whom: one user per service on the embedded server."""

    url: str
    passwords: dict[str, str] | None = None

    def credentials(self, service: str) -> dict[str, Any]:
        """Return the settings overrides connecting a service (as its own user when embedded)."""
        if self.passwords is None:
            return {"nats_url": self.url}
        return {
            "nats_url": self.url,
            "nats_user": service,
            "nats_password": self.passwords[service],
            "nats_creds": None,
        }


@contextlib.asynccontextmanager
async def embedded_nats_if_needed(common: CommonSettings, data_dir: Path) -> AsyncIterator[Nats]:
    """Yield where to connect: the configured NATS, or an embedded server's that stops on exit.

    The embedded server has one user per service (passwords made once, kept 0600 in
    nats-users.json in the data dir), each allowed only its own subjects, and refuses anonymous
    clients.
    """
    if common.nats_url:
        yield Nats(common.nats_url)
        return
    passwords = embedded_passwords(data_dir)
    subjects = Subjects(common.subject_root, common.stream_prefix)
    # The monitoring port shows the server's own view (/varz: sync_always, store limits) for ops.
    server = EmbeddedNats(
        data_dir / "nats",
        http_port=free_tcp_port(),
        extra=embedded_authorization(passwords, subjects),
        go_memory=EMBEDDED_GO_MEMORY,
    )
    url = await asyncio.to_thread(server.start)
    log.info(
        "embedded nats-server on %s (data in %s, monitoring http://127.0.0.1:%d/varz, "
        "one user per service: %s)",
        url,
        server.store_dir,
        server.http_port,
        data_dir / USERS_FILE,
    )
    try:
        yield Nats(url, passwords)
    finally:
        # Reached only after every service task has ended, so each has drained its connection.
        await asyncio.to_thread(server.stop)


async def run_up(data_dir: Path, args: argparse.Namespace) -> int:
    """Run the whole system until Ctrl-C/SIGTERM; return the exit code."""
    data_dir.mkdir(parents=True, exist_ok=True)
    names = _selected(args.only)
    common = load_settings(CommonSettings)
    check_listen_ports(names, args)
    stop = asyncio.Event()
    install_stop_signals(stop)
    async with embedded_nats_if_needed(common, data_dir) as nats:
        overrides: dict[str, Any] = {
            "database_url": common.database_url or sqlite_url(data_dir),
            "data_dir": data_dir,
        }
        admin_password, generated = admin_password_for(data_dir)
        overrides["admin_password"] = admin_password
        if not common.secret_key:
            overrides["secret_key"] = secret_key_for(data_dir)
        owner = ops_port_owner(names) if common.ops_port else None
        settings = {
            name: _settings_for(
                name, overrides | nats.credentials(name), args, serve_ops=name == owner
            )
            for name in names
        }
        if owner:
            log.info("ops endpoints on port %d are the %s's", common.ops_port, owner)
        if "api" in settings:
            await asyncio.to_thread(migrate_in_child, settings["api"])
        readies = {name: asyncio.Event() for name in names}
        try:
            async with asyncio.TaskGroup() as tg:
                for name in names:
                    tg.create_task(
                        _run_service(name, settings[name], stop, readies[name]),
                        name=f"service-{name}",
                    )
                tg.create_task(
                    _announce(
                        settings,
                        readies,
                        admin_password if generated else None,
                        args,
                        data_dir,
                        stop,
                    )
                )
        except* BusStopped:
            pass  # stopped while still connecting: a clean stop
        except* PortInUse as group:
            stop.set()
            raise CliError(str(group.exceptions[0])) from None
        except* Exception as group:
            for exc in group.exceptions:
                log.error("a service stopped: %r", exc)
            stop.set()
            first = group.exceptions[0]
            raise CliError(f"stopped: {first}") from None
    _say("TonerWatch stopped.")
    return 0


def migrate_in_child(api_settings: Any) -> None:
    """Bring the database to the newest schema in a child process (`tonerwatch migrate`), if behind.

    Alembic loads Mako and Pygments (~8 MB) that this long-running process never needs again, so
    they load in a process that exits; the api then finds the schema at head and does not load
    them. If the child fails (a database that does not answer yet), the api migrates itself as it
    would without `up` (and waits for the database, not ready meanwhile).
    """
    api = service_module("api")
    try:
        if api.schema_at_head(api_settings):
            return
    except api.DatabaseUnreachable:
        return
    env = dict(os.environ)
    env["TONERWATCH_DATABASE_URL"] = api.database_url(api_settings)
    if api_settings.secret_key:
        env["TONERWATCH_SECRET_KEY"] = api_settings.secret_key
    done = subprocess.run(
        [sys.executable, "-m", "tonerwatch", "migrate"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        log.warning(
            "migrating in a child process failed (%s); the api migrates itself",
            lines[-1] if lines else f"exit {done.returncode}",
        )


async def _run_service(name: str, settings: Any, stop: asyncio.Event, ready: asyncio.Event) -> None:
    """Run one service as a task of this process, its log lines tagged with its own name."""
    current_service.set(name)  # tasks the service starts copy this context
    await service_module(name).run(settings, stop=stop, ready=ready)


def check_listen_ports(names: list[str], args: argparse.Namespace) -> None:
    """Raise PortInUse, before anything starts, if a port `up` must listen on is taken."""
    if "api" in names:
        api = load_settings(service_module("api").Settings)
        host, port = args.host or api.host, args.port or api.port
        ensure_port_free(host, port, "web/API port", "--port or TONERWATCH_PORT")
    common = load_settings(CommonSettings)
    if common.ops_port:
        ensure_port_free(common.ops_host, common.ops_port, "ops port", "TONERWATCH_OPS_PORT")


def admin_password_for(data_dir: Path) -> tuple[str, bool]:
    """Return the admin password (TONERWATCH_ADMIN_PASSWORD, else generated once and kept 0600 in the data dir) and whether it is new."""
    from_env = os.environ.get("TONERWATCH_ADMIN_PASSWORD")
    if from_env:
        return from_env, False
    path = data_dir / ADMIN_PASSWORD_FILE
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password, True


def secret_key_for(data_dir: Path) -> str:
    """Return the key sealing secrets (SNMP communities and keys), made once and kept 0600 in the data dir.

    Used when TONERWATCH_SECRET_KEY is not set. Losing the file makes the sealed secrets unreadable
    (back it up with the database); to change keys, see docs/operations.md#secrets.
    """
    path = data_dir / SECRET_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def _selected(only: str | None) -> list[str]:
    if not only:
        return list(SERVICES)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SERVICES))
    if unknown:
        raise CliError(
            f"--only: unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}"
        )
    return names


def ops_port_owner(names: list[str]) -> str | None:
    """Return the one service that serves TONERWATCH_OPS_PORT under `up` (one port, one server).

    The poller's metrics matter most (polls, overdue jobs, stream fill); the api serves its own
    /healthz and /metrics on the web port.
    """
    return next((n for n in ("poller", "alerter", "discovery", "syncer") if n in names), None)


def _settings_for(
    name: str, overrides: dict[str, Any], args: argparse.Namespace, *, serve_ops: bool = False
) -> Any:
    extra = dict(overrides)
    if not serve_ops and name != "api":
        extra["ops_port"] = None
    if name == "api":
        if args.host:
            extra["host"] = args.host
        if args.port:
            extra["port"] = args.port
    return load_settings(service_module(name).Settings, **extra)


async def _announce(
    settings: dict[str, Any],
    readies: dict[str, asyncio.Event],
    admin_password: str | None,
    args: argparse.Namespace,
    data_dir: Path,
    stop: asyncio.Event,
) -> None:
    """Wait until every service is ready, print where to go, then run the demo fleet if asked."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await asyncio.gather(*(e.wait() for e in readies.values()))
    except TimeoutError:
        late = [n for n, e in readies.items() if not e.is_set()]
        raise CliError(
            f"services not ready after {READY_TIMEOUT_S:.0f}s: {', '.join(late)}"
        ) from None
    api = settings.get("api")
    url = f"http://{api.host}:{api.port}" if api else None
    _say("")
    _say(f"TonerWatch is up — data in {data_dir}")
    if url:
        _say(f"  Web UI and API: {url}   (API docs: {url}/api/docs)")
        if admin_password:
            _say(
                f"  Log in as admin with password: {admin_password}   (shown once; set TONERWATCH_ADMIN_PASSWORD to choose)"
            )
        else:
            _say(
                "  Log in as admin with TONERWATCH_ADMIN_PASSWORD, or the password shown at first start"
                f" (kept in {data_dir / ADMIN_PASSWORD_FILE})"
            )
    _say("  Press Ctrl-C to stop.")
    if args.demo:
        if url is None:
            raise CliError("--demo needs the api service")
        await _run_demo(url, api, settings.get("poller"), args, data_dir, stop)
    else:
        await stop.wait()


async def _run_demo(
    url: str,
    api: Any,
    poller: Any,
    args: argparse.Namespace,
    data_dir: Path,
    stop: asyncio.Event,
) -> None:
    """Serve the simulated fleet on loopback and register every printer through the REST API.

    The first time, each printer gets three weeks of backdated readings (published as the
    poller's SupplyReading events) before it is monitored, so forecasts and charts show at once.
    """
    import httpx  # the demo's alone: `up` without --demo loads no httpx (issue 15, memory)

    from tonerwatch.demo.fleet import run_demo_fleet

    demo_dir = data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    seeded = demo_dir / HISTORY_MARKER
    seed = poller is not None and not seeded.exists()
    async with run_demo_fleet(
        demo_dir, port=_demo_port(demo_dir), count=args.demo_count
    ) as printers:
        (demo_dir / "port").write_text(f"{printers[0].port}\n")
        try:
            known = await register_demo_printers(
                url, api.admin_password, printers, monitored=not seed
            )
            if seed:
                try:
                    await seed_demo_history(
                        url, api.admin_password, poller, demo_dir, printers, known
                    )
                    seeded.write_text("seeded\n")
                except Exception as exc:  # the history is a nicety: the live demo runs without it
                    log.warning("could not seed the demo history: %r", exc)
                await monitor_demo_printers(url, api.admin_password, known)
        except httpx.HTTPError as exc:
            raise CliError(
                f"could not register the demo printers with the API at {url}: {exc}"
            ) from None
        _say(
            f"  Demo: {len(known)} simulated printers on 127.77.0.x:{printers[0].port} are being monitored,"
        )
        _say(
            "        with three weeks of history; levels fall as you watch, some cross thresholds"
            " within minutes, one is jammed."
        )
        await stop.wait()


async def seed_demo_history(
    url: str,
    password: str | None,
    poller: Any,
    demo_dir: Path,
    printers: list[Any],
    known: dict[str, dict[str, Any]],
) -> None:
    """Publish each demo printer's backdated readings as the poller would; wait until the API has them."""
    from datetime import UTC, datetime, timedelta

    import httpx

    from tonerwatch.demo.history import STEP_HOURS, history_events, snapshot_of
    from tonerwatch_shared.bus import Bus

    now = datetime.now(UTC)
    bus = await Bus.connect(
        poller.nats_url,
        subjects=Subjects(poller.subject_root, poller.stream_prefix),
        name="tonerwatch-demo",
        user=poller.nats_user,
        password=poller.nats_password,
        creds=poller.nats_creds,
        attempts=5,
    )
    newest = now - timedelta(hours=STEP_HOURS)
    last: list[str] = []
    try:
        for p in printers:
            row = known[p.name]
            events = history_events(
                snapshot_of(demo_dir / f"{p.community}.snmprec"),
                printer_id=row["id"],
                address=p.host,
                site_id=row["site_id"],
                now=now,
            )
            for event in events:
                await bus.publish(event)
            last.append(row["id"])
    finally:
        await bus.nc.drain()
    # Monitoring starts only once the API has applied them: a live reading first would make them
    # late, and late readings go into the charts but not the forecast.
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        headers = await _auth_headers(client, password)
        async with asyncio.timeout(HISTORY_WAIT_S):
            for pid in last:
                while True:
                    resp = await client.get(f"/api/v1/printers/{pid}", headers=headers)
                    resp.raise_for_status()
                    seen = resp.json().get("last_seen_at")
                    if seen and datetime.fromisoformat(seen.replace("Z", "+00:00")) >= newest:
                        break
                    await asyncio.sleep(0.5)


async def monitor_demo_printers(
    url: str, password: str | None, known: dict[str, dict[str, Any]]
) -> None:
    """Start monitoring every demo printer not monitored yet."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        headers = await _auth_headers(client, password)
        for row in known.values():
            if not row.get("monitored", True):
                resp = await client.patch(
                    f"/api/v1/printers/{row['id']}", headers=headers, json={"monitored": True}
                )
                resp.raise_for_status()


async def _auth_headers(client: httpx.AsyncClient, password: str | None) -> dict[str, str]:
    token = await client.post(
        "/api/v1/auth/token", data={"username": "admin", "password": password or ""}
    )
    token.raise_for_status()
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _demo_port(demo_dir: Path) -> int | None:
    """Return the port the demo fleet used last time (so registered printers stay valid), if free."""
    try:
        port = int((demo_dir / "port").read_text())
    except (OSError, ValueError):
        return free_udp_port()
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_udp_port()
    return port


async def register_demo_printers(
    url: str, password: str | None, printers: list[Any], *, monitored: bool = True
) -> dict[str, dict[str, Any]]:
    """Add each demo printer (matched by name, so a restart adds none twice); return them by name."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        headers = await _auth_headers(client, password)
        existing = await client.get("/api/v1/printers", params={"limit": 500}, headers=headers)
        existing.raise_for_status()
        known: dict[str, dict[str, Any]] = {p.get("name"): p for p in existing.json()["items"]}
        found: dict[str, dict[str, Any]] = {}
        for p in printers:
            row = known.get(p.name)
            if row and row.get("port") == p.port and row.get("address") == p.host:
                found[p.name] = row
                continue
            resp = await client.post(
                "/api/v1/printers",
                headers=headers,
                json={
                    "address": p.host,
                    "port": p.port,
                    "name": p.name,
                    "location": p.location,
                    "community": p.community,
                    "interval_s": 30,
                    "monitored": monitored,
                },
            )
            resp.raise_for_status()
            found[p.name] = resp.json()
    return found
