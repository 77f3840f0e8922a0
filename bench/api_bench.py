"""API benchmark: dashboard, printer page and readings latency with 10,000 printers; ingestion rate.

Prints (does not assert) p50/p99 latencies over a bounded number of requests to a real uvicorn
server on 127.0.0.1, and SupplyReading events/s applied into PostgreSQL through the real
projection from a real NATS stream, against the need of 10,000 printers every 5 minutes (33/s).

Data, in a schema of its own (dropped at the end), bulk-loaded with COPY:
- --printers printers (default 10,000), 4-6 supplies each, current states, some open alerts;
- for --history-printers of them (default 100) a year of history as the api keeps it: raw
  readings every 5 minutes for the last 30 days, hourly buckets before that up to a year,
  daily buckets for the year; page counters likewise;
- for every other printer the last 2 hours raw and a year of daily buckets.
Page queries are index range scans on one printer, so their cost follows that printer's rows
(and the index depth), not the fleet's total volume.

Printer search is measured twice in one run: on the server as it is (pg_trgm index, migration
0006) and on a second server whose search is the substring scan over 7 columns it replaced
(--serve ... scan), with the ratio; plus the plan PostgreSQL chooses for each needle.

    uv run python bench/api_bench.py [--printers N] [--history-printers N] [--requests N]
        [--events N]

Needs PostgreSQL (TONERWATCH_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/test)
and NATS (TONERWATCH_BENCH_NATS_URL, default nats://127.0.0.1:4222).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import ColumnElement, event, func, or_, text
from sqlalchemy.engine import Engine
from sqlmodel import col

from tonerwatch_api.db.models import Printer
from tonerwatch_api.db.tx import create_user, ensure_default_site, in_tx, upgrade
from tonerwatch_api.domain import alerts as alert_rules
from tonerwatch_api.domain import printers as printer_rules
from tonerwatch_api.domain.printers import fleet_page, printer_filters
from tonerwatch_api.domain.retention import RetentionPolicy, maintain
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.outbox import Outbox
from tonerwatch_api.projections.printers import ProjectionOptions
from tonerwatch_api.projections.projector import Projector
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import SupplyReading
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterIdentity,
    Supply,
    SupplyKind,
    SupplyState,
)
from tonerwatch_shared.storage import make_engine
from tonerwatch_shared.subjects import Subjects

DB_URL = os.environ.get(
    "TONERWATCH_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
NATS_URL = os.environ.get("TONERWATCH_BENCH_NATS_URL", "nats://127.0.0.1:4222")
PASSWORD = "bench password 1"
STEP = timedelta(minutes=5)
COLOURS = [
    ("black", "#1d1d1f"),
    ("cyan", "#00a0e3"),
    ("magenta", "#e4007c"),
    ("yellow", "#ffe100"),
    ("light cyan", "#7fd3f5"),
    ("light magenta", "#f59acb"),
]
STATUSES = ["ok"] * 80 + ["attention"] * 12 + ["critical"] * 4 + ["offline"] * 3 + ["paused"]
# (label, needle): 10 printers by name, 1 by serial, and every printer (no index can help).
SEARCHES = [
    ("name, 10 hits", "printer 0042"),
    ("serial, 1 hit", "CNB0004242"),
    ("model, every printer", "laserjet"),
]


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(values: list[float], q: float) -> float:
    """Return the q-quantile (0..1) of values, nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# --- data ----------------------------------------------------------------------------------------


def level_at(pid_n: int, idx: int, t: float) -> float:
    """Return a toner level that falls over ~60 days then jumps back (a replacement)."""
    period = 50 + (pid_n * 7 + idx * 13) % 30  # days per cartridge
    phase = ((t / 86400.0) + pid_n % 50) % period
    return round(100.0 - 100.0 * phase / period, 1)


