"""Fleet table at scale: what the fleet page and /fleet.json cost with thousands of printers.

Prints (does not assert) figures for a fleet of --printers printers (default 5,000), each with
four or five supplies and a reading applied through the api's own projections (some jammed,
offline, low, with open alerts), in a PostgreSQL schema of its own (dropped at the end):

- server side, over HTTP to a real uvicorn on 127.0.0.1 (--requests requests each, bounded):
  the fleet page (cards, first page), /fleet.json (every row, what the table view loads once),
  and /fleet.json?ids= of 200 printers (one live update): p50/p99 time and bytes: the body,
  the body gzipped, and what was sent (the api gzips /fleet.json for clients that accept it);
- the domain query alone (fleet_rows, in process): p50;
- in Chromium (Debian's /usr/bin/chromium, as the browser tests): from opening the page in table
  view to the first 100 rows drawn, then a sort by pages and a search, each until drawn.

    uv run python bench/fleet_table_bench.py [--printers N] [--requests N] [--no-browser]

Needs PostgreSQL (TONERWATCH_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/test)
and NATS (TONERWATCH_BENCH_NATS_URL, default nats://127.0.0.1:4222).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
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
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tonerwatch_api.db.tx import create_user, ensure_default_site, in_tx, upgrade
from tonerwatch_api.domain.fleet import fleet_rows
from tonerwatch_api.projections.printers import ProjectionOptions, apply_event
from tonerwatch_api.projections.readings import apply_readings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    PrinterConfigured,
    PrinterUnreachable,
    SupplyReading,
    ThresholdCrossed,
)
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterIdentity,
    PrinterStatus,
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
CHROMIUM = Path("/usr/bin/chromium")
SITES = ("hq", "lyon", "dock", "branch")
MODELS = (
    ("HP", "HP Color LaserJet Pro M479fdw", 5),
    ("Brother", "Brother HL-L2350DW series", 1),
    ("Kyocera", "ECOSYS M3655idn", 2),
    ("Xerox", "Xerox VersaLink C405", 5),
)
COLOURS = ("black", "cyan", "magenta", "yellow")
BATCH = 250


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def supplies_of(n: int, supplies: int) -> tuple[Supply, ...]:
    out = []
    for i in range(min(supplies, 4)):
        level = float((n * 37 + i * 23) % 100)
        out.append(
            Supply(
                index=str(i + 1),
                description=f"{COLOURS[i].capitalize()} toner",
                part_number=f"TN-{i}{n % 7}",
                kind=SupplyKind.TONER,
                colour=COLOURS[i] if supplies > 1 else "black",
                level=int(level),
                max_capacity=100,
                percent=level,
                state=SupplyState.LOW if level < 10 else SupplyState.OK,
            )
        )
    if supplies > 4:
        out.append(
            Supply(index="5", description="Waste toner", kind=SupplyKind.WASTE_TONER, percent=70.0)
        )
    return tuple(out)


def seed(engine: Engine, printers: int) -> float:
    """Configure printers and apply one reading each through the projections; return seconds."""
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    opts = ProjectionOptions()
    for s in SITES:
        ensure_default_site(engine, s)
    for start in range(0, printers, BATCH):
        chunk = range(start, min(printers, start + BATCH))

        def configure(s: Session, chunk: range = chunk) -> None:
            for n in chunk:
                event = PrinterConfigured(
                    source="bench",
                    site_id=SITES[n % len(SITES)],
                    printer_id=f"p-{n:05d}",
                    address=f"127.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",
                    name=f"{SITES[n % len(SITES)].capitalize()} printer {n}",
                    occurred_at=now - timedelta(days=1),
                )
                apply_event(s, event, "bench", opts, now)

        in_tx(engine, configure)

        def read(s: Session, chunk: range = chunk) -> None:
            events = []
            for n in chunk:
                vendor, model, count = MODELS[n % len(MODELS)]
                events.append(
                    SupplyReading(
                        source="bench",
                        site_id=SITES[n % len(SITES)],
                        printer_id=f"p-{n:05d}",
                        address="127.0.0.1",
                        printer=PrinterIdentity(vendor=vendor, model=model, serial=f"SN{n:06d}"),
                        supplies=supplies_of(n, count),
                        status=PrinterStatus(errors=("jammed",) if n % 97 == 0 else ()),
                        counters=Counters(lifetime_pages=10_000 + n * 13),
                        occurred_at=now - timedelta(minutes=n % 60),
                    )
                )
            apply_readings(s, events, "bench", opts, now)

        in_tx(engine, read)

        def trouble(s: Session, chunk: range = chunk) -> None:
            for n in chunk:
                pid, site = f"p-{n:05d}", SITES[n % len(SITES)]
                if n % 50 == 0:
                    down = PrinterUnreachable(
                        source="bench",
                        site_id=site,
                        printer_id=pid,
                        address="127.0.0.1",
                        consecutive_failures=3,
                        reason="no answer in 3 polls",
                        occurred_at=now,
                    )
                    apply_event(s, down, "bench", opts, now)
                if n % 9 == 0:
                    alert = ThresholdCrossed(
                        source="bench",
                        site_id=site,
                        printer_id=pid,
                        alert_id=f"{pid}:1:low",
                        rule="low",
                        severity="critical" if n % 27 == 0 else "warning",
                        supply_index="1",
                        percent=8.0,
                        message=f"Low toner: printer {n} — Black 8%",
                        occurred_at=now,
                    )
                    apply_event(s, alert, "bench", opts, now)

        in_tx(engine, trouble)
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(schema: str, port: int, root: str, prefix: str) -> None:
    """Run the api app (no projections) on 127.0.0.1:port until SIGTERM."""
    import uvicorn

    from tonerwatch_api.app import create_app
    from tonerwatch_api.settings import Settings

    engine = make_engine(DB_URL, schema=schema)
    bus = await Bus.connect(NATS_URL, subjects=Subjects(root=root, stream_prefix=prefix), name="b")
    app = create_app(engine, bus, Settings(session_secret="bench", cookie_secure=False))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    await uvicorn.Server(config).serve()
    await bus.drain()


@contextlib.contextmanager
def server_process(schema: str, root: str, prefix: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", schema, str(port), root, prefix],
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


def measure(client: httpx.Client, label: str, url: str, n: int) -> None:
    for _ in range(2):  # warm-up
        client.get(url)
    times = []
    body = b""
    wire = 0
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url)  # httpx asks for gzip, as browsers do
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:200]}")
        body, wire = r.content, r.num_bytes_downloaded
    zipped = len(gzip.compress(body, 6))
    say(
        f"  {label:<40} p50 {statistics.median(times):7.1f} ms   p99 {pct(times, 0.99):7.1f} ms"
        f"   {len(body) / 1024:6.0f} KiB ({zipped / 1024:4.0f} KiB gzipped),"
        f" {wire / 1024:6.0f} KiB sent   n={n}"
    )


async def browser_figures(base: str, printers: int) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = await browser.new_context(viewport={"width": 1366, "height": 860})
            # The table view chosen earlier (what the page remembers in localStorage).
            await context.add_init_script(
                'localStorage.setItem("tonerwatch.fleet", JSON.stringify({view: "table"}))'
            )
            page = await context.new_page()
            await page.goto(f"{base}/login")
            await page.get_by_label("Username").fill("admin")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_url(f"{base}/")
            for _ in range(3):
                t0 = time.perf_counter()
                await page.goto(f"{base}/?scope=all")
                await page.wait_for_function(
                    "document.querySelectorAll('#fleet-table tbody tr').length >= 100"
                    f" && document.getElementById('fleet-table').dataset.shown == '{printers}'",
                    timeout=60000,
                )
                shown = (time.perf_counter() - t0) * 1000
                say(
                    f"  open the page in table view, {printers} rows loaded, 100 drawn: {shown:.0f} ms"
                )
            heap = await page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
            if heap:
                say(f"  JS heap after loading: {heap / 1024 / 1024:.1f} MiB")
            t0 = time.perf_counter()
            await page.locator("#fleet-table th button[data-sort=pages]").click()
            await page.wait_for_function(
                "(() => { const b = document.querySelector('#fleet-table th button[data-sort=pages]');"
                " return b.closest('th').getAttribute('aria-sort') !== 'none'; })()"
            )
            say(
                f"  sort {printers} rows by pages and redraw: {(time.perf_counter() - t0) * 1000:.0f} ms"
            )
            t0 = time.perf_counter()
            await page.locator("#ft-search").fill("printer 4999")
            await page.wait_for_function(
                f"document.getElementById('fleet-table').dataset.shown != '{printers}'"
            )
            say(f"  search and redraw: {(time.perf_counter() - t0) * 1000:.0f} ms")
        finally:
            await browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--printers", type=int, default=5000)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        schema, port, root, prefix = args.serve
        asyncio.run(serve(schema, int(port), root, prefix))
        return
    n = max(1, min(args.printers, 50_000))
    requests = max(1, min(args.requests, 500))
    schema = f"bench_fleet_{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:8]
    root, prefix = f"bf{tag}", f"BF{tag}"
    admin = make_engine(DB_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(DB_URL, schema=schema)
    try:
        upgrade(engine)
        ensure_default_site(engine, "default")
        in_tx(engine, lambda s: create_user(s, "admin", PASSWORD, "admin"))
        say(
            f"fleet table bench: {n} printers, {os.cpu_count()} cores, PostgreSQL, {requests} requests each"
        )
        took = seed(engine, n)
        say(f"  seeded through the projections in {took:.1f} s")
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            rows, cut = in_tx(engine, lambda s: fleet_rows(s, "default"))
            times.append((time.perf_counter() - t0) * 1000)
        say(
            f"  {'fleet_rows() in process':<40} p50 {statistics.median(times):7.1f} ms   "
            f"p99 {pct(times, 0.99):7.1f} ms   {len(rows)} rows, cut={cut}"
        )
        with server_process(schema, root, prefix) as base:
            with httpx.Client(base_url=base, timeout=120) as client:
                login(client)
                measure(client, "GET / (cards, first page)", "/?scope=all", requests)
                measure(client, "GET /fleet.json (every row)", "/fleet.json?scope=all", requests)
                ids = ",".join(f"p-{k:05d}" for k in range(0, min(n, 200)))
                measure(
                    client,
                    "GET /fleet.json?ids= (200, a live update)",
                    f"/fleet.json?scope=all&ids={ids}",
                    requests,
                )
            if not args.no_browser and CHROMIUM.exists():
                asyncio.run(browser_figures(base, n))
            elif not args.no_browser:
                say(f"  (no browser figures: {CHROMIUM} not installed)")
        say(f"load average {os.getloadavg()[0]:.1f}")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
