"""Ingestion at full NATS rate: the api's consumers draining a backlog of readings from JetStream.

Prints (does not assert) readings per second and the api process's CPU per reading while the
api's background work (every consumer `tonerwatch serve api` runs: the readings projection, the
network-usage projection of the same readings, live updates, outbox, upkeep, coverage) drains a
backlog of SupplyReading events already in the stream. bench/ingest_bench.py measures the
readings projection alone (no NATS); this one measures the service.

    uv run python bench/api_ingest_bench.py [--printers 2000] [--readings 20000]
        [--database sqlite|postgresql|both] [--compare /work/other-tree] [--cprofile out.txt]

Readings: the shapes of the demo recordings (shared/printer-walks, parsed as the poller parses
them), each printer one recording, levels falling and counters rising from reading to reading.
The printers are stored first (PrinterConfigured applied directly), the readings published into
a stream of their own on --nats (a unique subject root and stream prefix, deleted after), then
run_background (service.py) starts and the bench waits until the readings consumers
(api-readings, and api-usage-polling in code from before it retired) have nothing pending or
unacknowledged. CPU is the whole
process's (every thread) over that drain; the publishing is done before it starts.

PostgreSQL: a database of its own on TONERWATCH_BENCH_PG (default
postgresql://postgres@127.0.0.1:5432/postgres), dropped after. --compare runs the same bench
file with another tree's virtualenv (its code) right after, for a side-by-side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import load, machine, pg_database

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_default_site, in_tx, upgrade
from tonerwatch_api.projections.printers import ProjectionOptions, apply_event
from tonerwatch_api.projections.readings import apply_readings
from tonerwatch_api.service import Settings, run_background
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured, SnmpCredentials, SupplyReading
from tonerwatch_shared.printer.clamp import clamp_snapshot
from tonerwatch_shared.printer.model import PrinterSnapshot
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.storage import make_engine
from tonerwatch_shared.subjects import Subjects

ROOT = Path(__file__).resolve().parents[1]
WALKS = ROOT.parent / "shared" / "printer-walks"
if not WALKS.is_dir():
    WALKS = Path("/work/shared/printer-walks")
RECORDINGS = (
    "jetdirect_m252dw",
    "konica_c250i",
    "ricoh_mpc3002",
    "brother_hl-l2340dw",
    "xerox_workcentre",
    "kyocera",
)
DRAIN_LIMIT_S = 900.0  # every wait here is bounded


def _consumers() -> tuple[str, ...]:
    """The durables that take readings in the code under test (api-usage-polling before it retired)."""
    from tonerwatch_api.projections.activity import activity_consumers

    usage = {spec.durable for spec, _ in activity_consumers(Subjects())} & {"api-usage-polling"}
    return ("api-readings", *sorted(usage))


CONSUMERS = _consumers()


def snapshots(names: list[str]) -> list[PrinterSnapshot]:
    return [clamp_snapshot(parse_snapshot(load_snmprec(WALKS / f"{n}.snmprec"))) for n in names]


def readings(
    shapes: list[PrinterSnapshot], printers: int, count: int, start: datetime
) -> list[SupplyReading]:
    """count readings, round robin over the printers, each reading of a printer a bit later."""
    out = []
    for i in range(count):
        p, round_ = i % printers, i // printers
        shape = shapes[p % len(shapes)]
        supplies = tuple(
            s.model_copy(update={"percent": max(0.0, s.percent - 0.1 * round_)})
            if s.percent is not None
            else s
            for s in shape.supplies
        )
        lifetime = (shape.counters.lifetime_pages or 1000) + 7 * round_
        out.append(
            SupplyReading(
                source="bench",
                site_id="default",
                printer_id=f"p-bench{p:05d}",
                address="127.0.0.1",
                printer=shape.printer,
                supplies=supplies,
                trays=shape.trays,
                counters=shape.counters.model_copy(update={"lifetime_pages": lifetime}),
                status=shape.status,
                missing=shape.missing,
                bytes_sent=420,
                bytes_received=2900,
                requests=1,
                duration_ms=3.0,
                occurred_at=start + timedelta(seconds=30 * round_, milliseconds=p),
            )
        )
    return out


@contextlib.contextmanager
def database(kind: str, pg: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tonerwatch-api-ingest-") as tmp:
            yield f"sqlite:///{tmp}/tonerwatch.db"
    else:
        with pg_database(pg) as url:
            yield url


def add_printers(url: str, printers: int) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
        ensure_default_site(engine, "default")
        options, now = ProjectionOptions(), datetime.now(UTC)
        for first in range(0, printers, 200):
            batch = [
                PrinterConfigured(
                    source="bench",
                    site_id="default",
                    printer_id=f"p-bench{i:05d}",
                    address="127.0.0.1",
                    port=16100 + i % 40000,
                    credentials=SnmpCredentials(community="public"),
                )
                for i in range(first, min(printers, first + 200))
            ]
            in_tx(engine, lambda s, b=batch: [apply_event(s, e, "bench", options, now) for e in b])  # type: ignore[misc]
    finally:
        engine.dispose()


async def publish(bus: Bus, events: list[SupplyReading]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(events), 500):
        await asyncio.gather(*(bus.publish(e, timeout_s=30) for e in events[i : i + 500]))
    return time.perf_counter() - t0


async def pending(bus: Bus, durable: str) -> int | None:
    """Messages of durable not yet acknowledged (None while it does not exist)."""
    try:
        info = await bus.js.consumer_info(bus.subjects.events_stream, durable)
    except Exception:
        return None
    return int(info.num_pending) + int(info.num_ack_pending)


async def drain(args: argparse.Namespace, kind: str, url: str) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    subjects = Subjects(f"bench{tag}", f"BENCH{tag.upper()}")
    bus = await Bus.connect(args.nats, subjects=subjects, name="api-ingest-bench")
    try:
        await bus.ensure_event_stream()
        start = datetime.now(UTC) - timedelta(days=2)
        events = readings(snapshots(args.recordings), args.printers, args.readings, start)
        publish_s = await publish(bus, events)
        settings = Settings(
            nats_url=args.nats,
            database_url=url,
            subject_root=subjects.root,
            stream_prefix=subjects.stream_prefix,
            port=0,
            admin_password="bench-admin-pw",
        )
        engine = make_engine(url)
        stop = asyncio.Event()
        app = create_app(engine, bus, settings, stop=stop)
        profiles = _profile_threads() if args.cprofile else None
        tx_cpu = _count_tx_cpu()
        t0, c0 = time.perf_counter(), time.process_time()
        task = asyncio.create_task(run_background(app.state.tw, stop))
        done: dict[str, float] = {}
        left: dict[str, int | None] = {}
        while len(done) < len(CONSUMERS) and time.perf_counter() - t0 < DRAIN_LIMIT_S:
            if task.done():
                task.result()
                break
            await asyncio.sleep(0.1)
            for durable in CONSUMERS:
                if durable in done:
                    continue
                left[durable] = n = await pending(bus, durable)
                if n == 0:
                    done[durable] = time.perf_counter() - t0
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if profiles is not None:
            _write_profile(profiles, args.cprofile)
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        rows = count_rows(engine)
        engine.dispose()
        n = args.readings
        return {
            "database": kind,
            "readings": n,
            "printers": args.printers,
            "supplies": rows["reading_rows"],
            "publish_per_s": n / publish_s,
            "drained": len(done) == len(CONSUMERS),
            "left": left,
            "readings_s": done.get("api-readings"),
            "usage_s": done.get("api-usage-polling"),
            "wall_s": wall,
            "per_s": n / wall,
            "cpu_ms": 1000 * cpu / n,
            "tx_cpu_ms": 1000 * tx_cpu[0] / n,
            "transactions": tx_cpu[1],
            "rows": rows,
        }
    finally:
        with contextlib.suppress(Exception):
            async for name in _streams(bus):
                if name.startswith(subjects.stream_prefix) or name.startswith(
                    f"KV_{subjects.stream_prefix}"
                ):
                    await bus.js.delete_stream(name)
        await bus.nc.close()


def _count_tx_cpu() -> list[Any]:
    """[CPU seconds spent inside transactions (their threads), transactions], counted as they run."""
    import threading

    from tonerwatch_api.db import tx

    total: list[Any] = [0.0, 0]
    guard = threading.Lock()
    plain = tx.in_tx

    def in_tx(engine: Any, fn: Any) -> Any:
        c0 = time.thread_time()
        try:
            return plain(engine, fn)
        finally:
            with guard:
                total[0] += time.thread_time() - c0
                total[1] += 1

    tx.in_tx = in_tx  # type: ignore[assignment]
    return total


def _profile_threads() -> list[Any]:
    """cProfile the event loop's thread and every transaction of the worker threads (per thread)."""
    import cProfile
    import threading

    from tonerwatch_api.db import tx

    profiles: list[Any] = [cProfile.Profile()]
    profiles[0].enable()
    mine = threading.local()
    plain = tx.in_tx

    def in_tx(engine: Any, fn: Any) -> Any:
        prof = getattr(mine, "prof", None)
        if prof is None:
            prof = mine.prof = cProfile.Profile()
            profiles.append(prof)
        prof.enable()
        try:
            return plain(engine, fn)
        finally:
            prof.disable()

    tx.in_tx = in_tx  # type: ignore[assignment]
    return profiles


