"""CPU per steady reading of `serve alerter` and `serve syncer` (and of nats-server), before/after in one run.

Prints (does not assert) figures for one bounded run on loopback only. One `tonerwatch serve
alerter` and one `tonerwatch serve syncer` process (no portal configured, as in bench/e2e.py) run
against a nats-server the bench starts (its own, so its CPU is theirs and the bench's alone; or
--nats-url with a unique subject root and stream prefix, deleted after). The bench publishes:

1. a first reading of every printer (their state is created: not measured);
2. --rounds steady readings of every printer at --rate readings/s: the same recorded levels,
   time and seq moving on, nothing crossing (what most readings of a real fleet are).

CPU (user + system, /proc) of each process from the first steady reading until both services'
reading consumers have acked all, per reading; the idle CPU of the services over --idle seconds
before (their fetch loops), as a share of a core. nats-server's CPU includes the bench's own
publishes (the same in both variants).

With --batches 1,30 the steady readings are published as SupplyReadingBatch events of that many
readings (1: each alone, as a poller with TONERWATCH_READING_BATCH_MAX=1), one variant per size
with the services as they are, at the same reading rate.

With --before REV the same runs first with the services of git revision REV (its tree extracted
to a temporary directory, put first on PYTHONPATH), so both figures come from the same machine
and minutes.

    uv run python bench/consumers_bench.py [--printers 500] [--rounds 4] [--rate 100]
        [--before REV] [--batches 1,30] [--recording jetdirect_m252dw] [--append]

Results are appended to bench/results/consumers.md with --append.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import cpu_s, load, machine, pss_kb
from poll_bench import WALKS

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats
from tonerwatch_shared.events import SupplyReading, SupplyReadingBatch
from tonerwatch_shared.printer.clamp import clamp_snapshot
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import delete_streams

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "consumers.md"
SERVICES = ("alerter", "syncer")
# Each service's durable consumer of the readings.
READING_DURABLES = {"alerter": "alerter", "syncer": "syncer_fleet_readings"}
START_TIMEOUT_S = 120.0
CATCH_UP_TIMEOUT_S = 300.0


@dataclass
class Figures:
    label: str
    readings: int
    window_s: float
    cpu_ms: dict[str, float]  # per reading
    idle_pct: dict[str, float]  # share of a core while idle
    pss_mb: dict[str, float]
    load_before: str
    load_after: str


def python_path(tree: Path | None) -> dict[str, str]:
    """PYTHONPATH putting an extracted tree's packages before the installed (editable) ones."""
    if tree is None:
        return {}
    paths = [tree / "src", tree / "shared" / "src"]
    paths += sorted((tree / "services").glob("*/src"))
    return {"PYTHONPATH": os.pathsep.join(str(p) for p in paths)}


def extract(rev: str, into: Path) -> Path:
    """Extract the tree of git revision rev into a directory under into."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    tree = into / f"tree-{rev[:12]}"
    tree.mkdir()
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def readings(template: SupplyReading, printers: int, seq: int) -> list[SupplyReading]:
    """One reading of every printer (same levels), numbered seq, timed now."""
    return [
        template.model_copy(
            update={
                "printer_id": f"bench-{i:05d}",
                "address": f"127.0.{i // 250}.{i % 250 + 1}",
                "seq": seq,
                "event_id": uuid.uuid4(),
                "occurred_at": dt.datetime.now(dt.UTC),
            }
        )
        for i in range(printers)
    ]


def template_reading(recording: str) -> SupplyReading:
    """A reading shaped as the poller publishes one of the recording's printer."""
    snapshot = clamp_snapshot(parse_snapshot(load_snmprec(WALKS / f"{recording}.snmprec")))
    return SupplyReading(
        source="poller/bench",
        site_id="default",
        printer_id="bench-00000",
        address="127.0.0.1",
        protocol="snmp",
        printer=snapshot.printer,
        supplies=snapshot.supplies,
        trays=snapshot.trays,
        counters=snapshot.counters,
        status=snapshot.status,
        missing=snapshot.missing,
        anomalies=snapshot.anomalies,
        bytes_sent=420,
        bytes_received=700,
        requests=1,
        duration_ms=0.1,
    )


