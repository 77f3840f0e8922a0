"""What one steady poll costs nats-server at the least, message by message (issue 15).

The poller's NATS traffic per steady poll is the reading's JetStream publish (and its ack) plus the
poll job's cycle: the job is redelivered at the printer's slot and nak'ed with a delay until the
next one (tonerwatch_poller/service.py). This bench measures each alone, at a steady rate like the
poller's (default 100 per second), on a private nats-server started the way `tonerwatch up`
starts it (tonerwatch_shared.embedded.nats_server_config, sync_interval always: fsync before
each ack), and prints the server's CPU per message from /proc:

- core publish: a plain NATS message, no JetStream (the least any message costs at this rate);
- JetStream publish + ack: a 1.5 KB message with a Nats-Msg-Id into a file stream (the reading),
  with fsync always and again with nats-server's default (every two minutes);
- job redelivery + nak: a work-queue stream with N jobs pending on one consumer (max_ack_pending
  -1, as the poller's), each nak'ed with a delay of N/rate seconds so that rate of them come due
  every second; N = the fleet a poller replica holds.

Everything runs on 127.0.0.1; every loop is bounded by its message count or window.

    uv run python bench/nats_floor_bench.py [--rate 100] [--window 20] [--pending 300 3000 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import nats
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from tonerwatch_shared.embedded import (
    free_tcp_port,
    nats_server_binary,
    nats_server_config,
    wait_for_tcp,
)

RESULTS = Path(__file__).parent / "results" / "nats_floor.md"


def cpu_s(pid: int) -> float:
    """Return the user + system CPU seconds pid has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A private nats-server with JetStream on 127.0.0.1, its store in a temporary folder."""

    def __init__(self, sync_interval: str = "always") -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="tw-floor-")
        self.port = free_tcp_port()
        conf = Path(self.dir.name) / "nats.conf"
        conf.write_text(
            nats_server_config(
                store_dir=Path(self.dir.name) / "js", port=self.port, sync_interval=sync_interval
            )
        )
        self.proc = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for_tcp("127.0.0.1", self.port, 10.0):
            self.close()
            raise RuntimeError("nats-server did not start")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return cpu_s(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


async def publishes(rate: float, count: int, sync_interval: str) -> tuple[float, float]:
    """Return nats-server CPU ms per message of a core publish and of a JetStream publish + ack."""
    server = Server(sync_interval)
    try:
        nc = await nats.connect(server.url, connect_timeout=5)
        js = nc.jetstream(timeout=5.0)
        await js.add_stream(StreamConfig(name="E", subjects=["ev.>"], storage=StorageType.FILE))
        body = b"x" * 1500  # the size of a colour printer's reading
        out = []
        for kind in ("core", "js"):
            start_cpu, start = server.cpu(), time.monotonic()
            for i in range(count):
                if kind == "core":
                    await nc.publish(f"core.p{i % 1000}", body)
                else:
                    await js.publish(f"ev.p{i % 1000}", body, headers={"Nats-Msg-Id": f"m{i}"})
                await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
            await nc.flush(timeout=5)
            out.append(1000 * (server.cpu() - start_cpu) / count)
        await nc.close()
        return out[0], out[1]
    finally:
        server.close()


async def job_cycle(pending: int, rate: float, window_s: float) -> tuple[float, int]:
    """Return nats-server CPU ms per job redelivery + nak with pending jobs, and how many came."""
    server = Server()
    try:
        nc = await nats.connect(server.url, connect_timeout=5)
        js = nc.jetstream(timeout=5.0)
        await js.add_stream(
            StreamConfig(
                name="JOBS",
                subjects=["job.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                max_msgs_per_subject=1,
            )
        )
        await js.add_consumer(
            "JOBS",
            ConsumerConfig(
                durable_name="jobs",
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60,
                max_deliver=-1,
                max_ack_pending=-1,
            ),
        )
        for i in range(pending):
            await js.publish(f"job.p{i}", b'{"printer_id":"p"}')
        sub = await js.pull_subscribe_bind("jobs", stream="JOBS")
        period = pending / rate
        first: set[str] = set()
        warm_until = time.monotonic() + 5.0 + pending / 2000  # every job nak'ed once first
        end = warm_until + window_s
        counted, start_cpu, start = 0, 0.0, 0.0
        while time.monotonic() < end:
            try:
                msgs = await sub.fetch(256, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                msgs = []
            for msg in msgs:
                if msg.subject not in first:
                    first.add(msg.subject)  # spread: the k-th job comes back after k/rate s
                    await msg.nak(delay=(len(first) - 1) / rate)
                else:
                    counted += 1
                    await msg.nak(delay=period)
            if not start and time.monotonic() >= warm_until:
                counted, start_cpu, start = 0, server.cpu(), time.monotonic()
        used = server.cpu() - start_cpu
        await nc.close()
        return 1000 * used / max(counted, 1), counted
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="messages (polls) per second")
    parser.add_argument("--count", type=int, default=2000, help="publishes of each kind")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of job cycles")
    parser.add_argument("--pending", type=int, nargs="+", default=[300, 3000, 10000])
    args = parser.parse_args()
    load_start = os.getloadavg()
    core, js = asyncio.run(publishes(args.rate, args.count, "always"))
    _, js_2m = asyncio.run(publishes(args.rate, args.count, "2m"))
    rows = [
        ("core publish (no JetStream)", core, args.count),
        (
            "JetStream publish + ack, 1.5 KB, Nats-Msg-Id (the reading; fsync always, as `up`)",
            js,
            args.count,
        ),
        ("the same, nats-server's default fsync every 2 min", js_2m, args.count),
    ]
    for pending in args.pending:
        per, counted = asyncio.run(job_cycle(pending, args.rate, args.window))
        rows.append((f"job redelivery + nak, {pending:,} jobs pending", per, counted))
    load_end = os.getloadavg()
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — nats-server CPU per message "
        f"at {args.rate:.0f}/s",
        "",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}; load {' '.join(f'{x:.2f}' for x in load_start)} at start, "
        f"{' '.join(f'{x:.2f}' for x in load_end)} at the end (shared machine)",
        "",
        "| message | nats-server CPU per message | messages |",
        "|---|---:|---:|",
        *(f"| {name} | {per:.3f} ms | {n:,} |" for name, per, n in rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with RESULTS.open("a") as out:
        out.write(text + "\n")


if __name__ == "__main__":
    main()