def _write_profile(profiles: list[Any], path: str) -> None:
    import pstats

    profiles[0].disable()
    stats = pstats.Stats(profiles[0])
    for prof in profiles[1:]:
        stats.add(prof)
    with open(path, "w") as out:
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats("cumulative").print_stats(80)
        stats.sort_stats("tottime").print_stats(50)


def _publisher(
    nats_url: str, root: str, prefix: str, blobs: list[bytes], rate: float, ready: Any
) -> None:
    """Publish the readings (JSON) at rate per second (0: as fast as it can), from a process of its own."""
    from tonerwatch_shared.events import parse_event

    async def go() -> None:
        bus = await Bus.connect(nats_url, subjects=Subjects(root, prefix), name="bench-publisher")
        events = [parse_event(blob) for blob in blobs]
        ready.set()  # the window starts now
        if not rate:
            for i in range(0, len(events), 200):
                await asyncio.gather(*(bus.publish(e, timeout_s=30) for e in events[i : i + 200]))
        t0 = time.perf_counter()
        for i, event in enumerate(events if rate else []):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await bus.publish(event, timeout_s=30)
        await bus.nc.close()

    asyncio.run(go())


def seed(url: str, events: list[SupplyReading]) -> None:
    """Apply one reading per printer directly: their monitoring starts before the window."""
    engine = make_engine(url)
    try:
        options, now = ProjectionOptions(), datetime.now(UTC)
        for i in range(0, len(events), 250):
            batch = sorted(events[i : i + 250], key=lambda e: e.printer_id)
            in_tx(engine, lambda s, b=batch: apply_readings(s, b, "api-readings", options, now))  # type: ignore[misc]
    finally:
        engine.dispose()


