"""End-to-end bench: N simulated printers, the real service pipeline, polls on time and lag to the API.

Prints (does not assert) figures for one bounded run on loopback only:

- polls due vs done on time (each printer's slots in the window, schedule.next_slot; a poll is
  on time within the poller's own tolerance of its slot, schedule.tolerance);
- lag from poll (the reading's time) to visible in the database the API reads (p50/p99/max),
  observed by reading `printers.last_seen_at` every --observe-every seconds (that period adds
  about half itself to every lag);
- readings ingested per second (SupplyReading events and supply rows);
- CPU per process (the `up` process or each service, nats-server, the snmpd fleet) and per poll;
- PSS of every process at the end, and sampled every --pss-every seconds from the import on:
  min / median / max over the window, per process and for their sum (one sample at the end lands
  anywhere on a process's saw, nats-server's especially);
- the peer in the same run (--no-exporter to leave it out): Debian's prometheus-snmp-exporter
  (bench/exporter_peer.py, bench/snmp_exporter.yml) scraped by this bench for a copy of the fleet
  (or the same endpoints) at the same rate, each printer every interval on slots spread over it:
  its CPU per scrape and PSS over the same window, SNMP bytes per scrape, and the ratios ours /
  exporter for the service (every process, nats-server and the api included), the poller service
  alone (--variant services) and the SNMP client alone (measured in this process).

    uv run python bench/e2e.py [--printers 1000] [--interval 30] [--duration 60]
        [--variant up|services] [--database sqlite|postgresql] [--recording jetdirect_m252dw]
        [--no-exporter] [--exporter-module walk|get] [--exporter-fleet copy|same]

`up`: one `tonerwatch up` (embedded nats-server, every service in one process). `services`: a
nats-server the bench starts, then `tonerwatch migrate` and one `tonerwatch serve <svc>` process
per service (what compose runs). --database postgresql makes a database of its own on
TONERWATCH_BENCH_PG (default postgresql://postgres@127.0.0.1:5432/postgres) and drops it after.

Printers: net-snmp `snmpd` serving a recording through `override` lines (apt-get install snmpd),
at most 1,000 endpoints per process (10 processes for 10,000 printers), on a loopback network of
the run's own, 127.X.Y.1 (the exporter's copy on 127.X.Y.2), ports from 20000 up: below the
ephemeral range, so no other process is handed one of them while snmpd starts (bench/poll_bench.py). They are added through the API's CSV import (POST /api/v1/printers/bulk,
1,000 a request). Results are appended to bench/results/e2e.md with the machine's description and
its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exporter_peer import (
    CONFIG as EXPORTER_CONFIG,
)
from exporter_peer import (
    MODULES,
    Relay,
    Scraper,
    exporter_path,
    exporter_version,
    start_exporter,
    write_config,
)
from poll_bench import HOST, WALKS, snmpd_config, start_snmpd, stop

from tonerwatch_api.schemas.bulk_add import BULK_MAX_LINES
from tonerwatch_poller import schedule
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port, stop_leftover_server
from tonerwatch_shared.snmp.poll import PollPlan, poll_printer
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.udp import UdpSnmpClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "e2e.md"
SERVICES = ("discovery", "poller", "alerter", "syncer", "api")
PASSWORD = "bench-" + secrets.token_hex(8)
TICK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 180.0


# --- processes ------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process so far, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def pss_kb(pid: int) -> int:
    """Proportional set size of a process in kB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Periodic:
    """A daemon thread calling tick() every period_s (from one tick's start to the next's) until
    stopped: the bench's samplers, off the event loop."""

    period_s: float
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._stop = stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                t = time.time()
                self.tick()
                stop.wait(max(0.0, self.period_s - (time.time() - t)))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


@dataclass
class PssSampler(Periodic):
    """Samples the PSS of each process every period_s (a thread): the window's range, not one sample."""

    pids: dict[str, int]
    period_s: float
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def tick(self) -> None:
        self.samples.append((time.time(), {k: pss_kb(v) for k, v in self.pids.items()}))

    def ranges(self, t0: float, t1: float) -> dict[str, tuple[float, float, float]]:
        """min / median / max in MB over [t0, t1] per process and for their sum ("total")."""
        inside = [s for t, s in self.samples if t0 <= t <= t1]
        series: dict[str, list[float]] = {k: [s[k] / 1024 for s in inside] for k in self.pids}
        series["total"] = [sum(s.values()) / 1024 for s in inside]
        return {k: (min(v), statistics.median(v), max(v)) for k, v in series.items() if v}