class Copier:
    """COPY rows into one table over psycopg's raw connection."""

    def __init__(self, engine: Engine) -> None:
        self.raw = engine.raw_connection()
        self.conn: Any = self.raw.driver_connection

    def copy(self, table: str, columns: str, rows: Iterator[tuple[Any, ...]]) -> int:
        n = 0
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
                n += 1
        self.conn.commit()
        return n

    def close(self) -> None:
        self.raw.close()


def load(
    engine: Engine, printers: int, history: int, now: datetime, fleet_daily_days: int
) -> dict[str, int]:
    """Bulk-load the fleet and its history; return rows per table."""
    rng = random.Random(6)
    created = now - timedelta(days=400)
    supplies = {p: 4 + (p % 3) for p in range(printers)}  # 4, 5 or 6
    status = {p: rng.choice(STATUSES) for p in range(printers)}
    counts: dict[str, int] = {}
    cp = Copier(engine)
    try:
        counts["printers"] = cp.copy(
            "printers",
            "id, site_id, name, address, port, protocol, monitored, credentials, interval_s, "
            "origin, vendor, model, serial, reachable, last_seen_at, lifetime_pages, status, "
            "created_at, updated_at",
            (
                (
                    f"p-{p:05d}",
                    "default",
                    f"Printer {p:05d}",
                    f"127.{p // 65536}.{p // 256 % 256}.{p % 256}",
                    161,
                    "snmp",
                    status[p] != "paused",
                    '{"version": "2c", "community": "public"}',
                    300.0,
                    "discovered",
                    "HP",
                    "HP Color LaserJet Pro MFP M479fdw",
                    f"CNB{p:07d}",
                    status[p] != "offline",
                    now,
                    100000 + p,
                    status[p],
                    created,
                    now,
                )
                for p in range(printers)
            ),
        )
        counts["supply_states"] = cp.copy(
            "supply_states",
            "printer_id, supply_index, description, part_number, kind, supply_class, colour, "
            "colour_hex, level, max_capacity, percent, state, updated_at",
            (
                (
                    f"p-{p:05d}",
                    str(i + 1),
                    f"{COLOURS[i][0].title()} Cartridge HP W203{i}A",
                    f"W203{i}A",
                    "toner",
                    "consumed",
                    COLOURS[i][0],
                    COLOURS[i][1],
                    int(lv := level_at(p, i, now.timestamp())),
                    100,
                    lv,
                    "low" if lv < 10 else "ok",
                    now,
                )
                for p in range(printers)
                for i in range(supplies[p])
            ),
        )
        attention = [p for p in range(printers) if status[p] in ("attention", "critical")]
        counts["alerts"] = cp.copy(
            "alerts",
            "alert_id, printer_id, rule, severity, message, supply_index, percent, raised_at",
            (
                (
                    f"p-{p:05d}:toner:1",
                    f"p-{p:05d}",
                    "toner_low",
                    "critical" if status[p] == "critical" else "warning",
                    "Black toner low",
                    "1",
                    8.0,
                    now - timedelta(hours=p % 48),
                )
                for p in attention
            ),
        )
    finally:
        cp.close()
    # History is generated inside PostgreSQL (generate_series): far faster than streaming it, and
    # in time order, as the projection and the upkeep write it (a printer's rows spread over
    # the heap, not clustered).
    params = {
        "printers": printers,
        "history": history,
        "now": now,
        "start_raw": now - timedelta(days=30),
        "recent": now - timedelta(hours=2),
        "pending_from": now - timedelta(minutes=10),
        "start_year": now - timedelta(days=365),
        "start_fleet_daily": now - timedelta(days=fleet_daily_days),
        "hour0": now.replace(minute=0, second=0, microsecond=0),
        "day0": now.replace(hour=0, minute=0, second=0, microsecond=0),
    }
    for table, sql in HISTORY_SQL.items():
        t0 = time.perf_counter()
        with engine.begin() as conn:
            counts[table] = int(conn.execute(text(sql), params).rowcount or 0)
        say(f"  {table}: {counts[table]:,} rows in {time.perf_counter() - t0:.0f} s")
    with engine.begin() as conn:
        for table in counts:
            conn.execute(text(f"ANALYZE {table.strip()}"))
    return counts


