"""Poll benchmark: TonerWatch's SNMP poller vs pysnmp hlapi and net-snmp, printers served by snmpd.

Prints (does not assert) CPU per poll, polls/s, requests and bytes per poll, first vs steady,
timeouts, for 10, 100 and 1,000 simulated printers (10,000 with --with-10k) on 127.0.0.1 only.
Every poll of a fleet size starts at once; the client's cap on requests in flight is the
poller's default (poll_concurrency), so timeouts counted here are the poller's own doing.

    uv run python bench/poll_bench.py [--recording NAME] [--with-10k]
    uv run python bench/poll_bench.py --snmpsim [--recording NAME ...]

Needs net-snmp's snmpd and snmpbulkwalk (apt-get install snmpd snmp). --snmpsim instead serves
the recordings alone through snmpsim and prints, per recording, the first poll's cost before
(the previous column walk) and after (index columns, then exact columns), v2c and v3.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.simulator import SnmpSimulator, V3User, free_udp_port
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.errors import IoStats, SnmpTimeoutError
from tonerwatch_shared.snmp.poll import (
    PollPlan,
    PollResult,
    learn_columns,
    learn_scalars,
    poll_printer,
)
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import IpAddress, Oid, SnmpValue
from tonerwatch_shared.snmp.udp import UdpSnmpClient
from tonerwatch_shared.snmp.walk import Stream

ROOT = Path(__file__).resolve().parents[1]
WALKS = ROOT.parent / "shared" / "printer-walks"
HOST = "127.0.0.1"
try:  # the poller's default cap, so the bench measures what a replica does out of the box
    from tonerwatch_poller.service import Settings as _PollerSettings

    IN_FLIGHT = int(_PollerSettings.model_fields["poll_concurrency"].default)
except ImportError:  # pragma: no cover - the bench run outside the workspace
    IN_FLIGHT = 64
PHASE_TIME_LIMIT = 600.0  # seconds per measured phase: every loop here is bounded
ENDPOINTS_PER_SNMPD = 1000  # snmpd scans every socket each loop: keep processes small


def snmpd_config(values: dict[str, SnmpValue]) -> str:
    """An snmpd.conf answering every recorded OID statically (no IpAddress type in override)."""
    lines = ["rocommunity public 127.0.0.0/8", "master no", "dontLogTCPWrappersConnects yes"]
    for oid, value in values.items():
        if isinstance(value, IpAddress):
            continue
        if isinstance(value, Oid):
            lines.append(f"override .{oid} object_id .{value}")
        elif isinstance(value, bytes):
            lines.append(f"override .{oid} octet_str " + ("0x" + value.hex() if value else '""'))
        elif isinstance(value, int):
            lines.append(f"override .{oid} integer {value}")
    return "\n".join(lines) + "\n"


def start_snmpd(
    conf: Path, ports: Sequence[int], host: str = HOST
) -> list[subprocess.Popen[bytes]]:
    """snmpd processes listening on these ports of a loopback address (127.0.0.0/8)."""
    procs = []
    for i in range(0, len(ports), ENDPOINTS_PER_SNMPD):
        chunk = ports[i : i + ENDPOINTS_PER_SNMPD]
        # Never "-p /dev/null": snmpd deletes its pid file on exit, and /dev/null with it.
        cmd = [
            "snmpd",
            "-f",
            "-C",
            "-c",
            str(conf),
            "-Ln",
            "-p",
            str(conf.parent / f"snmpd-{i}.pid"),
        ]
        cmd += [f"udp:{host}:{p}" for p in chunk]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Terminates the processes (kill after 5 s)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


async def all_at_once(jobs: Sequence[Callable[[], Awaitable[object]]]) -> list[object]:
    """Starts every job at once (the client caps requests in flight), within PHASE_TIME_LIMIT."""

    async def one(job: Callable[[], Awaitable[object]]) -> object:
        try:
            return await job()
        except Exception as exc:
            return exc

    return await asyncio.wait_for(asyncio.gather(*(one(j) for j in jobs)), PHASE_TIME_LIMIT)


def failures(results: Sequence[object]) -> tuple[int, int]:
    """(polls that timed out, polls that failed otherwise)."""
    timeouts = sum(isinstance(r, SnmpTimeoutError) for r in results)
    return timeouts, sum(isinstance(r, Exception) for r in results) - timeouts


def cpu() -> float:
    """CPU seconds of this process so far."""
    return time.process_time()


async def measure(n: int, ports: list[int], recording: str) -> dict[str, float]:
    """Figures for n printers: first poll, steady polls, pysnmp hlapi GET, snmpbulkwalk."""
    client = UdpSnmpClient(max_in_flight=IN_FLIGHT)
    targets = [SnmpTarget(HOST, p, community="public", timeout=2.0, retries=1) for p in ports[:n]]
    out: dict[str, float] = {"printers": n}

    t0, c0 = time.perf_counter(), cpu()
    sent0, answered0 = client.totals.requests, client.totals.responses
    firsts = await all_at_once([functools.partial(poll_printer, client, t) for t in targets])
    t1, c1 = time.perf_counter(), cpu()
    ok = [r for r in firsts if isinstance(r, PollResult)]
    out["first_timeouts"], out["first_failed"] = failures(firsts)
    # Attempts without an answer: retries that saved a poll, and the attempts of timeouts.
    out["first_unanswered"] = (client.totals.requests - sent0) - (
        client.totals.responses - answered0
    )
    out["first_cpu_ms"] = (c1 - c0) / n * 1000
    out["first_requests"] = statistics.mean(r.requests for r in ok)
    out["first_round_trips"] = statistics.mean(r.round_trips for r in ok)
    out["first_bytes"] = statistics.mean(r.bytes_sent + r.bytes_received for r in ok)
    out["first_polls_per_s"] = n / (t1 - t0)
    plans: list[PollPlan | None] = [getattr(r, "plan", None) for r in firsts]

    rounds = 3
    t0, c0 = time.perf_counter(), cpu()
    sent0, answered0 = client.totals.requests, client.totals.responses
    steady: list[object] = []
    for _ in range(rounds):
        steady += await all_at_once(
            [
                functools.partial(poll_printer, client, t, p)
                for t, p in zip(targets, plans, strict=True)
            ]
        )
    t1, c1 = time.perf_counter(), cpu()
    ok = [r for r in steady if isinstance(r, PollResult)]
    out["steady_timeouts"], out["steady_failed"] = failures(steady)
    out["steady_unanswered"] = (client.totals.requests - sent0) - (
        client.totals.responses - answered0
    )
    out["steady_cpu_ms"] = (c1 - c0) / len(steady) * 1000
    out["steady_requests"] = statistics.mean(r.requests for r in ok)
    out["steady_bytes"] = statistics.mean(r.bytes_sent + r.bytes_received for r in ok)
    out["steady_polls_per_s"] = len(steady) / (t1 - t0)
    await client.close()

    # The same steady GET through pysnmp's high-level API (one engine, cached transports).
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        get_cmd,
    )

    sample = min(n, 100)
    engine = SnmpEngine()
    volatile = next(p.volatile for p in plans if p is not None)
    transports = [
        await UdpTransportTarget.create((HOST, p), timeout=2.0, retries=1) for p in ports[:sample]
    ]
    c0 = cpu()
    for tr in transports:
        await get_cmd(
            engine,
            CommunityData("public"),
            tr,
            ContextData(),
            *(ObjectType(ObjectIdentity(o)) for o in volatile),
            lookupMib=False,
        )
    out["pysnmp_get_cpu_ms"] = (cpu() - c0) / sample * 1000
    # And all at once, as a poller without a cap of its own would (up to 1,000 printers).
    sample = min(n, 1000)
    transports += [
        await UdpTransportTarget.create((HOST, p), timeout=2.0, retries=1)
        for p in ports[len(transports) : sample]
    ]

    async def hlapi_get(tr: UdpTransportTarget) -> bool:
        error, _status, _index, _vbs = await get_cmd(
            engine,
            CommunityData("public"),
            tr,
            ContextData(),
            *(ObjectType(ObjectIdentity(o)) for o in volatile),
            lookupMib=False,
        )
        return error is None

    answered = await asyncio.wait_for(
        asyncio.gather(*(hlapi_get(tr) for tr in transports[:sample])), PHASE_TIME_LIMIT
    )
    out["pysnmp_concurrent_timeouts"] = sample - sum(answered)
    engine.close_dispatcher()

    # net-snmp's snmpbulkwalk of the supplies table, a process per printer (child CPU).
    sample = min(n, 20)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p in ports[:sample]:
        subprocess.run(  # noqa: ASYNC221  (measuring the child's CPU, not latency)
            ["snmpbulkwalk", "-v2c", "-c", "public", "-t", "2", "-r", "1", "-On",
             f"{HOST}:{p}", ".1.3.6.1.2.1.43.11.1.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False,
        )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    out["snmpbulkwalk_supplies_cpu_ms"] = child / sample * 1000
    return out


SNMPSIM_RECORDINGS = ("jetdirect_m252dw", "canonprinter_tm", "konica_c250i", "ricoh_mpc3002")
STEADY_CPU_POLLS = 300


async def previous_learn(client: SnmpClient, target: SnmpTarget) -> IoStats:
    """The first poll as it was before: runs of columns walked, the scalars by GET beside."""
    stats = IoStats()
    await client.walk_streams(
        target, Stream.columns(learn_columns()), 64, scalars=learn_scalars(), stats=stats
    )
    return stats


def _cost(stats: IoStats | object) -> str:
    s = stats if isinstance(stats, IoStats) else IoStats()
    return f"{s.round_trips} rt / {s.requests} req / {s.bytes_sent + s.bytes_received:,} B"


async def snmpsim_report(names: Sequence[str]) -> None:
    """Before/after first-poll cost, steady cost and CPU per recording, against snmpsim."""
    user = V3User("tonerwatch-bench")
    with tempfile.TemporaryDirectory(prefix="tonerwatch-bench-") as tmp:
        # snmpsim picks a recording by community: also serve the first one as "public",
        # the community a real printer answers to (shorter by the file name's length).
        public = Path(tmp) / "public.snmprec"
        public.symlink_to(WALKS / f"{names[0]}.snmprec")
        files = [WALKS / f"{n}.snmprec" for n in names] + [public]
        async with SnmpSimulator(files, v3_user=user) as agent:
            client = SnmpClient()
            try:
                print("| recording | community | before: first poll | after: first poll "
                      "| steady | steady CPU | v3 first | v3 steady | parse equal |")  # fmt: skip
                print("|---|---|---|---|---|---:|---|---|---|")
                for name, community in [(n, n) for n in names] + [(names[0], "public")]:
                    target = agent.target(community)
                    before = await previous_learn(client, target)
                    first = await poll_printer(client, target)
                    steady = await poll_printer(client, target, first.plan)
                    c0 = time.process_time()
                    for _ in range(STEADY_CPU_POLLS):
                        await poll_printer(client, target, first.plan)
                    cpu_ms = (time.process_time() - c0) / STEADY_CPU_POLLS * 1000
                    v3_cost = "n/a | n/a"  # v3 picks the recording by context; "" is none
                    if community != "public":
                        v3 = agent.v3_target(community)
                        v3_first = await poll_printer(client, v3)
                        v3_steady = await poll_printer(client, v3, v3_first.plan)
                        v3_cost = (
                            f"{v3_first.round_trips} rt / "
                            f"{v3_first.bytes_sent + v3_first.bytes_received:,} B | "
                            f"{v3_steady.bytes_sent + v3_steady.bytes_received} B"
                        )
                    equal = parse_snapshot(first.values) == parse_snapshot(
                        load_snmprec(WALKS / f"{name}.snmprec")
                    )
                    after = f"{first.round_trips} rt / {first.requests} req / "
                    after += f"{first.bytes_sent + first.bytes_received:,} B"
                    print(
                        f"| {name} | {'public' if community == 'public' else 'file name'} "
                        f"| {_cost(before)} | {after} "
                        f"| {steady.requests} req / {steady.bytes_sent + steady.bytes_received} B "
                        f"| {cpu_ms:.3f} ms "
                        f"| {v3_cost} | {equal} |",
                        flush=True,
                    )
            finally:
                await client.close()


async def main(argv: Sequence[str]) -> None:
    """Runs the benchmark and prints one line per fleet size."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--recording", action="append")
    parser.add_argument("--with-10k", action="store_true")
    parser.add_argument("--snmpsim", action="store_true")
    args = parser.parse_args(argv)
    if args.snmpsim:
        await snmpsim_report(args.recording or SNMPSIM_RECORDINGS)
        return
    args.recording = (args.recording or ["jetdirect_m252dw"])[0]
    if shutil.which("snmpd") is None or shutil.which("snmpbulkwalk") is None:
        sys.exit(
            "needs snmpd and snmpbulkwalk: scripts/setup --bench (or apt-get install snmpd snmp)"
        )
    values = load_snmprec(WALKS / f"{args.recording}.snmprec")
    sizes = [10, 100, 1000] + ([10000] if args.with_10k else [])
    with tempfile.TemporaryDirectory(prefix="tonerwatch-bench-") as tmp:
        conf = Path(tmp) / "snmpd.conf"
        conf.write_text(snmpd_config(values))
        ports: list[int] = []
        while len(ports) < max(sizes):
            p = free_udp_port(HOST)
            if p not in ports:
                ports.append(p)
        procs = start_snmpd(conf, ports)
        try:
            await asyncio.sleep(1.0 + len(ports) / 2000)
            print(
                f"recording {args.recording}; every poll started at once, client cap "
                f"{IN_FLIGHT} requests in flight (poller default); loopback snmpd, "
                f"{ENDPOINTS_PER_SNMPD} endpoints per process"
            )
            for n in sizes:
                r = await measure(n, ports, args.recording)
                print(" ".join(f"{k}={v:.3g}" for k, v in r.items()), flush=True)
                print(
                    f"  ratio pysnmp-hlapi/tonerwatch steady GET CPU: "
                    f"{r['pysnmp_get_cpu_ms'] / r['steady_cpu_ms']:.1f}x; "
                    f"snmpbulkwalk(supplies only)/tonerwatch first poll CPU: "
                    f"{r['snmpbulkwalk_supplies_cpu_ms'] / r['first_cpu_ms']:.1f}x",
                    flush=True,
                )
        finally:
            stop(procs)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
