"""Ingestion at full NATS rate: the api's consumers draining a backlog of readings from JetStream.

Prints (does not assert) readings per second and the api process's CPU per reading while the
api's background work (every consumer `tonerwatch serve api` runs: the readings projection, the
network-usage projection of the same readings, live updates, outbox, upkeep, coverage) drains a
backlog of SupplyReading events already in the stream. bench/ingest_bench.py measures the
readings projection alone (no NATS); this one measures the service.

    uv run python bench/api_ingest_bench.py [--printers 2000] [--readings 20000]
        [--batch 1,128] [--database sqlite|postgresql|both] [--compare /work/other-tree]
        [--cprofile out.txt] [--history-days 0,28 [--history-rate 1.0]]

--batch: readings per message. 1 publishes each SupplyReading alone (pollers before readings
went out in batches, or with TONERWATCH_READING_BATCH_MAX=1); N > 1 publishes them N to a
SupplyReadingBatch, as a poller does (tonerwatch_poller/batching.py: up to 128 a message under
load, 8-9 at a steady 30 polls/s). Several sizes (comma-separated) run one after another.

Readings: the shapes of the demo recordings (shared/printer-walks, parsed as the poller parses
them), each printer one recording, levels falling and counters rising from reading to reading.
The printers are stored first (PrinterConfigured applied directly), the readings published into
a stream of their own on --nats (a unique subject root and stream prefix, deleted after), then
run_background (service.py) starts and the bench waits until the readings consumers
(api-readings, and api-usage-polling in code from before it retired) have nothing pending or
unacknowledged. CPU is the whole
process's (every thread) over that drain; the publishing is done before it starts.

--history-days D (several, comma-separated, run in turn): 0 is the bench as it was (levels fall 0.1
a reading, 30 s apart: envelopes of minutes, under the 2 days a forecast needs, so none is fitted).
D > 0 gives every printer the supply states D days of service would leave: each supply used
--history-rate points a day (a fine reporter, levels to 0.01 as the demo's history), polled every
5 minutes (PollConfig's default interval) up to the window, whose readings go on the same way, 5
minutes apart (about one in three a new low at 1 %/day). The envelope those polls leave (every
new low, thinned past MAX_POINTS: fc.add_point, the product's own fold) is written to
supply_states between two readings applied by the product (apply_readings), so the last of them
fits its forecast over it as the api does: envelopes of 150-200 points, forecasts over 80. The
readings table holds those two readings a supply, not D days of them, and monitoring runs from
the first of the two.

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
# The process as the `tonerwatch` command makes it (its imports, its garbage collector's thresholds)
# before anything of the api is imported.
import tonerwatch  # noqa: F401, I001
from e2e import cpu_s, load, machine, pg_database

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_default_site, in_tx, upgrade
from tonerwatch_api.projections.printers import ProjectionOptions, apply_event
from tonerwatch_api.projections.readings import apply_readings
from tonerwatch_api.service import Settings, run_background
from tonerwatch_shared import forecast as fc
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    Event,
    PrinterConfigured,
    SnmpCredentials,
    SupplyReading,
    SupplyReadingBatch,
    encode_batch,
)
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
# What a poller puts in one message at most (tonerwatch_poller/batching.py, ReadingBatcher's
# max_readings): a backlog arrives in batches this large.
POLLER_BATCH_MAX = 128


def _consumers() -> tuple[str, ...]:
    """The durables that take readings in the code under test (api-usage-polling before it retired)."""
    from tonerwatch_api.projections.activity import activity_consumers

    usage = {spec.durable for spec, _ in activity_consumers(Subjects())} & {"api-usage-polling"}
    return ("api-readings", *sorted(usage))


CONSUMERS = _consumers()


def snapshots(names: list[str]) -> list[PrinterSnapshot]:
    return [clamp_snapshot(parse_snapshot(load_snmprec(WALKS / f"{n}.snmprec"))) for n in names]


def readings(
    shapes: list[PrinterSnapshot],
    printers: int,
    count: int,
    start: datetime,
    *,
    history: History | None = None,
    first_round: int = 0,
) -> list[SupplyReading]:
    """count readings, round robin over the printers, each reading of a printer a bit later.

    history: levels and times of its service (one poll interval apart, round 0 at start);
    rounds may be negative (its past). None: the bench's own, 30 s apart, 0.1 lower each.
    """
    out = []
    for i in range(count):
        p, round_ = i % printers, first_round + i // printers
        shape = shapes[p % len(shapes)]
        supplies = tuple(
            s.model_copy(
                update={
                    "percent": history.percent(s.percent, round_)
                    if history
                    else max(0.0, s.percent - 0.1 * round_)
                }
            )
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
                occurred_at=start
                + timedelta(seconds=(history.every_s if history else 30) * round_, milliseconds=p),
            )
        )
    return out


class History:
    """Weeks of service before the window: each supply used rate points a day, polled every every_s."""

    def __init__(self, days: float, rate_per_day: float, every_s: float = 300.0) -> None:
        self.days, self.rate, self.every_s = days, rate_per_day, every_s
        self.polls = int(days * fc.DAY_S / every_s)

    def percent(self, now: float, round_: int) -> float:
        """The level round_ polls after the window's start (negative: before), now the level then."""
        used = self.rate * round_ * self.every_s / fc.DAY_S
        return round(min(100.0, max(0.0, now - used)), 2)

    def kept(self, now: float) -> list[tuple[int, float]]:
        """The (round, level) of the polls before round -1 a supply's envelope keeps (fc.add_point).

        add_point compares times only by their order, the same for every printer: the fold over
        rounds is the fold over any printer's times.
        """
        envelope: list[fc.Point] = []
        for round_ in range(-self.polls, -1):
            envelope = fc.add_point(envelope, float(round_), self.percent(now, round_))
        return [(int(r), level) for r, level in envelope]