# level_at() in SQL, for printer number p, supply number i at time t.
_LEVEL = (
    "round((100 - 100 * mod((extract(epoch from {t}) / 86400 + p % 50)::numeric, "
    "50 + (p * 7 + i * 13) % 30) / (50 + (p * 7 + i * 13) % 30))::numeric, 1)::float8"
)
_PID = "'p-' || lpad(p::text, 5, '0')"


def _buckets(table: str, step: str, since: str, until: str, who: str, skip: str = "0") -> str:
    first, last = _LEVEL.format(t="t"), _LEVEL.format(t=f"(t + interval '{step}')")
    n = f"(extract(epoch from interval '{step}') / 300)::int"
    return f"""
        INSERT INTO {table} (printer_id, bucket_start, supply_index, count, percent_count,
            sum_percent, min_percent, max_percent, last_at, last_percent, last_level)
        SELECT {_PID}, t, (i + 1)::text, {n}, {n}, (least(a, b) + greatest(a, b)) / 2 * {n},
            least(a, b), greatest(a, b), t + interval '{step}' - interval '5 minutes', b, b::int
        FROM generate_series(:{since}, :{until} - interval '{step}', interval '{step}') t
        CROSS JOIN generate_series({skip}, {who} - 1) p
        CROSS JOIN LATERAL generate_series(0, 3 + p % 3) i
        CROSS JOIN LATERAL (SELECT {first} AS a, {last} AS b) l
    """


HISTORY_SQL = {
    "readings": f"""
        INSERT INTO readings (printer_id, supply_index, occurred_at, percent, level, rolled_up)
        SELECT {_PID}, (i + 1)::text, t, lv, lv::int, t < :pending_from
        FROM generate_series(:start_raw, :now, interval '5 minutes') t
        CROSS JOIN LATERAL generate_series(
            0, CASE WHEN t >= :recent THEN :printers ELSE :history END - 1) p
        CROSS JOIN LATERAL generate_series(0, 3 + p % 3) i
        CROSS JOIN LATERAL (SELECT {_LEVEL.format(t="t")} AS lv) l
    """,
    "readings_hourly": _buckets("readings_hourly", "1 hour", "start_year", "hour0", ":history"),
    "readings_daily": _buckets("readings_daily", "1 day", "start_year", "day0", ":history"),
    "readings_daily ": _buckets(
        "readings_daily", "1 day", "start_fleet_daily", "day0", ":printers", ":history"
    ),
    "counter_readings": f"""
        INSERT INTO counter_readings (printer_id, occurred_at, lifetime_pages, rolled_up)
        SELECT {_PID}, t, 100000 + p + (extract(epoch from t - :start_raw) / 300)::int,
            t < :pending_from
        FROM generate_series(:start_raw, :now, interval '5 minutes') t
        CROSS JOIN generate_series(0, :history - 1) p
    """,
}


# --- HTTP server in its own process -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


INDEXED_FILTERS = printer_filters


def scan_filters(
    site_id: str | None, search: str | None, *args: Any, **kwargs: Any
) -> list[ColumnElement[bool]]:
    """Return the printer filters with search as it was before migration 0006: a 7-column scan."""
    out: list[ColumnElement[bool]] = INDEXED_FILTERS(site_id, None, *args, **kwargs)
    if search:
        needle = search.strip().lower()
        columns = (
            col(Printer.id),
            col(Printer.name),
            col(Printer.address),
            col(Printer.vendor),
            col(Printer.model),
            col(Printer.serial),
            col(Printer.location),
        )
        out.append(
            or_(
                *(
                    func.lower(func.coalesce(c, "")).contains(needle, autoescape=True)
                    for c in columns
                )
            )
        )
    return out


