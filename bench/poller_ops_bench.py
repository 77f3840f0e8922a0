"""Poller NATS operations per steady poll, before and after issue 15's changes, in one run.

Prints (does not assert) what one poller replica sends to NATS per poll, and the CPU it and
nats-server spend per poll, for variants on the same nats-server and the same printers:

- before (--variants before,...): what the poller did before issue 15, reproduced by the
  per-printer job code without its KV mirrors (configuration and health read from KV for every
  job, health written after every poll, the overdue check reading both buckets whole), with the
  "in progress" it sent before every poll, every answer parsed and its reading built (no kept
  snapshot, no reading template), jobs taken by a fetch per batch, slots on no grid;
- previous: the poller as main had it at 91da0c9 (bench/poller_previous.py): a job message per
  printer in the work queue, pulled when due through one long-lived pull request, polled and
  nak'ed with the delay to the next slot (NATS as the timer: a redelivery and a nak per poll),
  with today's polls, mirrors and reading path;
- singles: the poller as it is with TONERWATCH_READING_BATCH_MAX=1: partition leases (the
  replica holds the 16 partition jobs and polls their printers from a local timer: a steady poll
  sends only its reading), every reading published alone;
- after: the poller as it is: partition leases, and the readings of polls made together
  published as one SupplyReadingBatch (tonerwatch_poller.batching: up to 100 ms apart).

before and previous publish every reading alone, as the code they stand for did.

Every message the poller's connection publishes in the window is counted
(tonerwatch_shared.testing.nats_traffic), by kind: requests (each waits for a reply: JetStream
publishes, KV gets and puts), pull requests for jobs, and one-way messages (acks, naks, "in
progress"). Printers: one snmpsim endpoint serving a recording, N printer ids on it (the SNMP side
is the same in every variant and not what is measured here).

    uv run python bench/poller_ops_bench.py [--printers 200] [--interval 10] [--window 30]
        [--variants previous,singles,after] [--compare /work/other-tree] [--cprofile out.txt]
        [--idle-window 20] [--live-uptime]

--compare runs the same bench file with another tree's virtualenv (its code) right after, on its
own nats-server and printers, and prints both in one table (columns "<variant> (<label>)").
--cprofile profiles the window of the last variant (the whole event loop, CPU time) into a file
(and its raw stats into <file>.prof, for pstats' callers and callees).
--idle-window S: after the window, every timer of the replica is pushed a day out (its fleet
still held, its mirrors and leases running, nothing due) and its CPU is taken for S seconds:
the fixed CPU per second of a replica, and the marginal CPU per poll above it (window CPU less
the idle CPU/s times the window, per poll). The event loop's selects that slept (waited for I/O
or a timer) are counted in both windows.
--live-uptime: the recording served with its sysUpTime moving, as a live agent's does (the
recording's stands still: every steady answer the same bytes but for the request id).

Needs nats-server (scripts/setup installs it) and the recordings in ../shared/printer-walks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The process as the `tonerwatch` command makes it (its imports, its garbage collector's thresholds)
# before nats or the poller is imported.
import tonerwatch  # noqa: F401, I001
import nats.errors
from e2e import cpu_s, load, machine
from poll_bench import WALKS
from poller_previous import PreviousPoller

from tonerwatch_poller import schedule
from tonerwatch_poller.service import Poller, PrinterHealth, Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats
from tonerwatch_shared.events import PrinterConfigured, SnmpCredentials
from tonerwatch_shared.reading import ReadingTemplate
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import delete_streams
from tonerwatch_shared.testing.nats_traffic import FLOW_CONTROL, Traffic, counting

RECORDING = "jetdirect_m252dw"
_job: contextvars.ContextVar[object] = contextvars.ContextVar("job")


class BeforePoller(PreviousPoller):
    """The poller's operations before issue 15: no mirrors, and "in progress" before each poll."""

    async def handle_job(self, msg: object) -> None:
        token = _job.set(msg)
        try:
            await super().handle_job(msg)  # type: ignore[arg-type]
        finally:
            _job.reset(token)

    async def _pull_jobs(self, durable: str, slots: asyncio.Semaphore, stop: asyncio.Event) -> None:
        await fetch_jobs(self, durable, slots, stop, pause=False)

    async def poll(self, config: PrinterConfigured, health: PrinterHealth) -> bool:
        msg = _job.get(None)
        if msg is not None:
            await msg.in_progress()  # type: ignore[attr-defined]
        # Every answer parsed and its reading built (no snapshot kept, no reading template).
        self.parsed.pop(config.printer_id, None)
        return await super().poll(config, health)


