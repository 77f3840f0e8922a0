"""End-to-end bench: N simulated printers, the real service pipeline, polls on time and lag to the API.

Prints (does not assert) figures for one bounded run on loopback only:

- polls due vs done on time (each printer's slots in the window, schedule.next_slot; a poll is
  on time within the poller's own tolerance of its slot, schedule.tolerance);
- lag from poll (the reading's time) to visible in the database the API reads (p50/p99/max),
  observed by reading `printers.last_seen_at` every --observe-every seconds (that period adds
  about half itself to every lag);
- readings ingested per second (SupplyReading events and supply rows);
- CPU per process (the `up` process or each service, nats-server, the snmpd fleet) and per poll;
- PSS of every process at the end.

    uv run python bench/e2e.py [--printers 1000] [--interval 30] [--duration 60]
        [--variant up|services] [--database sqlite|postgresql] [--recording jetdirect_m252dw]

`up`: one `tonerwatch up` (embedded nats-server, every service in one process). `services`: a
nats-server the bench starts, then `tonerwatch migrate` and one `tonerwatch serve <svc>` process
per service (what compose runs). --database postgresql makes a database of its own on
TONERWATCH_BENCH_PG (default postgresql://postgres@127.0.0.1:5432/postgres) and drops it after.

Printers: net-snmp `snmpd` serving a recording through `override` lines (apt-get install snmpd),
at most 1,000 endpoints per process, on 127.0.0.1 (bench/poll_bench.py). Results are appended to
bench/results/e2e.md with the machine's description and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from poll_bench import HOST, WALKS, snmpd_config, start_snmpd, stop

from tonerwatch_poller import schedule
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port
from tonerwatch_shared.simulator import free_udp_port
from tonerwatch_shared.snmp.snmprec import load_snmprec

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
class Observer:
    """Reads printers.last_seen_at every period; records when each new reading became visible."""

    query: Any  # () -> list[(id, last_seen_at as datetime or str)] and count of reading rows
    period_s: float
    seen: dict[str, float] = field(default_factory=dict)
    # (printer id, reading time, observed time)
    events: list[tuple[str, float, float]] = field(default_factory=list)
    polls_by_printer: dict[str, list[float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: int = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.time()
            try:
                rows = self.query()
            except Exception:
                self.errors += 1
                rows = []
            observed = time.time()
            for pid, last in rows:
                at = _epoch(last)
                if at is None:
                    continue
                if self.seen.get(pid) != at:
                    self.seen[pid] = at
                    self.events.append((pid, at, observed))
                    self.polls_by_printer.setdefault(pid, []).append(at)
            self._stop.wait(max(0.0, self.period_s - (time.time() - t)))


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


def start_up(tmp: Path, env: dict[str, str]) -> System:
    """One `tonerwatch up` with its embedded nats-server."""
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
    return System(f"http://127.0.0.1:{port}", pids, [proc])


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


async def register(api_url: str, ports: list[int], interval_s: float) -> list[str]:
    """Add every printer through the REST API (8 at a time); return their ids."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30.0) as client:
        # /healthz answers before the api's bootstrap has made the admin: 401 until it has.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            tok = await client.post(
                "/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}
            )
            if tok.status_code != 401 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        tok.raise_for_status()
        headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        slots = asyncio.Semaphore(8)

        async def add(i: int, port: int) -> str:
            async with slots:
                r = await client.post(
                    "/api/v1/printers",
                    headers=headers,
                    json={
                        "address": HOST,
                        "port": port,
                        "name": f"bench printer {i:05d}",
                        "community": "public",
                        "interval_s": interval_s,
                    },
                )
                r.raise_for_status()
                return str(r.json()["id"])

        return list(await asyncio.gather(*(add(i, p) for i, p in enumerate(ports))))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# --- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[str]:
    if shutil.which("snmpd") is None:
        sys.exit("needs net-snmp's snmpd: scripts/setup --bench (or apt-get install snmpd)")
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    load_start = load()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tonerwatch-e2e-")))
        conf = tmp / "snmpd.conf"
        conf.write_text(snmpd_config(load_snmprec(WALKS / f"{args.recording}.snmprec")))
        ports: list[int] = []
        while len(ports) < args.printers:
            p = free_udp_port(HOST)
            if p not in ports:
                ports.append(p)
        snmpds = start_snmpd(conf, ports)
        stack.callback(stop, snmpds)
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
        system = (start_up if args.variant == "up" else start_services)(tmp, env)
        stack.callback(stop_system, system)
        started_s = time.monotonic() - t_start
        if args.database == "sqlite":
            rows, count = sqlite_query(tmp / "data" / "tonerwatch.db")
        t_reg = time.monotonic()
        ids = asyncio.run(register(system.api_url, ports, args.interval))
        reg_s = time.monotonic() - t_reg
        observer = Observer(rows, args.observe_every)
        observer.start()
        stack.callback(observer.stop)
        # Warm-up: every printer polled twice (its first poll, then one on its slot), bounded.
        deadline = time.monotonic() + 2.5 * args.interval + 60
        while time.monotonic() < deadline:
            if sum(len(v) >= 2 for v in list(observer.polls_by_printer.values())) >= len(ids):
                break
            time.sleep(0.5)
        warm = sum(len(v) >= 2 for v in list(observer.polls_by_printer.values()))
        # The measured window.
        pids = dict(system.pids)
        snmpd_pids = [p.pid for p in snmpds]
        cpu0 = {k: cpu_s(v) for k, v in pids.items()}
        snmpd0 = sum(cpu_s(p) for p in snmpd_pids)
        rows0 = count()
        t0, n_events0 = time.time(), len(observer.events)
        load_window_start = load()
        time.sleep(args.duration)
        t1, n_events1 = time.time(), len(observer.events)
        cpu1 = {k: cpu_s(v) for k, v in pids.items()}
        snmpd1 = sum(cpu_s(p) for p in snmpd_pids)
        rows1 = count()
        load_end = load()
        pss = {k: pss_kb(v) for k, v in pids.items()}
        snmpd_pss = sum(pss_kb(p) for p in snmpd_pids)
        # Let the last polls of the window become visible before judging them.
        time.sleep(min(10.0, args.interval / 2))
        observer.stop()
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
    say(
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {args.variant}, {args.database}, "
        f"{args.printers:,} printers every {args.interval:g} s, {args.duration:g} s window"
    )
    say()
    say(f"- machine: {machine()}; git {git_head()}")
    say(
        f"- load average (1/5/15 min): {load_start} at start, {load_window_start} when the "
        f"window opened, {load_end} at its end (the machine is shared with other sessions)"
    )
    say(
        f"- recording {args.recording} served by {len(snmpds)} snmpd process(es) on 127.0.0.1; "
        f"started in {started_s:.1f} s; {len(ids):,} printers added through the API in "
        f"{reg_s:.1f} s ({len(ids) / reg_s:.0f}/s); {warm:,} polled twice before the window; "
        f"observer period {args.observe_every:g} s; api /healthz {api_ok} after"
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
    used = snmpd1 - snmpd0
    say(
        f"| CPU snmpd (the printers) | {100 * used / span:.1f}% of a core, "
        f"{1000 * used / max(1, polls_done):.2f} ms per poll |"
    )
    for name, kb in pss.items():
        say(f"| PSS {name} | {kb / 1024:.1f} MB |")
    say(f"| PSS total (without snmpd) | {sum(pss.values()) / 1024:.1f} MB |")
    say(f"| PSS snmpd (the printers) | {snmpd_pss / 1024:.1f} MB |")
    if observer.errors:
        say(f"| observer read errors | {observer.errors} |")
    say()
    return lines


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