async def serve(schema: str, port: int, root: str, prefix: str, search: str) -> None:
    """Run the api app (no projections) on 127.0.0.1:port until SIGTERM."""
    import uvicorn

    from tonerwatch_api.app import create_app
    from tonerwatch_api.settings import Settings

    if search == "scan":  # the search this bench compares with: the filters before 0006
        for rules in (printer_rules, alert_rules):
            vars(rules)["printer_filters"] = scan_filters

    engine = make_engine(DB_URL, schema=schema)
    bus = await Bus.connect(NATS_URL, subjects=Subjects(root=root, stream_prefix=prefix), name="b")
    settings = Settings(session_secret="bench", cookie_secure=False)
    app = create_app(engine, bus, settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    await uvicorn.Server(config).serve()
    await bus.drain()


@contextlib.contextmanager
def server_process(schema: str, root: str, prefix: str, search: str = "index") -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", schema, str(port), root, prefix, search],
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None:
                raise RuntimeError("the api server exited")
            time.sleep(0.2)
        else:
            raise RuntimeError("the api server did not answer within 60 s")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def login(client: httpx.Client) -> None:
    page = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token, "no login form"
    r = client.post(
        "/login",
        data={"username": "admin", "password": PASSWORD, "login_csrf": token.group(1), "next": "/"},
    )
    assert r.status_code in (200, 303), r.status_code


def measure(client: httpx.Client, label: str, urls: list[str], warmup: int = 5) -> dict[str, float]:
    for url in urls[:warmup]:
        client.get(url)
    times = []
    size = 0
    for url in urls:
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:200]}")
        size = len(r.content)
    out = {"p50": statistics.median(times), "p99": pct(times, 0.99), "n": len(times)}
    say(
        f"  {label:<44} p50 {out['p50']:7.1f} ms   p99 {out['p99']:7.1f} ms   "
        f"max {max(times):7.1f} ms   n={len(times)}   {size / 1024:.0f} KiB"
    )
    return out


def search_plans(engine: Engine) -> None:
    """Print the scan PostgreSQL chooses, and its time, for the dashboard's two search queries."""
    sent: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if "LIKE" in statement:
            sent.append((statement, params))

    indexed = INDEXED_FILTERS
    for label, needle in SEARCHES:
        for search, filters in (("index", indexed), ("scan", scan_filters)):
            sent.clear()
            vars(printer_rules)["printer_filters"] = filters
            event.listen(engine, "before_cursor_execute", capture)
            try:
                page = functools.partial(fleet_page, tenant_id="default", search=needle)
                in_tx(engine, page)
            finally:
                event.remove(engine, "before_cursor_execute", capture)
                vars(printer_rules)["printer_filters"] = indexed
            scans = []
            with engine.connect() as conn:
                for statement, params in sent:
                    lines = [
                        str(r[0])
                        for r in conn.exec_driver_sql("EXPLAIN ANALYZE " + statement, params)
                    ]
                    node = next((ln for ln in lines if " on printers " in ln), "?")
                    took = next((ln for ln in lines if ln.startswith("Execution Time")), "")
                    scans.append(f"{node.strip(' ->').split('  (')[0]}, {took.split(': ')[-1]}")
            say(f"  {search:<5} {label:<20} counts: {scans[0]}; page ids: {scans[1]}")