async def fetch_jobs(
    poller: PreviousPoller,
    durable: str,
    slots: asyncio.Semaphore,
    stop: asyncio.Event,
    *,
    pause: bool,
) -> None:
    """The job loop before the long-lived pull: a fetch per batch (a pull request, often two, per
    one or two jobs); with pause, 50 ms after a fetch of fewer than 4 jobs."""
    sub = await poller.bus.js.pull_subscribe_bind(durable, stream=poller.jobs_stream)
    try:
        while not stop.is_set():
            free = max(1, poller.settings.poll_concurrency - len(poller.in_flight))
            try:
                msgs = await sub.fetch(min(free, 256), timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for msg in msgs:
                await slots.acquire()
                task = asyncio.create_task(poller._job(msg, slots))
                poller.in_flight.add(task)
                task.add_done_callback(poller.in_flight.discard)
            if pause and len(msgs) < 4:
                await asyncio.sleep(0.05)
    finally:
        await sub.unsubscribe()


@dataclass
class Result:
    name: str
    polls: int
    traffic: Traffic
    poller_cpu_s: float
    nats_cpu_s: float
    poller_sys_s: float = float("nan")  # of poller_cpu_s, in the kernel (syscalls, wakeups)
    window_s: float = float("nan")
    sleeps: int = -1  # selects of the event loop that slept (waited for I/O or a timer), window
    # --idle-window: the same replica with its fleet held and nothing due (timers pushed out).
    idle_s: float = float("nan")
    idle_cpu_s: float = float("nan")
    idle_sleeps: int = -1

    def kinds(self) -> Counter[str]:
        out: Counter[str] = Counter()
        requests = Counter(self.traffic.requests)
        for subject in self.traffic.published:
            if subject.startswith(FLOW_CONTROL):
                out["flow control"] += 1
            elif subject.startswith("$JS.API.CONSUMER.MSG.NEXT."):
                out["pull requests"] += 1
            elif requests[subject] > 0:
                requests[subject] -= 1
                kind = (
                    "KV"
                    if subject.startswith(("$KV.", "$JS.API.STREAM.MSG.GET.KV_"))
                    else "publish"
                )
                out[f"requests: {kind}"] += 1
            else:
                out["one-way (ack, nak, progress)"] += 1
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "polls": self.polls,
            "published": self.traffic.published,
            "requests": self.traffic.requests,
            "poller_cpu_s": self.poller_cpu_s,
            "nats_cpu_s": self.nats_cpu_s,
            "poller_sys_s": self.poller_sys_s,
            "window_s": self.window_s,
            "sleeps": self.sleeps,
            "idle_s": self.idle_s,
            "idle_cpu_s": self.idle_cpu_s,
            "idle_sleeps": self.idle_sleeps,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> Result:
        return cls(
            str(raw["name"]),
            int(raw["polls"]),  # type: ignore[call-overload]
            Traffic(list(raw["published"]), list(raw["requests"])),  # type: ignore[call-overload]
            float(raw["poller_cpu_s"]),  # type: ignore[arg-type]
            float(raw["nats_cpu_s"]),  # type: ignore[arg-type]
            float(raw.get("poller_sys_s", "nan")),  # type: ignore[arg-type]
            float(raw.get("window_s", "nan")),  # type: ignore[arg-type]
            int(raw.get("sleeps", -1)),  # type: ignore[call-overload]
            float(raw.get("idle_s", "nan")),  # type: ignore[arg-type]
            float(raw.get("idle_cpu_s", "nan")),  # type: ignore[arg-type]
            int(raw.get("idle_sleeps", -1)),  # type: ignore[call-overload]
        )

    def per_poll(self, n: float) -> float:
        return n / self.polls if self.polls else float("nan")

    def idle_cpu_per_s(self) -> float:
        """The replica's CPU per second with its fleet held and nothing due (--idle-window)."""
        return self.idle_cpu_s / self.idle_s if self.idle_s > 0 else float("nan")

    def marginal_per_poll(self) -> float:
        """CPU per poll above the idle replica's: (window CPU - idle CPU/s x window) / polls."""
        if not self.polls or not self.idle_s > 0:
            return float("nan")
        return (self.poller_cpu_s - self.idle_cpu_per_s() * self.window_s) / self.polls


class SleepCounter:
    """Counts the event loop's selects that slept (a timeout other than 0: it waited for I/O or a
    timer, and what ended the wait woke it), by wrapping its selector's select."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self._selector = loop._selector  # type: ignore[attr-defined]
        self._select = self._selector.select

        def select(timeout: float | None = None) -> list[object]:
            if timeout is None or timeout > 0:
                self.count += 1
            return self._select(timeout)  # type: ignore[no-any-return]

        self._selector.select = select

    def close(self) -> None:
        del self._selector.select  # the instance's wrapper goes, the class's method stays


def polls_done(poller: Poller) -> int:
    value = poller.metrics.registry.get_sample_value(
        "tonerwatch_polls_total", {"result": "ok", "protocol": "snmp"}
    )
    return int(value or 0)


def steady(poller: Poller, printers: int) -> bool:
    """Return whether every printer has made its first steady poll (a GET of its plan)."""
    plans = list(poller.plans.values())
    return len(plans) >= printers and all(plan.steady_polls >= 1 for plan in plans)


def write_profile(path: Path, title: str, profile: cProfile.Profile) -> None:
    """Write the profile's top functions by own time, then by cumulative time."""
    with path.open("w") as out:
        out.write(f"{title} in the window (profiled, CPU time)\n")
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("tottime").print_stats(60)
        stats.sort_stats("cumulative").print_stats(80)


def run_compared(args: argparse.Namespace) -> list[Result]:
    """Return the results of the same variants run by another tree's virtualenv (its code)."""
    cmd = [
        str(Path(args.compare) / ".venv" / "bin" / "python"),
        str(Path(__file__).resolve()),
        "--json",
        f"--printers={args.printers}",
        f"--interval={args.interval}",
        f"--window={args.window}",
        f"--variants={args.variants}",
        f"--idle-window={args.idle_window}",
        *(["--live-uptime"] if args.live_uptime else []),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [Result.from_json(json.loads(line)) for line in out.splitlines() if line]


async def run_variant(
    name: str,
    cls: type[Poller],
    url: str,
    nats_pid: int,
    port: int,
    args: argparse.Namespace,
    reading_batch_max: int,
    *,
    profiled: bool = False,
) -> Result:
    subjects = Subjects(root=f"bops{name}", stream_prefix=f"BOPS{name.upper()}")
    bus = await Bus.connect(url, subjects=subjects, name=f"bench-{name}", attempts=3)
    await bus.ensure_event_stream()
    settings = Settings(
        nats_url=url,
        subject_root=subjects.root,
        stream_prefix=subjects.stream_prefix,
        poll_timeout_s=2.0,
        poll_retries=1,
        reading_batch_max=reading_batch_max,
    )
    poller = cls(
        settings=settings,
        bus=bus,
        client=SnmpClient(max_in_flight=settings.poll_concurrency),
        printers=await bus.key_value("POLLER_PRINTERS"),
        health=await bus.key_value("POLLER_HEALTH"),
    )
    await poller.ensure_jobs_stream()
    if cls is not BeforePoller:
        await poller.start_mirrors()
    for i in range(args.printers):
        await poller.on_config(
            PrinterConfigured(
                source="bench",
                site_id="hq",
                printer_id=f"p{i:05d}",
                address="127.0.0.1",
                port=port,
                credentials=SnmpCredentials(community=RECORDING),
                interval_s=args.interval,
            ),
            None,  # type: ignore[arg-type]
        )
    if cls is BeforePoller:  # the code before issue 15 built every reading
        monkeypatch = contextlib.ExitStack()
        template_of = ReadingTemplate.of
        ReadingTemplate.of = classmethod(lambda _cls, _reading: None)  # type: ignore[assignment,method-assign]
        monkeypatch.callback(setattr, ReadingTemplate, "of", template_of)
        grid = schedule.SLOT_GRID_S  # slots where their phases put them, on no grid
        schedule.SLOT_GRID_S = 1e-9
        monkeypatch.callback(setattr, schedule, "SLOT_GRID_S", grid)
    else:
        monkeypatch = contextlib.ExitStack()
    stop = asyncio.Event()
    jobs = asyncio.create_task(poller.run_jobs(stop))
    check = poller.overdue_check()  # every 15 s, as the ops server runs it

    async def overdue_loop() -> None:
        while not stop.is_set():
            await check()
            await asyncio.sleep(1.0)

    overdue = asyncio.create_task(overdue_loop())
    try:
        # Warm up, bounded: every printer polled twice (its first poll, then one on its slot) and
        # its first steady poll made (it parses the answer and keeps the reading's template; the
        # polls after it are the steady ones measured). Counting polls alone left some printers'
        # first steady polls, ~1 ms each, in the window.
        deadline = time.monotonic() + 4 * args.interval + 60
        while time.monotonic() < deadline and (  # noqa: ASYNC110
            polls_done(poller) < 2 * args.printers or not steady(poller, args.printers)
        ):
            await asyncio.sleep(0.2)
        # For a sampling profiler attached from outside (py-spy record --pid): the window starts.
        print(f"{name}: window starts, pid {os.getpid()}", file=sys.stderr, flush=True)
        profile = cProfile.Profile(time.process_time) if profiled else None
        sleeps = SleepCounter(asyncio.get_running_loop())
        with counting(bus.nc) as traffic:
            polls0, cpu0, nats0 = polls_done(poller), time.process_time(), cpu_s(nats_pid)
            sys0, sleeps0, t0 = os.times().system, sleeps.count, time.monotonic()
            if profile is not None:
                profile.enable()
            await asyncio.sleep(args.window)
            if profile is not None:
                profile.disable()
            polls1, cpu1, nats1 = polls_done(poller), time.process_time(), cpu_s(nats_pid)
            sys1, sleeps1, t1 = os.times().system, sleeps.count, time.monotonic()
            window_traffic = Traffic(list(traffic.published), list(traffic.requests))
        idle = (float("nan"), float("nan"), -1)
        if args.idle_window > 0 and cls is Poller:
            idle = await idle_window(poller, sleeps, args.idle_window)
        sleeps.close()
        if profile is not None:
            polls = polls1 - polls0
            calls = sum(row[1] for row in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]
            title = f"{name}: {polls} polls, {calls / max(polls, 1):.0f} Python calls per poll"
            print(title, flush=True)
            write_profile(Path(args.cprofile), title, profile)
            profile.dump_stats(f"{args.cprofile}.prof")  # for pstats: callers, callees
    finally:
        stop.set()
        await jobs
        overdue.cancel()
        await poller.stop_mirrors()
        await poller.client.close()
        await delete_streams(bus)
        await bus.drain()
        monkeypatch.close()
    if poller.readings.messages and not args.json:
        print(
            f"{name}: {poller.readings.published / poller.readings.messages:.1f} readings per "
            f"published message ({poller.readings.batches} batches, whole run)"
        )
    return Result(
        name,
        polls1 - polls0,
        window_traffic,
        cpu1 - cpu0,
        nats1 - nats0,
        sys1 - sys0,
        t1 - t0,
        sleeps1 - sleeps0,
        *idle,
    )


async def idle_window(
    poller: Poller, sleeps: SleepCounter, seconds: float
) -> tuple[float, float, int]:
    """Return (seconds, CPU seconds, sleeps) of the replica with its fleet held and nothing due:
    every timer pushed a day out, the polls under way and their batches done first."""

    def push_out() -> None:
        later = time.time() + 86400
        for key in list(poller.timers.due):
            poller.timers.set(key, later)
        if poller._wake is not None:
            poller._wake.set()

    push_out()
    deadline = time.monotonic() + 10
    while (poller.in_flight or poller.readings._sending) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    push_out()  # the polls that were under way set their next timers when done
    await asyncio.sleep(1.0)  # the last batch's ack, the loop settled
    polls0, cpu0, sleeps0, t0 = (
        polls_done(poller),
        time.process_time(),
        sleeps.count,
        time.monotonic(),
    )
    await asyncio.sleep(seconds)
    polls1, cpu1, sleeps1, t1 = (
        polls_done(poller),
        time.process_time(),
        sleeps.count,
        time.monotonic(),
    )
    if polls1 != polls0:
        print(f"idle window: {polls1 - polls0} polls made", file=sys.stderr)
    return t1 - t0, cpu1 - cpu0, sleeps1 - sleeps0


SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


def live_uptime(recording: Path, folder: Path) -> Path:
    """Return a copy of the recording (same name: same community) whose sysUpTime moves 100
    ticks a second through snmpsim's numeric variation, from its recorded value."""
    lines = []
    for line in recording.read_text().splitlines():
        oid, _, rest = line.partition("|")
        if oid == SYS_UPTIME:
            tag, _, value = rest.partition("|")
            line = f"{oid}|{tag}:numeric|min=0,max=4294967295,initial={int(value)},rate=100"
        lines.append(line)
    folder.mkdir(parents=True, exist_ok=True)
    live = folder / recording.name
    live.write_text("\n".join(lines) + "\n")
    return live


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--printers", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument(
        "--variants", default="previous,after", help="of before,previous,singles,after"
    )
    parser.add_argument("--compare", help="another tree: the same bench with its .venv, after")
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--compare-label", default="compared tree")
    parser.add_argument("--cprofile", help="cProfile the last variant's window into this file")
    parser.add_argument(
        "--idle-window",
        type=float,
        default=0.0,
        help="after the window, this long with the fleet held and nothing due (singles, after): "
        "prints the replica's fixed CPU per second and the marginal CPU per poll above it",
    )
    parser.add_argument(
        "--live-uptime",
        action="store_true",
        help="serve the recording with its sysUpTime moving (100 ticks a second), as a live "
        "agent's does; the recording's own stands still",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line per variant only")
    args = parser.parse_args(argv)
    classes: dict[str, type[Poller]] = {
        "before": BeforePoller,
        "previous": PreviousPoller,
        "singles": Poller,
        "after": Poller,
    }
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not names or any(v not in classes for v in names):
        sys.exit(f"--variants: a list of {', '.join(classes)}")
    recording = WALKS / f"{RECORDING}.snmprec"
    if not recording.exists():
        sys.exit(f"recording not found: {recording}")
    if not args.json:
        print(f"machine: {machine()}; load {load()}")
        print(
            f"{args.printers} printers every {args.interval:.0f} s "
            f"({args.printers / args.interval:.0f} polls/s), {args.window:.0f} s window per variant"
        )
    with tempfile.TemporaryDirectory() as tmp:
        if args.live_uptime:
            recording = live_uptime(recording, Path(tmp) / "live")
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        try:
            assert server.proc is not None
            async with SnmpSimulator([recording]) as agent:
                results = [
                    await run_variant(
                        name,
                        classes[name],
                        server.url,
                        server.proc.pid,
                        agent.port,
                        args,
                        reading_batch_max=128 if name == "after" else 1,
                        profiled=bool(args.cprofile) and i == len(names) - 1,
                    )
                    for i, name in enumerate(names)
                ]
        finally:
            server.stop()
    if args.json:
        for r in results:
            print(json.dumps(r.to_json()), flush=True)
        return
    if args.compare:
        for r in results:
            r.name = f"{r.name} ({args.label})"
        print(f"{args.label} done; load {load()}", flush=True)
        others = await asyncio.to_thread(run_compared, args)
        for r in others:
            r.name = f"{r.name} ({args.compare_label})"
        print(f"{args.compare_label} done; load {load()}", flush=True)
        results = others + results  # the compared tree first, ratios against this tree's last
    kinds = sorted(set().union(*(r.kinds() for r in results)))

    def row(label: str, value: Callable[[Result], float]) -> tuple[str, list[float]]:
        return label, [value(r) for r in results]

    rows = [
        row("polls in the window", lambda r: r.polls),
        row("round trips per poll (requests)", lambda r: r.per_poll(r.traffic.round_trips)),
        row("messages sent per poll (all)", lambda r: r.per_poll(len(r.traffic.published))),
        *(row(f"  {k} per poll", lambda r, k=k: r.per_poll(r.kinds()[k])) for k in kinds),  # type: ignore[misc]
        row("poller CPU per poll, ms", lambda r: r.per_poll(r.poller_cpu_s * 1000)),
        row("  of which in the kernel, ms", lambda r: r.per_poll(r.poller_sys_s * 1000)),
        row("poller loop sleeps (selects that waited) per poll", lambda r: r.per_poll(r.sleeps)),
        row("poller loop sleeps per s", lambda r: r.sleeps / r.window_s),
        row("nats-server CPU per poll, ms", lambda r: r.per_poll(r.nats_cpu_s * 1000)),
    ]
    if args.idle_window > 0:
        rows += [
            row(
                "idle (fleet held, nothing due): poller CPU, ms per s",
                lambda r: r.idle_cpu_per_s() * 1000,
            ),
            row("idle: poller loop sleeps per s", lambda r: r.idle_sleeps / r.idle_s),
            row(
                "marginal poller CPU per poll above idle, ms",
                lambda r: r.marginal_per_poll() * 1000,
            ),
        ]
    last = results[-1]
    print(
        "\n| measured | "
        + " | ".join(r.name for r in results)
        + "".join(f" | {r.name}/{last.name}" for r in results[:-1])
        + " |\n|---|"
        + "---:|" * (2 * len(results) - 1)
    )
    for label, values in rows:
        fmt = (lambda v: f"{v:,.0f}") if label.startswith("polls") else (lambda v: f"{v:.2f}")
        a = values[-1]
        ratios = "".join(f" | {x / a:.1f}x" if a else " | -" for x in values[:-1])
        print(f"| {label} | " + " | ".join(fmt(v) for v in values) + ratios + " |")
    print(f"\nload at the end: {load()}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