def start_service(
    svc: str, prof: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start `tonerwatch serve svc` (under cProfile with prof), its output to log."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *prof, "-m", "tonerwatch", "serve", svc],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def caught_up(bus: Bus, subjects: Subjects, timeout_s: float) -> None:
    """Wait until every service's readings consumer has nothing pending nor unacked."""
    deadline = time.monotonic() + timeout_s
    while True:
        behind = 0
        for durable in READING_DURABLES.values():
            try:
                info = await bus.js.consumer_info(subjects.events_stream, subjects.name(durable))
            except Exception:
                behind += 1
                continue
            behind += info.num_pending + info.num_ack_pending
        if behind == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumers still {behind} behind after {timeout_s}s")
        await asyncio.sleep(0.1)


async def publish_at(bus: Bus, events: list[SupplyReading], rate: float, batch: int = 1) -> None:
    """Publish events at rate per second (each awaits its ack, as the poller's do), in batches
    of batch readings (SupplyReadingBatch) when batch > 1."""
    began = time.monotonic()
    for i in range(0, len(events), batch):
        due = began + i / rate
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        part = events[i : i + batch]
        if batch == 1:
            await bus.publish(part[0])
        else:
            await bus.publish(
                SupplyReadingBatch(
                    source="poller/bench", site_id=part[0].site_id, readings=tuple(part)
                )
            )


async def run_variant(
    label: str,
    tree: Path | None,
    url: str,
    nats_pid: int | None,
    args: argparse.Namespace,
    tmp: Path,
    batch_size: int = 1,
) -> Figures:
    tag = secrets.token_hex(3)
    subjects = Subjects(f"cb{tag}", f"CB{tag.upper()}")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_") and k != "PYTHONPATH"
    }
    env |= {
        "TONERWATCH_NATS_URL": url,
        "TONERWATCH_SUBJECT_ROOT": subjects.root,
        "TONERWATCH_STREAM_PREFIX": subjects.stream_prefix,
        "TONERWATCH_LOG_LEVEL": "WARNING",
        "TONERWATCH_DATA_DIR": str(tmp / f"data-{tag}"),
        **python_path(tree),
    }
    bus = await Bus.connect(url, subjects=subjects, name="consumers-bench")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        await bus.ensure_event_stream()
        for svc in SERVICES:
            prof = (
                ["-m", "cProfile", "-o", str(Path(args.profile) / f"{svc}-{tag}.prof")]
                if args.profile and tree is None
                else []
            )
            procs[svc] = start_service(svc, prof, env, tmp / f"{label}-{svc}.log")
        template = template_reading(args.recording)
        # First readings: the services create each printer's state (not measured).
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                for durable in READING_DURABLES.values():
                    await bus.js.consumer_info(subjects.events_stream, subjects.name(durable))
                break
            except Exception:
                for svc, p in procs.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"{label}: serve {svc} exited {p.returncode}") from None
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # the other consumers of each service start too
        for event in readings(template, args.printers, 1):
            await bus.publish(event)
        await caught_up(bus, subjects, CATCH_UP_TIMEOUT_S)
        await asyncio.sleep(1.0)
        pids = {svc: p.pid for svc, p in procs.items()}
        if nats_pid is not None:
            pids["nats-server"] = nats_pid
        # Idle: the fetch loops alone.
        c0 = {k: cpu_s(p) for k, p in pids.items()}
        t0 = time.monotonic()
        await asyncio.sleep(args.idle)
        idle_s = time.monotonic() - t0
        c1 = {k: cpu_s(p) for k, p in pids.items()}
        idle_pct = {k: 100 * (c1[k] - c0[k]) / idle_s for k in pids}
        load_before = load()
        c0 = {k: cpu_s(p) for k, p in pids.items()}
        t0 = time.monotonic()
        # Each round's readings are timed when made: make them as they are published.
        for r in range(args.rounds):
            steady = readings(template, args.printers, 2 + r)
            await publish_at(bus, steady, args.rate, batch_size)
        await caught_up(bus, subjects, CATCH_UP_TIMEOUT_S)
        window = time.monotonic() - t0
        c1 = {k: cpu_s(p) for k, p in pids.items()}
        n = args.rounds * args.printers
        pss = {k: pss_kb(p) / 1024 for k, p in pids.items()}
        return Figures(
            label=label,
            readings=n,
            window_s=window,
            cpu_ms={k: 1000 * (c1[k] - c0[k]) / n for k in pids},
            idle_pct=idle_pct,
            pss_mb=pss,
            load_before=load_before,
            load_after=load(),
        )
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        await delete_streams(bus)
        await bus.drain()