def measure_search(engine: Engine, schema: str, subjects: Subjects, n: int) -> None:
    """Print search latency with the index and with the old scan, and their ratio."""
    # Requests go to both servers in turn, so both see the same load of this shared machine.
    root, prefix = subjects.root, subjects.stream_prefix
    say(f"search: {n} requests each, alternating between the index and the old scan")
    with (
        server_process(schema, root, prefix, "index") as index_base,
        server_process(schema, root, prefix, "scan") as scan_base,
        httpx.Client(base_url=index_base, timeout=30) as index_client,
        httpx.Client(base_url=scan_base, timeout=30) as scan_client,
    ):
        login(index_client)
        login(scan_client)
        for label, needle in SEARCHES:
            q = quote(needle)
            for where, url in (("dashboard", f"/?q={q}"), ("API", f"/api/v1/printers?q={q}")):
                times: dict[str, list[float]] = {"index": [], "scan": []}
                sizes: set[int] = set()
                for k in range(n + 5):  # 5 warm-up requests each
                    for search, client in (("index", index_client), ("scan", scan_client)):
                        t0 = time.perf_counter()
                        r = client.get(url)
                        if k >= 5:
                            times[search].append((time.perf_counter() - t0) * 1000)
                        if r.status_code != 200:
                            raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:200]}")
                        sizes.add(len(r.content))
                ix, sc = times["index"], times["scan"]
                say(
                    f"  {where + ' ?q=' + needle:<24} {label:<21} "
                    f"p50 {statistics.median(ix):6.1f} vs {statistics.median(sc):6.1f} ms "
                    f"({statistics.median(sc) / statistics.median(ix):4.1f}x)   "
                    f"p99 {pct(ix, 0.99):6.1f} vs {pct(sc, 0.99):6.1f} ms   "
                    f"{max(sizes) / 1024:.0f} KiB"
                )
    say("search plans (EXPLAIN ANALYZE of the dashboard's queries)")
    search_plans(engine)


# --- ingestion -----------------------------------------------------------------------------------


def reading_event(p: int, at: datetime) -> SupplyReading:
    n = 4 + p % 3
    return SupplyReading(
        source="bench",
        site_id="default",
        printer_id=f"p-{p:05d}",
        address="127.0.0.1",
        occurred_at=at,
        printer=PrinterIdentity(vendor="HP", model="HP Color LaserJet Pro MFP M479fdw"),
        supplies=tuple(
            Supply(
                index=str(i + 1),
                description=f"{COLOURS[i][0].title()} Cartridge",
                kind=SupplyKind.TONER,
                colour=COLOURS[i][0],
                level=int(lv := level_at(p, i, at.timestamp() + 600)),
                max_capacity=100,
                percent=lv,
                state=SupplyState.LOW if lv < 10 else SupplyState.OK,
            )
            for i in range(n)
        ),
        counters=Counters(lifetime_pages=200000 + p),
    )