def add_history(
    url: str, shapes: list[PrinterSnapshot], printers: int, history: History, start: datetime
) -> None:
    """Leave every printer's supplies as history.days of service would (see the module's doc)."""
    first = readings(shapes, printers, printers, start, history=history, first_round=-2)
    seed(url, first)
    kept = {
        (shape_i, s.index): history.kept(s.percent)
        for shape_i, shape in enumerate(shapes)
        for s in shape.supplies
        if s.percent is not None
    }
    rows = []
    for event in first:
        p = int(event.printer_id.removeprefix("p-bench"))
        for s in shapes[p % len(shapes)].supplies:
            if s.percent is None:
                continue
            at = [
                (start + timedelta(seconds=history.every_s * r, milliseconds=p)).timestamp()
                for r, _ in kept[(p % len(shapes), s.index)]
            ]
            envelope = [
                [t, level]
                for t, (_, level) in zip(at, kept[(p % len(shapes), s.index)], strict=True)
            ]
            rows.append({"pid": event.printer_id, "idx": s.index, "envelope": envelope})
    from sqlalchemy import bindparam, update

    from tonerwatch_api.db.models import SupplyStateRow

    states = SupplyStateRow.__table__  # type: ignore[attr-defined]
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for i in range(0, len(rows), 1000):
                conn.execute(
                    update(states)
                    .where(states.c.printer_id == bindparam("pid"))
                    .where(states.c.supply_index == bindparam("idx"))
                    .values(envelope=bindparam("envelope")),
                    rows[i : i + 1000],
                )
    finally:
        engine.dispose()
    seed(url, readings(shapes, printers, printers, start, history=history, first_round=-1))


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


def batched(events: list[SupplyReading], size: int) -> list[Event]:
    """The readings as a poller publishes them: size to a SupplyReadingBatch (1: each alone)."""
    if size <= 1:
        return list(events)
    return [
        SupplyReadingBatch(
            source="bench", site_id=events[i].site_id, readings=tuple(events[i : i + size])
        )
        for i in range(0, len(events), size)
    ]