def table(results: list[Figures]) -> list[str]:
    keys = list(results[0].cpu_ms)
    head = "| measured | " + " | ".join(r.label for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for k in keys:
        lines.append(
            f"| CPU per reading, {k} | "
            + " | ".join(f"{r.cpu_ms[k]:.3f} ms" for r in results)
            + " |"
        )
    for k in keys:
        lines.append(
            f"| idle CPU, {k} | " + " | ".join(f"{r.idle_pct[k]:.2f}%" for r in results) + " |"
        )
    for k in keys:
        lines.append(f"| PSS {k} | " + " | ".join(f"{r.pss_mb[k]:.1f} MB" for r in results) + " |")
    lines.append(
        "| readings, window | "
        + " | ".join(f"{r.readings:,} in {r.window_s:.1f} s" for r in results)
        + " |"
    )
    lines.append(
        "| load average before / after | "
        + " | ".join(f"{r.load_before} / {r.load_after}" for r in results)
        + " |"
    )
    return lines


def git_head() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


async def main_async(args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = load()
    with tempfile.TemporaryDirectory(prefix="consumers-bench-") as name:
        tmp = Path(name)
        nats = None
        nats_pid = None
        url = args.nats_url
        if url is None:
            nats = EmbeddedNats(tmp / "nats")
            url = nats.start()
            assert nats.proc is not None
            nats_pid = nats.proc.pid
        try:
            variants: list[tuple[str, Path | None, int]] = []
            if args.before:
                variants.append((f"before ({args.before})", extract(args.before, tmp), 1))
            sizes = [int(n) for n in args.batches.split(",")] if args.batches else [1]
            for size in sizes:
                label = f"after ({git_head()})"
                if args.batches:
                    label += ", readings alone" if size == 1 else f", batches of {size}"
                variants.append((label, None, size))
            results = []
            for _ in range(args.repeat):
                for label, tree, size in variants:
                    print(f"running {label} ...", flush=True)
                    results.append(await run_variant(label, tree, url, nats_pid, args, tmp, size))
        finally:
            if nats is not None:
                nats.stop()
    lines.append(
        f"## {started} — {args.printers} printers x {args.rounds} steady readings at "
        f"{args.rate:g}/s"
    )
    lines.append("")
    lines.append(f"- machine: {machine()}; git {git_head()}")
    lines.append(
        f"- load average (1/5/15 min) at start: {load_start}, at the end: {load()} "
        "(the machine is shared with other sessions)"
    )
    lines.append(
        f"- recording {args.recording}; nats-server "
        + ("of the bench's own" if args.nats_url is None else f"at {args.nats_url} (shared)")
        + "; its CPU includes the bench's publishes (each awaits its ack)"
    )
    lines.append("")
    lines += table(results)
    lines.append("")
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--printers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="steady readings per second")
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds measured")
    parser.add_argument("--before", help="git revision whose services to run first")
    parser.add_argument("--repeat", type=int, default=1, help="run the variants this many times")
    parser.add_argument("--batches", help="batch sizes of the steady readings, e.g. 1,30")
    parser.add_argument("--recording", default="jetdirect_m252dw")
    parser.add_argument("--nats-url", help="a running nats-server (default: the bench starts one)")
    parser.add_argument("--profile", help="write cProfile output of the services here (after)")
    parser.add_argument("--append", action="store_true", help=f"append to {RESULTS}")
    args = parser.parse_args(argv)
    if not 1 <= args.printers <= 5000 or not 1 <= args.rounds <= 50:
        parser.error("--printers 1..5000, --rounds 1..50")
    lines = asyncio.run(main_async(args))
    print("\n".join(lines))
    if args.append:
        with RESULTS.open("a") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
