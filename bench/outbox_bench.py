"""The api's outbox flush rate: N PrinterConfigured rows (a CSV import's) published to NATS.

Queues N PrinterConfigured events in the outbox of a fresh SQLite database (as
`POST /api/v1/printers/bulk` does), then times `Outbox.flush()` until the outbox is empty, into
an events stream of the run's own (a unique prefix, deleted after) on the given NATS. Each round
runs every variant once, one after another, so the ratios of one run compare like with like on a
noisy machine:

- one at a time: window 1, 200 rows a batch (what the outbox did before: each publish awaited its
  ack before the next);
- window W (each of --windows): up to W publishes awaiting their acks at once, 1,000 rows a batch (the outbox now).

Bounded by N, the rounds and the flush's own publish timeouts.

    uv run python bench/outbox_bench.py [--events 10000] [--rounds 2] [--windows 256 ...]
                                        [--nats-url nats://127.0.0.1:4222 | --embedded]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from e2e import load, machine
from nats_floor_bench import Server
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tonerwatch_api.db.tx import ensure_default_site, in_tx, upgrade
from tonerwatch_api.projections.outbox import Outbox, add_to_outbox
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured, SnmpCredentials
from tonerwatch_shared.storage import make_engine
from tonerwatch_shared.subjects import Subjects

RESULTS = Path(__file__).parent / "results" / "outbox.md"


def queue(engine: Engine, n: int) -> None:
    """Queue n PrinterConfigured events, one per printer, in one transaction (a CSV import's)."""
    events = [
        PrinterConfigured(
            source="bench",
            site_id="default",
            printer_id=f"p-{i:05d}",
            address=f"127.1.{i // 250}.{i % 250 + 1}",
            port=161,
            credentials=SnmpCredentials(community="public"),
            name=f"Printer {i}",
        )
        for i in range(n)
    ]

    def add(s: Session) -> None:
        for e in events:
            add_to_outbox(s, e)

    in_tx(engine, add)


async def one(
    url: str, n: int, window: int, limit: int, folder: Path, server: Server | None
) -> tuple[float, float, float]:
    """Return (wall seconds, this process's CPU seconds, nats-server's) to flush n queued events."""
    engine = make_engine(f"sqlite:///{folder / f'outbox-{uuid.uuid4().hex[:8]}.db'}")
    upgrade(engine)
    ensure_default_site(engine, "default")
    queue(engine, n)
    tag = uuid.uuid4().hex[:10]
    subjects = Subjects(root=f"b{tag}", stream_prefix=f"B{tag}")
    bus = await Bus.connect(url, subjects=subjects, name="outbox-bench", attempts=3)
    try:
        await bus.ensure_event_stream()
        outbox = Outbox(engine, bus, window=window)
        nats0 = server.cpu() if server is not None else 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        sent = await outbox.flush(limit=limit)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        nats_cpu = server.cpu() - nats0 if server is not None else float("nan")
        info = await bus.js.stream_info(subjects.events_stream)
        assert sent == n and info.state.messages == n, (sent, info.state.messages)
        return wall, cpu, nats_cpu
    finally:
        await bus.js.delete_stream(subjects.events_stream)
        await bus.drain()
        engine.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--windows", type=int, nargs="+", default=[256])
    ap.add_argument(
        "--nats-url", default=os.environ.get("TONERWATCH_TEST_NATS_URL", "nats://127.0.0.1:4222")
    )
    ap.add_argument(
        "--embedded",
        action="store_true",
        help="a private nats-server started as `tonerwatch up` starts it (fsync before each ack)",
    )
    args = ap.parse_args()
    server = Server() if args.embedded else None
    url = server.url if server is not None else args.nats_url
    variants = [("one at a time (window 1, 200 a batch)", 1, 200)]
    variants += [(f"window {w} (1,000 a batch)", w, 1000) for w in args.windows]
    load_start = load()
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in variants}
    try:
        with tempfile.TemporaryDirectory(prefix="tw-outbox-") as folder:
            for _ in range(args.rounds):
                for name, window, limit in variants:
                    got = await one(url, args.events, window, limit, Path(folder), server)
                    results[name].append(got)
    finally:
        if server is not None:
            server.close()
    load_end = load()
    where = "embedded as `up` starts it (fsync always)" if server else url
    base = statistics.median(r[0] for r in results[variants[0][0]])
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.events:,} PrinterConfigured, "
        f"{args.rounds} rounds",
        "",
        f"{machine()}; load {load_start} -> {load_end}; NATS {where}; SQLite; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
        "",
        "| variant | flush, median of rounds (s) | events/s | CPU per event, api / nats-server (ms) "
        "| speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, _, _ in variants:
        wall, cpu, nats_cpu = (statistics.median(r[i] for r in results[name]) for i in range(3))
        lines.append(
            f"| {name} | {wall:.2f} (all: {', '.join(f'{r[0]:.2f}' for r in results[name])}) "
            f"| {args.events / wall:,.0f} | {cpu / args.events * 1000:.3f} / "
            f"{nats_cpu / args.events * 1000:.3f} | {base / wall:.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    fresh = not RESULTS.exists()
    with RESULTS.open("a") as f:
        f.write(("# bench/outbox_bench.py\n\n" if fresh else "") + text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