def children(pid: int) -> list[int]:
    """Direct children of a process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def machine() -> str:
    """One line describing this machine and its load."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {mem_gb:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- the database the API reads ---------------------------------------------------------------


@dataclass
class Observer(Periodic):
    """Reads printers.last_seen_at every period; records when each new reading became visible."""

    query: Any  # () -> list[(id, last_seen_at as datetime or str)] and count of reading rows
    period_s: float
    seen: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    events_first: dict[str, float] = field(default_factory=dict)  # printer -> first observed
    # (printer id, reading time, observed time)
    events: list[tuple[str, float, float]] = field(default_factory=list)
    polls_by_printer: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0

    def tick(self) -> None:
        try:
            rows = self.query()
        except Exception:
            self.errors += 1
            rows = []
        observed = time.time()
        for pid, last in rows:
            if self.raw.get(pid) == last:  # unchanged: no parsing (10,000 rows every 0.2 s)
                continue
            self.raw[pid] = last
            at = _epoch(last)
            if at is None:
                continue
            if self.seen.get(pid) != at:
                self.seen[pid] = at
                self.events_first.setdefault(pid, observed)
                self.events.append((pid, at, observed))
                self.polls_by_printer.setdefault(pid, []).append(at)


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def sqlite_query(path: Path) -> tuple[Any, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def rows() -> list[tuple[str, Any]]:
        return conn.execute(
            "SELECT id, last_seen_at FROM printers WHERE last_seen_at IS NOT NULL"
        ).fetchall()

    def count() -> int:
        return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])

    return rows, count


def pg_query(url: str) -> tuple[Any, Any]:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    lock = threading.Lock()

    def rows() -> list[tuple[str, Any]]:
        with lock:
            return conn.execute(
                "SELECT id, last_seen_at FROM printers WHERE last_seen_at IS NOT NULL"
            ).fetchall()

    def count() -> int:
        with lock:
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
            return int(row[0]) if row else 0

    return rows, count


@contextlib.contextmanager
def pg_database(base: str) -> Iterator[str]:
    """A database of its own for the run, dropped after."""
    import psycopg

    name = f"tonerwatch_e2e_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- the system under test --------------------------------------------------------------------


@dataclass
class System:
    api_url: str
    pids: dict[str, int]  # name -> pid of each process measured
    procs: list[subprocess.Popen[bytes]]
    nats: EmbeddedNats | None = None
    nats_store: Path | None = None  # an embedded server's store that `up` owns