async def steady(args: argparse.Namespace, kind: str, url: str) -> dict[str, Any]:
    """The api applying readings as they come, args.rate per second (a poller's steady flow)."""
    import multiprocessing

    tag = secrets.token_hex(3)
    subjects = Subjects(f"bench{tag}", f"BENCH{tag.upper()}")
    bus = await Bus.connect(args.nats, subjects=subjects, name="api-ingest-bench")
    try:
        await bus.ensure_event_stream()
        count = int(args.rate * args.duration) if args.rate else args.readings
        start = datetime.now(UTC) - timedelta(days=2)
        shapes = snapshots(args.recordings)
        seed(url, readings(shapes, args.printers, args.printers, start - timedelta(seconds=30)))
        events = readings(shapes, args.printers, count, start)
        settings = Settings(
            nats_url=args.nats,
            database_url=url,
            subject_root=subjects.root,
            stream_prefix=subjects.stream_prefix,
            port=0,
            admin_password="bench-admin-pw",
        )
        engine = make_engine(url)
        stop = asyncio.Event()
        app = create_app(engine, bus, settings, stop=stop)
        task = asyncio.create_task(run_background(app.state.tw, stop))
        # Started: both consumers exist, and the announcer's first look (every printer's
        # coverage, at every start) has been applied: the window holds readings only.
        begun = time.perf_counter()
        while time.perf_counter() - begun < 600:
            await asyncio.sleep(0.5)
            left = [await pending(bus, d) for d in (*CONSUMERS, "api-printers")]
            if time.perf_counter() - begun > 8 and left == [0] * len(left):
                break
        tx_cpu = _count_tx_cpu()
        spawn = multiprocessing.get_context("spawn")
        ready = spawn.Event()
        proc = spawn.Process(
            target=_publisher,
            args=(
                args.nats,
                subjects.root,
                subjects.stream_prefix,
                [e.to_bytes() for e in events],
                args.rate,
                ready,
            ),
        )
        limit = args.duration * 3 + 60 if args.rate else DRAIN_LIMIT_S
        proc.start()
        await asyncio.to_thread(ready.wait, 300)
        profiles = _profile_threads() if args.cprofile else None
        t0, c0 = time.perf_counter(), time.process_time()
        done: dict[str, float] = {}
        published = 0.0  # when the publisher was done: the api cannot drain faster
        while time.perf_counter() - t0 < limit and len(done) < len(CONSUMERS):
            await asyncio.sleep(0.1)
            if proc.is_alive():
                continue
            published = published or time.perf_counter() - t0
            for durable in CONSUMERS:
                if durable not in done and await pending(bus, durable) == 0:
                    done[durable] = time.perf_counter() - t0
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if profiles is not None:
            _write_profile(profiles, args.cprofile)
        proc.join(10)
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        rows = count_rows(engine)
        engine.dispose()
        return {
            "database": kind,
            "readings": count,
            "printers": args.printers,
            "rate": args.rate,
            "drained": len(done) == len(CONSUMERS),
            "left": {d: None for d in CONSUMERS if d not in done},
            "readings_s": done.get("api-readings"),
            "usage_s": done.get("api-usage-polling"),
            "per_s": count / wall,
            "wall_s": wall,
            "published_s": published,
            "cpu_ms": 1000 * cpu / count,
            "tx_cpu_ms": 1000 * tx_cpu[0] / count,
            "transactions": tx_cpu[1],
            "rows": rows,
        }
    finally:
        with contextlib.suppress(Exception):
            async for name in _streams(bus):
                if name.startswith(subjects.stream_prefix) or name.startswith(
                    f"KV_{subjects.stream_prefix}"
                ):
                    await bus.js.delete_stream(name)
        await bus.nc.close()