async def ingest(engine: Engine, subjects: Subjects, printers: int, events: int) -> None:
    bus = await Bus.connect(NATS_URL, subjects=subjects, name="bench-api", attempts=3)
    try:
        await bus.ensure_event_stream()
        at = datetime.now(UTC)
        t0 = time.perf_counter()
        for k in range(events):
            await bus.publish(reading_event(k % printers, at + timedelta(seconds=k // printers)))
        say(f"  published {events} SupplyReading events in {time.perf_counter() - t0:.1f} s")

        def applied() -> int:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM processed_events WHERE consumer = 'api-readings'"
                        )
                    ).scalar_one()
                )

        stop = asyncio.Event()
        projector = Projector(
            engine, bus, Outbox(engine, bus), Metrics(), ProjectionOptions(source="bench")
        )
        t0 = time.perf_counter()
        task = asyncio.create_task(projector.run(stop))
        done = 0
        deadline = t0 + 300
        while time.perf_counter() < deadline:
            done = await asyncio.to_thread(applied)
            if done >= events:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - t0
        stop.set()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await task
        rate = done / elapsed
        say(
            f"  applied {done}/{events} in {elapsed:.1f} s: {rate:.0f} events/s sustained "
            f"(need 33/s for 10,000 printers every 5 min: {rate / 33.3:.1f}x)"
        )
        pending = await asyncio.to_thread(
            lambda: in_tx(
                engine,
                lambda s: int(
                    s.execute(
                        text("SELECT count(*) FROM readings WHERE NOT rolled_up")
                    ).scalar_one()
                ),
            )
        )
        t0 = time.perf_counter()
        totals = await maintain(engine, RetentionPolicy(max_batches=1000))
        elapsed = time.perf_counter() - t0
        say(
            f"  rollup of {pending} pending raw rows: {totals.rolled_readings} rows in "
            f"{elapsed:.1f} s ({totals.rolled_readings / max(elapsed, 1e-9):.0f} rows/s; "
            f"10,000 printers x 5 supplies make 167 rows/s)"
        )
    finally:
        with contextlib.suppress(Exception):
            for info in await bus.js.streams_info():
                name = info.config.name or ""
                if name.startswith(subjects.stream_prefix + "_"):
                    await bus.js.delete_stream(name)
        await bus.drain()


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--printers", type=int, default=10_000)
    ap.add_argument("--history-printers", type=int, default=100)
    ap.add_argument("--requests", type=int, default=200, help="per measured URL kind")
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument(
        "--fleet-daily-days",
        type=int,
        default=365,
        help="days of daily buckets for the printers without full history",
    )
    ap.add_argument("--keep", action="store_true", help="do not drop the schema (debugging)")
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:8]
    schema = f"bench_api_{tag}"
    subjects = Subjects(root=f"b{tag}", stream_prefix=f"B{tag}")
    admin = make_engine(DB_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = make_engine(DB_URL, schema=schema)
    try:
        upgrade(engine)
        ensure_default_site(engine, "default")
        in_tx(engine, lambda s: create_user(s, "admin", PASSWORD, "admin"))
        now = datetime.now(UTC)
        say(
            f"loading {args.printers} printers, {args.history_printers} with a year of history, "
            f"the others {args.fleet_daily_days} days of daily buckets"
        )
        t0 = time.perf_counter()
        counts = load(engine, args.printers, args.history_printers, now, args.fleet_daily_days)
        say(
            f"  loaded in {time.perf_counter() - t0:.0f} s: "
            + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        )
        rng = random.Random(1)
        with (
            server_process(schema, subjects.root, subjects.stream_prefix) as base,
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            login(client)
            n = args.requests
            hist = [f"p-{rng.randrange(args.history_printers):05d}" for _ in range(n)]
            say(f"load average {os.getloadavg()[0]:.1f} (2 cores, shared with other sessions)")
            say(f"HTTP latency, {n} sequential requests each (uvicorn, 1 worker, 127.0.0.1)")
            measure(client, "dashboard / (page 1, attention first)", ["/"] * n)
            measure(
                client,
                "dashboard /?page=50",
                ["/?page=50"] * n,
            )
            measure(client, "dashboard search /?q=printer 0042", ["/?q=printer%200042"] * n)
            measure(
                client,
                "printer page /printers/{id} (14-day chart)",
                [f"/printers/{p}" for p in hist],
            )
            for label, days in (
                ("GET readings 1 year (auto: daily)", 365),
                ("GET readings 30 days (auto: hourly)", 30),
                ("GET readings 1 day (auto: raw)", 1),
            ):
                since = quote((now - timedelta(days=days)).isoformat())
                urls = [f"/api/v1/printers/{p}/readings?since={since}" for p in hist]
                measure(client, label, urls)
            measure(client, "GET /api/v1/printers?limit=100", ["/api/v1/printers?limit=100"] * n)
        measure_search(engine, schema, subjects, args.requests)
        say(f"load average {os.getloadavg()[0]:.1f}")
        if args.events:
            say(
                f"ingestion: {args.events} SupplyReading events through the api-readings projection"
            )
            asyncio.run(ingest(engine, subjects, args.printers, args.events))
    finally:
        engine.dispose()
        if not args.keep:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        _, _, schema_arg, port_arg, root_arg, prefix_arg, search_arg = sys.argv
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(schema_arg, int(port_arg), root_arg, prefix_arg, search_arg))
    else:
        main()