def wait_for_line(log: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited {proc.returncode}; see {log}")
        time.sleep(0.2)
    raise SystemExit(f"no {needle!r} in {log} after {timeout:.0f} s")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited {proc.returncode}")
        time.sleep(0.3)
    raise SystemExit(f"{url} not answering after {timeout:.0f} s")


def start_up(tmp: Path, env: dict[str, str], up_args: Sequence[str] = ()) -> System:
    """One `tonerwatch up` with its embedded nats-server (up_args added to its command line)."""
    port = free_tcp_port()
    log = tmp / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tonerwatch",
                "up",
                "--data-dir",
                str(tmp / "data"),
                "--port",
                str(port),
                *up_args,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for_line(log, "TonerWatch is up", proc, START_TIMEOUT_S)
    nats = [c for c in children(proc.pid) if comm(c).startswith("nats-server")]
    pids = {"tonerwatch up": proc.pid}
    if nats:
        pids["nats-server"] = nats[0]
    return System(f"http://127.0.0.1:{port}", pids, [proc], nats_store=tmp / "data" / "nats")


def start_services(tmp: Path, env: dict[str, str]) -> System:
    """A nats-server, then `migrate` and one `serve` process per service."""
    nats = EmbeddedNats(tmp / "nats")
    url = nats.start()
    # SQLite (no TONERWATCH_DATABASE_URL): every `serve` finds it in the data dir, as `migrate` does.
    env = env | {"TONERWATCH_NATS_URL": url, "TONERWATCH_DATA_DIR": str(tmp / "data")}
    subprocess.run(
        [sys.executable, "-m", "tonerwatch", "migrate", "--data-dir", str(tmp / "data")],
        env=env,
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_S,
    )
    port = free_tcp_port()
    procs, pids = [], {}
    for svc in SERVICES:
        log = tmp / f"{svc}.log"
        extra = {"TONERWATCH_PORT": str(port)} if svc == "api" else {}
        with log.open("wb") as out:
            p = subprocess.Popen(
                [sys.executable, "-m", "tonerwatch", "serve", svc],
                env=env | extra,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(p)
        pids[svc] = p.pid
    assert nats.proc is not None
    pids["nats-server"] = nats.proc.pid
    wait_http(f"http://127.0.0.1:{port}/healthz", procs[-1], START_TIMEOUT_S)
    return System(f"http://127.0.0.1:{port}", pids, procs, nats)


def stop_system(system: System) -> None:
    stop(system.procs)
    if system.nats is not None:
        system.nats.stop()
    # `up` killed after stop()'s 5 s leaves its embedded server running (its own process group,
    # for the next `up` on that store to stop): this run's store is deleted, so stop it here.
    if system.nats_store is not None:
        stop_leftover_server(system.nats_store)


async def register(
    api_url: str, host: str, ports: list[int], interval_s: float, concurrency: int = 2
) -> list[str]:
    """Add every printer through the REST API's CSV import (POST /api/v1/printers/bulk, a
    request per BULK_MAX_LINES printers, `concurrency` at once); return their ids in port order."""
    async with httpx.AsyncClient(base_url=api_url, timeout=600.0) as client:
        # /healthz answers before the api's bootstrap has made the admin: 401 until it has.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                tok = await client.post(
                    "/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}
                )
            except httpx.TransportError:  # a loaded machine: the api's port not open yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
                continue
            if tok.status_code != 401 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        tok.raise_for_status()
        headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        slots = asyncio.Semaphore(concurrency)

        async def add(first: int, chunk: list[int]) -> list[str]:
            text = "address,port,name\n" + "".join(
                f"{host},{port},bench printer {first + i:05d}\n" for i, port in enumerate(chunk)
            )
            async with slots:
                r = await client.post(
                    "/api/v1/printers/bulk",
                    headers=headers,
                    json={"text": text, "community": "public", "interval_s": interval_s},
                )
            r.raise_for_status()
            out = r.json()
            if out["added"] != len(chunk):
                bad = [x for x in out["lines"] if x["outcome"] != "added"][:3]
                raise SystemExit(f"bulk add: {out['added']} of {len(chunk)} added: {bad}")
            return [str(x["printer_id"]) for x in sorted(out["lines"], key=lambda x: x["line"])]

        chunks = [
            add(i, ports[i : i + BULK_MAX_LINES]) for i in range(0, len(ports), BULK_MAX_LINES)
        ]
        return [pid for ids in await asyncio.gather(*chunks) for pid in ids]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# --- the peer: our SNMP client alone, and the exporter, weighed on one printer ----------------------


@dataclass
class Weights:
    """Our client alone and the exporter, on one printer of the fleet (before the system starts)."""

    plan: PollPlan
    client_ms: float  # CPU of one steady poll, our SNMP client alone, in this thread
    ours_bytes: float  # SNMP payload of one steady poll (request + response), through the relay
    ours_requests: float
    exporter_bytes: float = float("nan")  # the same for one exporter scrape
    exporter_requests: float = float("nan")


async def weigh(
    host: str, port: int, exporter_url: str | None, module: str, polls: int = 300
) -> Weights:
    """One printer: our client's steady poll (CPU; bytes through a counting relay) and the
    exporter's scrape of it (bytes through the same relay). Bounded: a few hundred polls."""
    client = UdpSnmpClient()
    try:
        direct = SnmpTarget(host, port, community="public", timeout=2.0, retries=1)
        plan = (await poll_printer(client, direct)).plan
        c0 = time.thread_time()  # this thread only: the observer and the scraper are others
        for _ in range(polls):
            plan = (await poll_printer(client, direct, plan)).plan
        client_ms = (time.thread_time() - c0) / max(1, polls) * 1000
        relay = Relay(host, port)
        relayed = SnmpTarget(HOST, await relay.open(), community="public", timeout=2.0, retries=1)
        try:
            relayed_plan = (await poll_printer(client, relayed)).plan
            relay.reset()
            for _ in range(3):
                relayed_plan = (await poll_printer(client, relayed, relayed_plan)).plan
            w = Weights(plan, client_ms, (relay.sent + relay.received) / 3, relay.requests / 3)
            if exporter_url is not None:
                async with httpx.AsyncClient(timeout=30) as http:
                    await http.get(  # the exporter's first scrape of a target (connection setup)
                        f"{exporter_url}/snmp",
                        params={"module": module, "target": f"{HOST}:{relayed.port}"},
                    )
                    relay.reset()
                    for _ in range(3):
                        r = await http.get(
                            f"{exporter_url}/snmp",
                            params={"module": module, "target": f"{HOST}:{relayed.port}"},
                        )
                        if r.status_code != 200 or b"prtMarkerSuppliesLevel{" not in r.content:
                            raise SystemExit(
                                f"exporter scrape failed: {r.status_code} {r.text[:300]}"
                            )
                w.exporter_bytes = (relay.sent + relay.received) / 3
                w.exporter_requests = relay.requests / 3
            return w
        finally:
            relay.close()
    finally:
        await client.close()


# --- the run ------------------------------------------------------------------------------------


def fleet_address() -> str:
    """A loopback network of the run's own, 127.X.Y.0/24 (the kernel routes all of 127/8 to lo):
    its printers can take ports below the ephemeral range (20000 up) without meeting another
    run's, and no other process is handed them as ephemeral ports meanwhile."""
    rnd = secrets.SystemRandom()
    return f"127.{rnd.randrange(100, 255)}.{rnd.randrange(1, 255)}"


def free_ports(n: int, host: str, first: int = 20000, last: int = 32767) -> list[int]:
    """n UDP ports free on host, from `first` up (below Linux's ephemeral range)."""
    ports: list[int] = []
    for port in range(first, last + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
            s.bind((host, port))
            ports.append(port)
            if len(ports) == n:
                return ports
    raise SystemExit(f"only {len(ports)} free UDP ports on {host} in {first}..{last}")


def run(args: argparse.Namespace) -> list[str]:
    if shutil.which("snmpd") is None:
        sys.exit("needs net-snmp's snmpd: scripts/setup --bench (or apt-get install snmpd)")
    if args.exporter and exporter_path() is None:
        sys.exit(
            "needs prometheus-snmp-exporter (the peer): scripts/setup --bench "
            "(or apt-get install prometheus-snmp-exporter), or --no-exporter"
        )
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    load_start = load()
    warmup_max = args.warmup_max if args.warmup_max is not None else 2.5 * args.interval + 60
    settle = min(10.0, args.interval / 2)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tonerwatch-e2e-")))
        conf = tmp / "snmpd.conf"
        conf.write_text(snmpd_config(load_snmprec(WALKS / f"{args.recording}.snmprec")))
        net = fleet_address()
        host = f"{net}.1"
        ports = free_ports(args.printers, host)
        snmpds = start_snmpd(conf, ports, host)
        stack.callback(stop, snmpds)
        # The exporter's printers: a copy of the fleet on 127.X.Y.2 (snmpd processes of their
        # own, so each side's snmpd CPU is its own), or the same endpoints.
        exp_host, exp_ports = host, list(ports)
        exp_snmpds: list[subprocess.Popen[bytes]] = []
        if args.exporter and args.exporter_fleet == "copy":
            exp_host = f"{net}.2"
            exp_ports = free_ports(args.printers, exp_host)
            (tmp / "copy").mkdir()
            exp_conf = tmp / "copy" / "snmpd.conf"
            exp_conf.write_text(conf.read_text())
            exp_snmpds = start_snmpd(exp_conf, exp_ports, exp_host)
            stack.callback(stop, exp_snmpds)
        time.sleep(1.0 + len(ports) / 2000)  # snmpd binding its sockets
        # Our client alone on one printer: its plan (the OIDs of a steady poll), its CPU and bytes.
        weights = asyncio.run(weigh(host, ports[0], None, ""))
        exporter: subprocess.Popen[bytes] | None = None
        exporter_url = None
        module = MODULES[args.exporter_module]
        if args.exporter:
            config = (
                write_config(tmp, weights.plan.volatile)
                if args.exporter_module == "get"
                else EXPORTER_CONFIG
            )
            eport = free_tcp_port()
            exporter = start_exporter(config, eport, tmp / "exporter.log")
            stack.callback(stop, [exporter])
            exporter_url = f"http://{HOST}:{eport}"
            w = asyncio.run(weigh(exp_host, exp_ports[0], exporter_url, module, polls=0))
            weights.exporter_bytes, weights.exporter_requests = (
                w.exporter_bytes,
                w.exporter_requests,
            )
        env = dict(os.environ) | {
            "TONERWATCH_ADMIN_PASSWORD": PASSWORD,
            "TONERWATCH_LOG_LEVEL": "WARNING",
        }
        env.pop("TONERWATCH_NATS_URL", None)
        env.pop("TONERWATCH_DATABASE_URL", None)
        if args.database == "postgresql":
            db_url = stack.enter_context(pg_database(args.pg))
            env["TONERWATCH_DATABASE_URL"] = db_url
            rows, count = pg_query(db_url)
        t_start = time.monotonic()
        if args.variant == "up":
            system = start_up(tmp, env, args.up_arg)
        else:
            system = start_services(tmp, env)
        stack.callback(stop_system, system)
        started_s = time.monotonic() - t_start
        if args.database == "sqlite":
            rows, count = sqlite_query(tmp / "data" / "tonerwatch.db")
        t_reg = time.monotonic()
        ids = asyncio.run(
            register(system.api_url, host, ports, args.interval, args.register_concurrency)
        )
        reg_s = time.monotonic() - t_reg
        imported_at = time.time()
        observer = Observer(rows, args.observe_every)
        observer.start()
        stack.callback(observer.stop)
        sampler = PssSampler(dict(system.pids), args.pss_every)
        sampler.start()
        stack.callback(sampler.stop)
        scraper: Scraper | None = None
        if exporter_url is not None:
            scraper = Scraper(
                exporter_url,
                module,
                exp_ports,
                args.interval,
                warmup_max + args.duration + settle,
                target_host=exp_host,
            )
            scraper.start()
            stack.callback(scraper.stop)
        # Warm-up: every printer polled twice (its first poll, then one on its slot), bounded.
        t_warm = time.monotonic()
        deadline = t_warm + warmup_max
        while time.monotonic() < deadline:
            if sum(len(v) >= 2 for v in list(observer.polls_by_printer.values())) >= len(ids):
                break
            time.sleep(0.5)
        warm = sum(len(v) >= 2 for v in list(observer.polls_by_printer.values()))
        warm_s = time.monotonic() - t_warm
        # The measured window.
        pids = dict(system.pids)
        snmpd_pids = [p.pid for p in snmpds]
        exp_snmpd_pids = [p.pid for p in exp_snmpds]
        cpu0 = {k: cpu_s(v) for k, v in pids.items()}
        snmpd0 = sum(cpu_s(p) for p in snmpd_pids)
        exp_snmpd0 = sum(cpu_s(p) for p in exp_snmpd_pids)
        exp_cpu0 = cpu_s(exporter.pid) if exporter else 0.0
        rows0 = count()
        t0, n_events0 = time.time(), len(observer.events)
        load_window_start = load()
        time.sleep(args.duration)
        t1, n_events1 = time.time(), len(observer.events)
        cpu1 = {k: cpu_s(v) for k, v in pids.items()}
        snmpd1 = sum(cpu_s(p) for p in snmpd_pids)
        exp_snmpd1 = sum(cpu_s(p) for p in exp_snmpd_pids)
        exp_cpu1 = cpu_s(exporter.pid) if exporter else 0.0
        rows1 = count()
        load_end = load()
        pss = {k: pss_kb(v) for k, v in pids.items()}
        snmpd_pss = sum(pss_kb(p) for p in snmpd_pids)
        exp_pss = pss_kb(exporter.pid) if exporter else 0
        # Let the last polls of the window become visible before judging them.
        time.sleep(settle)
        observer.stop()
        if scraper is not None:
            scraper.stop()
        api_ok = httpx.get(f"{system.api_url}/healthz", timeout=5).status_code

    window = [e for e in observer.events[n_events0:n_events1] if t0 <= e[1] < t1]
    lags = [obs - at for _pid, at, obs in window]
    tol = schedule.tolerance(args.interval)
    due = on_time = late_or_missed = 0
    lateness: list[float] = []
    for pid in ids:
        polls = observer.polls_by_printer.get(pid, [])
        slot = schedule.next_slot(t0, args.interval, pid)
        while slot < t1 - tol:
            due += 1
            near = [at - slot for at in polls if slot - tol <= at <= slot + args.interval / 2]
            if near and abs(min(near, key=abs)) <= tol:
                on_time += 1
                lateness.append(min(near, key=abs))
            else:
                late_or_missed += 1
            slot += args.interval
    polls_done = len(window)
    span = t1 - t0
    # How long after the import each printer's first reading became visible (the poller schedules
    # each new printer from its PrinterConfigured event, then polls it within 10 s).
    firsts = [
        observer.events_first[pid] - imported_at for pid in ids if pid in observer.events_first
    ]
    # The first poll itself (the reading's time): what the poller took, without the api's share.
    first_polls = [
        observer.polls_by_printer[pid][0] - imported_at
        for pid in ids
        if observer.polls_by_printer.get(pid)
    ]
    say(
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {args.variant}, {args.database}, "
        f"{args.printers:,} printers every {args.interval:g} s, {args.duration:g} s window"
        + (f", exporter ({module})" if args.exporter else "")
    )
    say()
    say(f"- machine: {machine()}; git {git_head()}")
    say(
        f"- load average (1/5/15 min): {load_start} at start, {load_window_start} when the "
        f"window opened, {load_end} at its end (the machine is shared with other sessions)"
    )
    say(
        f"- recording {args.recording} served by {len(snmpds)} snmpd process(es) on {host}; "
        f"started in {started_s:.1f} s; {len(ids):,} printers added through the API's CSV import "
        f"in {reg_s:.1f} s ({len(ids) / reg_s:.0f}/s); {warm:,} polled twice before the window "
        f"(after {warm_s:.0f} s); observer period {args.observe_every:g} s; api /healthz "
        f"{api_ok} after"
    )
    say(
        f"- first reading of each printer visible after the import ended: p50 "
        f"{pct(firsts, 0.5):.0f} s, p99 {pct(firsts, 0.99):.0f} s, last {max(firsts, default=0):.0f} s "
        f"({len(firsts):,} of {len(ids):,} printers); its poll (the reading's time): p50 "
        f"{pct(first_polls, 0.5):.0f} s, p99 {pct(first_polls, 0.99):.0f} s, last "
        f"{max(first_polls, default=0):.0f} s"
    )
    say()
    say("| measured | value |")
    say("|---|---:|")
    say(f"| polls due in the window (slots) | {due:,} |")
    say(
        f"| polls done on time (within ±{tol:g} s of the slot) | {on_time:,} "
        f"({100 * on_time / max(1, due):.1f}%) |"
    )
    say(f"| late or missed | {late_or_missed:,} |")
    if lateness:
        say(
            f"| poll time - slot, p50 / p99 | {pct(lateness, 0.5):.2f} / "
            f"{pct(lateness, 0.99):.2f} s |"
        )
    say(f"| readings visible in the window | {polls_done:,} ({polls_done / span:.1f}/s) |")
    say(f"| supply rows stored | {rows1 - rows0:,} ({(rows1 - rows0) / span:.1f}/s) |")
    say(
        f"| lag poll -> visible, p50 / p99 / max | {pct(lags, 0.5):.2f} / {pct(lags, 0.99):.2f} "
        f"/ {max(lags, default=float('nan')):.2f} s |"
    )
    for name in pids:
        used = cpu1[name] - cpu0[name]
        say(
            f"| CPU {name} | {100 * used / span:.1f}% of a core, "
            f"{1000 * used / max(1, polls_done):.2f} ms per poll |"
        )
    service_ms = 1000 * sum(cpu1[n] - cpu0[n] for n in pids) / max(1, polls_done)
    say(f"| CPU per poll, all of the above (the service) | {service_ms:.2f} ms |")
    used = snmpd1 - snmpd0
    say(
        f"| CPU snmpd (the printers) | {100 * used / span:.1f}% of a core, "
        f"{1000 * used / max(1, polls_done):.2f} ms per poll |"
    )
    for name, kb in pss.items():
        say(f"| PSS {name} | {kb / 1024:.1f} MB |")
    say(f"| PSS total (without snmpd) | {sum(pss.values()) / 1024:.1f} MB |")
    ranges = sampler.ranges(t0, t1)
    if args.pss_log:
        with Path(args.pss_log).open("w") as f:
            f.write("s_after_import,window," + ",".join(pids) + "\n")
            for t, sample in sampler.samples:
                f.write(
                    f"{t - imported_at:.1f},{int(t0 <= t <= t1)},"
                    + ",".join(str(sample[k]) for k in pids)
                    + "\n"
                )
    for name, (lo, mid, hi) in ranges.items():
        say(
            f"| PSS {name}, sampled every {args.pss_every:g} s over the window, min / median / "
            f"max | {lo:.1f} / {mid:.1f} / {hi:.1f} MB |"
        )
    say(f"| PSS snmpd (the printers) | {snmpd_pss / 1024:.1f} MB |")
    say(
        f"| SNMP client alone, steady poll (this process, one printer, 300 polls) | "
        f"{weights.client_ms:.3f} ms CPU, {weights.ours_requests:g} request(s), "
        f"{weights.ours_bytes:,.0f} B |"
    )
    if observer.errors:
        say(f"| observer read errors | {observer.errors} |")
    if scraper is not None and exporter is not None:
        say()
        exporter_lines(
            say, args, module, scraper, t0, t1, exp_cpu1 - exp_cpu0, exp_pss,
            exp_snmpd1 - exp_snmpd0 if exp_snmpds else None, weights,
            service_ms, {n: 1000 * (cpu1[n] - cpu0[n]) / max(1, polls_done) for n in pids},
            sum(pss.values()),
        )  # fmt: skip
    say()
    return lines


def exporter_lines(
    say: Any,
    args: argparse.Namespace,
    module: str,
    scraper: Scraper,
    t0: float,
    t1: float,
    cpu: float,
    pss: int,
    snmpd_cpu: float | None,
    weights: Weights,
    service_ms: float,
    per_process_ms: dict[str, float],
    service_pss: int,
) -> None:
    """The exporter's figures over the same window, and the ratios ours / exporter."""
    span = t1 - t0
    n = len(scraper.ports)
    inside = [s for s in scraper.scrapes if t0 <= s.slot < t1]
    done = [s for s in inside if s.ok]
    late = [s.end - s.slot for s in inside]
    per = 1000 * cpu / max(1, len(inside))
    fleet = (
        "a copy of the fleet (snmpd processes of its own)"
        if snmpd_cpu is not None
        else ("the same snmpd endpoints as the service")
    )
    say(
        f"Peer: prometheus-snmp-exporter {exporter_version()} (Debian), module `{module}` "
        + (
            "(bench/snmp_exporter.yml: the printer columns walked)"
            if module == "printer"
            else "(one GET of exactly the OIDs of our steady poll)"
        )
        + f", {n:,} printers on {fleet}, each scraped every "
        f"{args.interval:g} s by this bench (slots spread over the interval, at most 64 at once), "
        f"during the same window"
    )
    say()
    say("| measured | value |")
    say("|---|---:|")
    say(
        f"| scrapes due in the window / answered with the levels | {len(inside):,} / {len(done):,} |"
    )
    say(f"| scrape done - slot, p50 / p99 | {pct(late, 0.5):.3f} / {pct(late, 0.99):.3f} s |")
    say(f"| CPU exporter | {100 * cpu / span:.1f}% of a core, {per:.2f} ms per scrape |")
    if snmpd_cpu is not None:
        say(
            f"| CPU snmpd (its printers) | {100 * snmpd_cpu / span:.1f}% of a core, "
            f"{1000 * snmpd_cpu / max(1, len(inside)):.2f} ms per scrape |"
        )
    say(f"| PSS exporter | {pss / 1024:.1f} MB |")
    packets = [s.packets for s in done]
    say(
        f"| SNMP per scrape (one printer through a counting relay) | "
        f"{weights.exporter_requests:g} request(s), {weights.exporter_bytes:,.0f} B "
        f"(the exporter's own count over the window: "
        f"{sum(packets) / max(1, len(packets)):.2f} packets sent per scrape) |"
    )
    say()
    say("| ours / exporter, per poll | ratio |")
    say("|---|---:|")
    say(
        f"| the service's CPU (every process above, nats-server and the api included): "
        f"{service_ms:.2f} ms / {per:.2f} ms | {service_ms / per:.1f}x |"
    )
    if "poller" in per_process_ms:
        say(
            f"| the poller service alone: {per_process_ms['poller']:.2f} ms / {per:.2f} ms "
            f"| {per_process_ms['poller'] / per:.1f}x |"
        )
    else:
        say("| the poller service alone | n/a in `up` (one process): see --variant services |")
    say(
        f"| the SNMP client alone (no NATS, no HTTP): {weights.client_ms:.3f} ms / {per:.2f} ms "
        f"| {weights.client_ms / per:.2f}x |"
    )
    say(
        f"| SNMP bytes: {weights.ours_bytes:,.0f} B / {weights.exporter_bytes:,.0f} B "
        f"| {weights.ours_bytes / weights.exporter_bytes:.2f}x |"
    )
    say(
        f"| PSS, the service's processes / the exporter: {service_pss / 1024:.1f} MB / "
        f"{pss / 1024:.1f} MB | {service_pss / max(1, pss):.1f}x |"
    )
    if scraper.errors:
        say(f"| scrape errors | {scraper.errors} |")


def git_head() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--printers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=30.0, help="poll interval, s (>= 10)")
    parser.add_argument("--duration", type=float, default=60.0, help="measured window, s")
    parser.add_argument("--variant", choices=("up", "services"), default="up")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "TONERWATCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--recording", default="jetdirect_m252dw")
    parser.add_argument("--observe-every", type=float, default=0.2)
    parser.add_argument(
        "--pss-every", type=float, default=1.0, help="PSS sampling period over the run, s"
    )
    parser.add_argument(
        "--up-arg",
        action="append",
        default=[],
        help="add this argument to `tonerwatch up`'s command line (repeat; e.g. --up-arg=--only=api,poller)",
    )
    parser.add_argument("--pss-log", default="", help="write every PSS sample (kB) to this CSV")
    parser.add_argument(
        "--exporter",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the peer: prometheus-snmp-exporter scraped for the same fleet in the same run",
    )
    parser.add_argument(
        "--exporter-module",
        choices=tuple(MODULES),
        default="walk",
        help="walk: the printer columns walked (as an exporter user configures it); get: one "
        "GET of exactly the OIDs of our steady poll",
    )
    parser.add_argument(
        "--exporter-fleet",
        choices=("copy", "same"),
        default="copy",
        help="the exporter's printers: a copy of the fleet (snmpd of their own) or the same ones",
    )
    parser.add_argument(
        "--warmup-max",
        type=float,
        default=None,
        help="longest wait for every printer's second poll, s (default 2.5 intervals + 60)",
    )
    parser.add_argument(
        "--register-concurrency", type=int, default=2, help="CSV imports sent at once"
    )
    parser.add_argument("--no-save", action="store_true", help="do not append to bench/results")
    parser.add_argument("--note", default="", help="a line saved with the results")
    args = parser.parse_args(argv)
    if not (1 <= args.printers <= 10_000) or not (10 <= args.interval <= 3600):
        sys.exit("--printers 1..10000, --interval 10..3600")
    if not (5 <= args.duration <= 1800):
        sys.exit("--duration 5..1800 s")
    lines = run(args)
    if args.note:
        lines.insert(2, f"- note: {args.note}")
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write("\n".join(lines) + "\n")
        print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