async def _streams(bus: Bus) -> Any:
    for info in await bus.js.streams_info():
        yield info.config.name


def count_rows(engine: Any) -> dict[str, int]:
    from sqlalchemy import text

    with engine.connect() as conn:

        def one(sql: str) -> int:
            return int(conn.execute(text(sql)).scalar() or 0)

        return {
            "reading_rows": one("SELECT count(*) FROM readings"),
            "counter_rows": one("SELECT count(*) FROM counter_readings"),
            "processed": one("SELECT count(*) FROM processed_events"),
            "seen": one("SELECT count(*) FROM printers WHERE last_seen_at IS NOT NULL"),
            "usage_ops": one("SELECT coalesce(sum(operations), 0) FROM network_usage_daily"),
        }


def one_run(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    with database(kind, args.pg) as url:
        add_printers(url, args.printers)
        if args.cold:
            return asyncio.run(drain(args, kind, url))
        return asyncio.run(steady(args, kind, url))


def line(label: str, r: dict[str, Any]) -> str:
    if r.get("rate"):
        return (
            f"| {r['database']} | {label} | {r['readings']:,} readings of {r['printers']:,} "
            f"printers at {r['rate']:g}/s | {r['cpu_ms']:.2f} ms ({r['tx_cpu_ms']:.2f} in "
            f"{r['transactions']:,} transactions) | {r['rows']['reading_rows']:,} / "
            f"{r['rows']['usage_ops']:,} |"
        )
    if not r["drained"]:
        return f"| {r['database']} | {label} | not drained in {DRAIN_LIMIT_S:.0f} s: {r['left']} |"
    rows = r["rows"]
    usage = f"{r['readings'] / r['usage_s']:,.0f}/s" if r["usage_s"] else "(in api-readings)"
    return (
        f"| {r['database']} | {label} | {r['readings']:,} readings of {r['printers']:,} printers "
        f"| {r['per_s']:,.0f}/s ({r['wall_s']:.1f} s; published in {r.get('published_s', 0):.1f} s) "
        f"| {r['readings'] / r['readings_s']:,.0f}/s "
        f"| {usage} | {r['cpu_ms']:.2f} ms "
        f"({r.get('tx_cpu_ms', 0):.2f} in {r.get('transactions', 0):,} transactions) "
        f"| {rows['reading_rows']:,} / {rows['usage_ops']:,} |"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--printers", type=int, default=2000)
    parser.add_argument("--readings", type=int, default=20000)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--recordings", default=",".join(RECORDINGS))
    parser.add_argument(
        "--nats", default=os.environ.get("TONERWATCH_BENCH_NATS", "nats://127.0.0.1:4222")
    )
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "TONERWATCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="readings per second as they come (not a backlog)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="with --rate: seconds")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="backlog published before the api starts, its printers never read before (their "
        "coverage announced twice in the window: at start and when monitoring begins)",
    )
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--compare", help="another tree: the same bench with its .venv, after")
    parser.add_argument("--compare-label", default="compared tree")
    parser.add_argument("--json", action="store_true", help="print one JSON line per run only")
    parser.add_argument("--debug-batches", action="store_true", help="log failed batches")
    parser.add_argument(
        "--cprofile", help="cProfile the drain (loop and transactions) into this file"
    )
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.debug_batches:
        logging.getLogger("tonerwatch_shared.bus").setLevel(logging.DEBUG)
    args.recordings = [r for r in args.recordings.split(",") if r]
    if not (1 <= args.printers <= 10_000 and 1 <= args.readings <= 200_000):
        sys.exit("--printers 1..10000, --readings 1..200000")
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    if args.json:
        for kind in kinds:
            print(json.dumps(one_run(args, kind)), flush=True)
        return
    print(f"machine: {machine()}; load average {load()}")
    if args.rate:
        print(
            "| database | code | readings as they come | api CPU per reading (of it in "
            "transactions) | reading rows / usage ops |"
        )
        print("|---|---|---|---:|---|")
    else:
        print(
            "| database | code | backlog | drained, every readings consumer | api-readings alone "
            "| api-usage-polling | api CPU per reading (of it in transactions) "
            "| reading rows / usage ops |"
        )
        print("|---|---|---|---:|---:|---:|---:|---|")
    for kind in kinds:
        runs = [(args.label, one_run(args, kind))]
        print(line(*runs[0]), flush=True)
        if args.compare:
            other = Path(args.compare)
            cmd = [
                str(other / ".venv" / "bin" / "python"),
                str(Path(__file__).resolve()),
                "--json",
                f"--database={kind}",
                f"--printers={args.printers}",
                f"--readings={args.readings}",
                f"--recordings={','.join(args.recordings)}",
                f"--nats={args.nats}",
                f"--pg={args.pg}",
                f"--rate={args.rate}",
                f"--duration={args.duration}",
                *(["--cold"] if args.cold else []),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=other)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(line(args.compare_label, r), flush=True)
            a, b = runs[0][1], r
            if args.rate:
                print(f"|   | ratio | | {b['cpu_ms'] / a['cpu_ms']:.1f}x less CPU | |", flush=True)
            elif a["drained"] and b["drained"]:
                print(
                    f"|   | ratio {args.label} / {args.compare_label} | | "
                    f"{a['per_s'] / b['per_s']:.1f}x rate | | | {b['cpu_ms'] / a['cpu_ms']:.1f}x less CPU | |",
                    flush=True,
                )
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main(sys.argv[1:])
