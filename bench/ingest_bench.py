"""Ingestion bench: readings applied row by row (the ORM path) vs in set-based batches, side by side.

Prints (does not assert) readings per second and CPU per reading of the api's readings projection
on SQLite and PostgreSQL, in one run: the same readings of the same printers, applied in
transactions of --batch readings, first as the projector applied them before issue 15 (apply_event
on each reading in turn) and then with apply_readings (one set of statements per batch). No NATS:
this is the projection alone, the part the api spent its time in.

    uv run python bench/ingest_bench.py [--printers 1000] [--readings 3000] [--batch 50]
        [--database sqlite|postgresql|both]

PostgreSQL: a database of its own on TONERWATCH_BENCH_PG (default
postgresql://postgres@127.0.0.1:5432/postgres), dropped after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from tonerwatch_api.db.tx import ensure_default_site, in_tx, upgrade
from tonerwatch_api.projections.printers import ProjectionOptions, apply_event
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.projections.readings import apply_readings
from tonerwatch_shared.events import PrinterConfigured, SnmpCredentials, SupplyReading
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterIdentity,
    Supply,
    SupplyKind,
    SupplyState,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import load, machine, pg_database

IDENTITY = PrinterIdentity(vendor="HP", model="HP LaserJet Pro M252dw", serial="CNB0000001")


def supplies(level: float) -> tuple[Supply, ...]:
    return tuple(
        Supply(
            index=str(i + 1),
            description=f"{colour} Cartridge HP 201A",
            kind=SupplyKind.TONER,
            colour=colour,
            level=int(level),
            max_capacity=100,
            percent=level,
            state=SupplyState.OK,
        )
        for i, colour in enumerate(("black", "cyan", "magenta", "yellow"))
    )


def events(printers: int, readings: int, start: datetime) -> list[SupplyReading]:
    return [
        SupplyReading(
            source="bench",
            site_id="default",
            printer_id=f"p-bench{i % printers:05d}",
            address="127.0.0.1",
            printer=IDENTITY,
            supplies=supplies(90.0 - (i // printers) * 0.1),
            counters=Counters(lifetime_pages=1000 + i, mono_pages=800 + i),
            occurred_at=start + timedelta(seconds=i),
        )
        for i in range(readings)
    ]


def row_by_row(engine: Engine, batch: list[SupplyReading], now: datetime) -> None:
    """The projector before issue 15: apply_event on each reading in one transaction."""
    options = ProjectionOptions()
    ordered = sorted(batch, key=lambda e: (e.printer_id, e.occurred_at))
    in_tx(engine, lambda s: [apply_event(s, e, "api-readings", options, now) for e in ordered])


def set_based(engine: Engine, batch: list[SupplyReading], now: datetime) -> None:
    options = ProjectionOptions()
    ordered = sorted(batch, key=lambda e: (e.printer_id, e.occurred_at))
    in_tx(engine, lambda s: apply_readings(s, ordered, "api-readings", options, now))


def measure(
    engine: Engine,
    how: Callable[[Engine, list[SupplyReading], datetime], None],
    todo: list[SupplyReading],
    batch: int,
) -> tuple[float, float]:
    """(readings per second, CPU ms per reading) applying todo in batches."""
    now = datetime.now(UTC)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(todo), batch):
        how(engine, todo[i : i + batch], now)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return len(todo) / wall, 1000 * cpu / len(todo)


@contextlib.contextmanager
def database(kind: str, pg: str) -> Iterator[Engine]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tonerwatch-ingest-") as tmp:
            from tonerwatch_shared.storage import make_engine, sqlite_url

            engine = make_engine(sqlite_url(Path(tmp)))
            yield engine
            engine.dispose()
    else:
        with pg_database(pg) as url:
            engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
            yield engine
            engine.dispose()


def run(kind: str, args: argparse.Namespace) -> list[str]:
    with database(kind, args.pg) as engine:
        upgrade(engine)
        ensure_default_site(engine, "default")
        for i in range(args.printers):
            apply_now(
                engine,
                PrinterConfigured(
                    source="bench",
                    site_id="default",
                    printer_id=f"p-bench{i:05d}",
                    address="127.0.0.1",
                    port=16100 + i,
                    credentials=SnmpCredentials(community="public"),
                ),
            )
        start = datetime.now(UTC) - timedelta(days=1)
        # Warm both paths (first statements, caches), then the same count of readings each,
        # later ones for the set-based path so each applies new readings on top of the others.
        row_by_row(engine, events(args.printers, args.batch, start), datetime.now(UTC))
        later = start + timedelta(hours=1)
        set_based(engine, events(args.printers, args.batch, later), datetime.now(UTC))
        old_rate, old_cpu = measure(
            engine,
            row_by_row,
            events(args.printers, args.readings, start + timedelta(hours=2)),
            args.batch,
        )
        new_rate, new_cpu = measure(
            engine,
            set_based,
            events(args.printers, args.readings, start + timedelta(hours=4)),
            args.batch,
        )
    return [
        f"| {kind} | {args.readings:,} readings of {args.printers:,} printers, batches of "
        f"{args.batch} | {old_rate:,.0f}/s, {old_cpu:.2f} ms CPU | {new_rate:,.0f}/s, "
        f"{new_cpu:.2f} ms CPU | {new_rate / old_rate:.1f}x | {old_cpu / new_cpu:.1f}x |"
    ]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--printers", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "TONERWATCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args(argv)
    if not (1 <= args.printers <= 10_000 and 1 <= args.readings <= 100_000):
        sys.exit("--printers 1..10000, --readings 1..100000")
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    print(f"machine: {machine()}; load average {load()}")
    print(
        "| database | readings | row by row (before) | set-based (after) | rate ratio | CPU ratio |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for kind in kinds:
        for line in run(kind, args):
            print(line, flush=True)
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main(sys.argv[1:])
