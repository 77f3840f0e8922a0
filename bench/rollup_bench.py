"""Rollup bench: the history upkeep's rollup of raw readings into hourly and daily buckets, in SQL.

Prints (does not assert) raw rows rolled up per second and the api process's CPU per 1,000 rows,
on SQLite and PostgreSQL: --rows raw supply readings (and a counter reading per 5 of them) of
--printers printers over two days are inserted, then `maintain()` rolls them up in its batches
(RetentionPolicy.batch, 5,000). Since issue 15 the merge is one INSERT ... SELECT ... GROUP BY ...
ON CONFLICT per bucket table (retention.py); the rows never come to Python. "before" runs
retention.py as it was at --before (read from git: rows read into Python, merged there, upserted),
on the same rows in the same run.

    uv run python bench/rollup_bench.py [--rows 100000] [--printers 1000] [--database both]

PostgreSQL: a database of its own on TONERWATCH_BENCH_PG (default
postgresql://postgres@127.0.0.1:5432/postgres), dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from tonerwatch_api.db.models import CounterReading, Reading
from tonerwatch_api.db.tx import ensure_default_site, in_tx, upgrade
from tonerwatch_api.domain import retention
from tonerwatch_api.domain.retention import table_of
from tonerwatch_api.projections.printers import ProjectionOptions, apply_event
from tonerwatch_shared.events import PrinterConfigured
from tonerwatch_shared.storage import make_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import load, machine, pg_database


def fill(engine: Engine, rows: int, printers: int) -> None:
    rnd = random.Random(15)
    now = datetime.now(UTC)
    ids = [f"p{i:05d}" for i in range(printers)]
    options = ProjectionOptions()
    for pid in ids:
        event = PrinterConfigured(
            source="bench", site_id="default", printer_id=pid, address="127.0.0.1"
        )
        in_tx(engine, lambda s, e=event: apply_event(s, e, "bench", options, now))
    start = now - timedelta(days=2)
    levels, counters = [], []
    for n in range(rows):
        pid = ids[n // 5 % printers]
        at = start + timedelta(seconds=rnd.randrange(2 * 86400))
        percent = rnd.choice((None, *range(0, 101, 5)))
        levels.append(
            {
                "printer_id": pid,
                "supply_index": str(n % 5 + 1),
                "occurred_at": at,
                "percent": percent,
                "level": percent,
            }
        )
        if n % 5 == 0:
            counters.append(
                {
                    "printer_id": pid,
                    "occurred_at": at,
                    "lifetime_pages": 1000 + n,
                    "mono_pages": n,
                    "colour_pages": None,
                    "duplex_pages": None,
                }
            )
    with engine.begin() as conn:
        for i in range(0, len(levels), 5000):
            conn.execute(insert(table_of(Reading)), levels[i : i + 5000])
        for i in range(0, len(counters), 5000):
            conn.execute(insert(table_of(CounterReading)), counters[i : i + 5000])


ROOT = Path(__file__).resolve().parents[1]
RETENTION = "services/api/src/tonerwatch_api/domain/retention.py"


def retention_at(commit: str) -> types.ModuleType:
    """Return retention.py as it was at commit, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{commit}:{RETENTION}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"retention_{commit}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{commit}:{RETENTION}", "exec"), module.__dict__)
    return module


def measure(name: str, engine: Engine, args: argparse.Namespace, code: types.ModuleType) -> str:
    upgrade(engine)
    ensure_default_site(engine, "default")
    fill(engine, args.rows, args.printers)
    policy = code.RetentionPolicy(raw_days=30, hourly_days=365, max_batches=10_000)
    wall, cpu = time.monotonic(), time.process_time()
    totals = asyncio.run(code.maintain(engine, policy))
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    rows = totals.rolled_readings + totals.rolled_counters
    return (
        f"| {name} | {totals.rolled_readings:,} + {totals.rolled_counters:,} | {wall:.2f} s | "
        f"{rows / wall:,.0f} | {cpu * 1000 / rows * 1000:.1f} ms |"
    )


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--printers", type=int, default=1000)
    ap.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument(
        "--pg",
        default=os.environ.get(
            "TONERWATCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    ap.add_argument("--before", default="c3c4d2c", help="commit whose retention.py is 'before'")
    args = ap.parse_args(argv)
    variants = [(f"before ({args.before})", retention_at(args.before)), ("after (SQL)", retention)]
    print(f"machine: {machine()}; load {load()}")
    print(f"{args.rows:,} raw supply readings of {args.printers:,} printers over two days\n")
    print(
        "| database, code | rows rolled up (supply + counter) | time | rows/s "
        "| api CPU per 1,000 rows |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, code in variants:
        if args.database in ("sqlite", "both"):
            with tempfile.TemporaryDirectory() as tmp:
                engine = make_engine(f"sqlite:///{tmp}/rollup.db")
                print(measure(f"SQLite, {label}", engine, args, code), flush=True)
                engine.dispose()
        if args.database in ("postgresql", "both"):
            with pg_database(args.pg) as url:
                engine = make_engine(url)
                print(measure(f"PostgreSQL, {label}", engine, args, code), flush=True)
                engine.dispose()
    print(f"\nload at the end: {load()}")


if __name__ == "__main__":
    main(sys.argv[1:])