def wire(event: Event) -> bytes:
    """The JSON a poller sends: a batch as tonerwatch_poller/batching.py writes it (encode_batch)."""
    if isinstance(event, SupplyReadingBatch):
        return encode_batch(
            [r.to_bytes() for r in event.readings],
            site_id=event.site_id,
            source=event.source,
            event_id=event.event_id,
            occurred_at=event.occurred_at,
        )
    return event.to_bytes()


async def send(bus: Bus, event: Event, data: bytes) -> None:
    await bus.publish_json(
        event.subject(bus.subjects),
        data,
        event_id=str(event.event_id),
        type_=event.type,  # type: ignore[attr-defined]
        timeout_s=30,
    )


async def publish(bus: Bus, events: list[Event]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(events), 500):
        await asyncio.gather(*(send(bus, e, wire(e)) for e in events[i : i + 500]))
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
        publish_s = await publish(bus, batched(events, args.batch))
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
            "batch": args.batch,
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


class Others:
    """CPU of the other processes the drain makes work: PostgreSQL's and nats-server's.

    PostgreSQL: the backends connected to the bench's own database (pg_stat_activity), each
    counted from when the window started (or it connected); the server's shared background
    processes (WAL writer, checkpointer) are not counted. nats-server: the whole process serving
    --nats (other work on it counts too: a figure to read with the load).
    """

    def __init__(self, url: str, nats_url: str) -> None:
        self.url = url if url.startswith("postgresql") else None
        port = nats_url.rsplit(":", 1)[-1].strip("/")
        self.nats_pid = _nats_pid(port)
        self.start: dict[int, float] = {}
        self.nats0 = cpu_s(self.nats_pid) if self.nats_pid else 0.0

    def _backends(self) -> list[int]:
        if self.url is None:
            return []
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return [
                int(pid)
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ]

    def begin(self) -> None:
        self.start = {pid: cpu_s(pid) for pid in self._backends()}
        self.nats0 = cpu_s(self.nats_pid) if self.nats_pid else 0.0

    def end(self) -> dict[str, float | None]:
        pg = None
        if self.url is not None:
            pg = sum(cpu_s(pid) - self.start.get(pid, 0.0) for pid in self._backends())
        nats = cpu_s(self.nats_pid) - self.nats0 if self.nats_pid else None
        return {"pg_cpu_s": pg, "nats_cpu_s": nats}


def _nats_pid(port: str) -> int | None:
    """The nats-server listening on port (its command line names -p port), None if not found."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "nats-server":
                continue
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if port.encode() in args or f"0.0.0.0:{port}".encode() in b" ".join(args):
            return int(proc.name)
    return None


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
    """cProfile (CPU time) the event loop's thread and every transaction of the worker threads."""
    import cProfile
    import threading

    from tonerwatch_api.db import tx

    # CPU time of each thread (time.thread_time), not wall time: on a loaded machine a wall-clock
    # profile cannot tell work from waiting for a core or for the database.
    profiles: list[Any] = [cProfile.Profile(time.thread_time)]
    profiles[0].enable()
    mine = threading.local()
    plain = tx.in_tx

    def in_tx(engine: Any, fn: Any) -> Any:
        prof = getattr(mine, "prof", None)
        if prof is None:
            prof = mine.prof = cProfile.Profile(time.thread_time)
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
    """Publish the events (JSON) at rate per second (0: as fast as it can), from a process of its own.

    rate counts events (messages): a batch of N readings at rate / N per second.
    """
    from tonerwatch_shared.events import parse_event

    async def go() -> None:
        bus = await Bus.connect(nats_url, subjects=Subjects(root, prefix), name="bench-publisher")
        events = [(parse_event(blob), blob) for blob in blobs]
        ready.set()  # the window starts now
        if not rate:
            for i in range(0, len(events), 200):
                await asyncio.gather(*(send(bus, e, blob) for e, blob in events[i : i + 200]))
        t0 = time.perf_counter()
        for i, (event, blob) in enumerate(events if rate else []):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await send(bus, event, blob)
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
        history = History(args.history_days, args.history_rate) if args.history_days else None
        if history is not None:
            add_history(url, shapes, args.printers, history, start)
        else:
            seed(url, readings(shapes, args.printers, args.printers, start - timedelta(seconds=30)))
        events = readings(shapes, args.printers, count, start, history=history)
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
                [wire(e) for e in batched(events, args.batch)],
                args.rate / max(1, args.batch),
                ready,
            ),
        )
        limit = args.duration * 3 + 60 if args.rate else DRAIN_LIMIT_S
        proc.start()
        await asyncio.to_thread(ready.wait, 300)
        profiles = _profile_threads() if args.cprofile else None
        others = Others(url, args.nats)
        await asyncio.to_thread(others.begin)
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
        other_cpu = await asyncio.to_thread(others.end)
        proc.join(10)
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        rows = count_rows(engine)
        engine.dispose()
        return {
            "database": kind,
            "batch": args.batch,
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
            **{
                k.replace("_cpu_s", "_ms"): None if v is None else 1000 * v / count
                for k, v in other_cpu.items()
            },
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
            # What the forecasts were fitted over at the end: points a supply's envelope holds
            # (json_array_length: SQLite's JSON1, PostgreSQL's json arrays), forecasts made.
            "envelope_points": one(
                "SELECT coalesce(max(json_array_length(envelope)), 0) FROM supply_states"
                + (
                    " WHERE json_typeof(envelope) = 'array'"
                    if engine.dialect.name == "postgresql"
                    else ""
                )
            ),
            "forecasts": one("SELECT count(*) FROM supply_states WHERE use_per_day IS NOT NULL"),
        }


def one_run(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    with database(kind, args.pg) as url:
        add_printers(url, args.printers)
        if args.cold:
            return asyncio.run(drain(args, kind, url))
        return asyncio.run(steady(args, kind, url))


def _others(r: dict[str, Any]) -> str:
    """PostgreSQL backends' and nats-server's CPU per reading ("-": not measured)."""

    def ms(key: str) -> str:
        value = r.get(key)
        return "-" if value is None else f"{value:.2f}"

    return f"{ms('pg_ms')} / {ms('nats_ms')} ms"


def line(label: str, r: dict[str, Any]) -> str:
    if r.get("rate"):
        return (
            f"| {r['database']} | {label} | {r.get('batch', 1)} "
            f"| {r['readings']:,} readings of {r['printers']:,} printers at {r['rate']:g}/s "
            f"| {r['cpu_ms']:.2f} ms ({r['tx_cpu_ms']:.2f} in {r['transactions']:,} transactions) "
            f"| {_others(r)} | {r['rows']['reading_rows']:,} / "
            f"{r['rows']['usage_ops']:,} |"
        )
    if not r["drained"]:
        return (
            f"| {r['database']} | {label} | {r.get('batch', 1)} "
            f"| not drained in {DRAIN_LIMIT_S:.0f} s: {r['left']} |"
        )
    rows = r["rows"]
    usage = f"{r['readings'] / r['usage_s']:,.0f}/s" if r["usage_s"] else "(in api-readings)"
    return (
        f"| {r['database']} | {label} | {r.get('batch', 1)} "
        f"| {r['readings']:,} readings of {r['printers']:,} printers "
        f"| {r['per_s']:,.0f}/s ({r['wall_s']:.1f} s; published in {r.get('published_s', 0):.1f} s) "
        f"| {r['readings'] / r['readings_s']:,.0f}/s "
        f"| {usage} | {r['cpu_ms']:.2f} ms "
        f"({r.get('tx_cpu_ms', 0):.2f} in {r.get('transactions', 0):,} transactions) "
        f"| {_others(r)} | {rows['reading_rows']:,} / {rows['usage_ops']:,} "
        f"| {rows.get('envelope_points', '-')} / {rows.get('forecasts', '-'):,} |"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--printers", type=int, default=2000)
    parser.add_argument("--readings", type=int, default=20000)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--batch",
        default=str(POLLER_BATCH_MAX),
        help="readings per message, comma-separated sizes run in turn (1: each reading alone; "
        f"default {POLLER_BATCH_MAX}, the poller's largest batch)",
    )
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
    parser.add_argument(
        "--history-days",
        default="0",
        help="days of service before the window (0: none, the bench's own levels); several, "
        "comma-separated, run in turn",
    )
    parser.add_argument(
        "--history-rate", type=float, default=1.0, help="with --history-days: points used a day"
    )
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--compare", help="another tree: the same bench with its .venv, after")
    parser.add_argument("--compare-label", default="compared tree")
    parser.add_argument("--json", action="store_true", help="print one JSON line per run only")
    parser.add_argument("--debug-batches", action="store_true", help="log failed batches")
    parser.add_argument(
        "--cprofile",
        help="cProfile the drain (loop and transactions, CPU time) into this file",
    )
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.debug_batches:
        logging.getLogger("tonerwatch_shared.bus").setLevel(logging.DEBUG)
    args.recordings = [r for r in args.recordings.split(",") if r]
    if not (1 <= args.printers <= 10_000 and 1 <= args.readings <= 200_000):
        sys.exit("--printers 1..10000, --readings 1..200000")
    sizes = [int(b) for b in str(args.batch).split(",") if b]
    if not sizes or not all(1 <= b <= 1000 for b in sizes):
        sys.exit("--batch: sizes 1..1000 (SupplyReadingBatch's largest)")
    histories = [float(d) for d in str(args.history_days).split(",") if d]
    if not histories or not all(0 <= d <= 120 for d in histories):
        sys.exit("--history-days: 0..120 days")
    if args.cold and any(histories):
        sys.exit("--history-days: not with --cold (its printers are never read before)")
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    if args.json:
        for kind in kinds:
            for size in sizes:
                for days in histories:
                    args.batch, args.history_days = size, days
                    print(json.dumps(one_run(args, kind)), flush=True)
        return
    print(f"machine: {machine()}; load average {load()}")
    if args.rate:
        print(
            "| database | code | readings per message | readings as they come | api CPU per "
            "reading (of it in transactions) | PostgreSQL backends / nats-server CPU per "
            "reading | reading rows / usage ops |"
        )
        print("|---|---|---:|---|---:|---:|---|")
    else:
        print(
            "| database | code | readings per message | backlog | drained, every readings "
            "consumer | api-readings alone | api-usage-polling | api CPU per reading (of it in "
            "transactions) | PostgreSQL backends / nats-server CPU per reading "
            "| reading rows / usage ops | envelope points (most) / forecasts at the end |"
        )
        print("|---|---|---:|---|---:|---:|---:|---:|---:|---|---|")
    label = args.label
    for kind, size, days in [(k, b, d) for k in kinds for b in sizes for d in histories]:
        args.batch, args.history_days = size, days
        args.label = f"{label}, {days:g}-day history" if days else label
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
                f"--batch={size}",
                f"--recordings={','.join(args.recordings)}",
                f"--nats={args.nats}",
                f"--pg={args.pg}",
                f"--rate={args.rate}",
                f"--duration={args.duration}",
                f"--history-days={days:g}",
                f"--history-rate={args.history_rate}",
                *(["--cold"] if args.cold else []),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=other)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            compared = f"{args.compare_label}, {days:g}-day history" if days else args.compare_label
            print(line(compared, r), flush=True)
            a, b = runs[0][1], r
            if args.rate:
                print(
                    f"|   | ratio | | | {b['cpu_ms'] / a['cpu_ms']:.1f}x less CPU | | |", flush=True
                )
            elif a["drained"] and b["drained"]:
                print(
                    f"|   | ratio {args.label} / {compared} | | | "
                    f"{a['per_s'] / b['per_s']:.1f}x rate | | | {b['cpu_ms'] / a['cpu_ms']:.1f}x less CPU | | |",
                    flush=True,
                )
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main(sys.argv[1:])
