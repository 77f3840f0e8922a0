"""What durability costs: JetStream publish+ack latency, R1 default fsync vs R1 and R3 with fsync always.

Three setups in one run, each on its own nats-server(s) on 127.0.0.1 (own ports, own temp store
dirs), all from tonerwatch_shared.embedded.nats_server_config:

- R1, sync_interval 2m  — nats-server's default: fsync every two minutes (loses acked writes on
  power loss or an OS crash);
- R1, sync_interval always — what `tonerwatch up` runs: fsync before every ack;
- R3, sync_interval always — a 3-node cluster, a stream with 3 replicas (what k8s runs).

Each publishes supply-reading-sized messages (2.5 KB, the size of a 6-supply reading) one at a
time, awaiting each ack (what the poller does), after a warm-up, then a burst of concurrent
publishes (64 in flight, the poller's default concurrency). Prints p50/p99/mean and throughput
and the ratios to the first setup. Figures go to bench/NATS.md.

    uv run python bench/nats_durability_bench.py [--messages 2000] [--concurrent 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

from tonerwatch_shared.embedded import (
    free_tcp_port,
    nats_server_binary,
    nats_server_config,
    wait_for_tcp,
)

PAYLOAD = b"x" * 2500


@dataclass
class Figures:
    name: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    burst_per_s: float


def _spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(nats_server_binary()), "-c", str(config), "-l", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextlib.asynccontextmanager
async def servers(root: Path, nodes: int, sync_interval: str) -> AsyncIterator[str]:
    """Run `nodes` nats-servers (a cluster when more than one); yield the client URLs."""
    ports = [free_tcp_port() for _ in range(nodes)]
    routes = [free_tcp_port() for _ in range(nodes)]
    procs = []
    try:
        for i in range(nodes):
            store = root / f"n{i}"
            store.mkdir(parents=True)
            config = store / "nats.conf"
            config.write_text(
                nats_server_config(
                    store_dir=store,
                    port=ports[i],
                    server_name=f"n{i}",
                    max_file_store="2GB",
                    cluster_name="bench" if nodes > 1 else None,
                    cluster_port=routes[i] if nodes > 1 else None,
                    routes=[p for j, p in enumerate(routes) if j != i],
                    sync_interval=sync_interval,
                )
            )
            procs.append(_spawn(config, store / "log"))
        for port in ports:
            assert wait_for_tcp("127.0.0.1", port, 15), f"nats-server on {port} did not start"
        yield ",".join(f"nats://127.0.0.1:{p}" for p in ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)


async def measure(name: str, url: str, replicas: int, messages: int, concurrent: int) -> Figures:
    """Publish one by one, then in bursts; return the latencies and burst rate."""
    nc = await nats.connect(servers=url.split(","), connect_timeout=5)
    js = nc.jetstream(timeout=10)
    config = StreamConfig(
        name="BENCH", subjects=["bench.>"], storage=StorageType.FILE, num_replicas=replicas
    )
    deadline = time.monotonic() + 30
    while True:  # a fresh cluster elects its meta leader first
        try:
            await js.add_stream(config)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    for i in range(200):  # warm-up
        await js.publish(f"bench.w.{i}", PAYLOAD)
    latencies = []
    for i in range(messages):
        start = time.perf_counter()
        await js.publish(f"bench.s.{i % 100}", PAYLOAD)
        latencies.append((time.perf_counter() - start) * 1000)
    sem = asyncio.Semaphore(concurrent)

    async def one(i: int) -> None:
        async with sem:
            await js.publish(f"bench.b.{i % 100}", PAYLOAD)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(messages)))
    burst = messages / (time.perf_counter() - start)
    await nc.close()
    latencies.sort()
    return Figures(
        name,
        statistics.median(latencies),
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        statistics.fmean(latencies),
        burst,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrent", type=int, default=64)
    args = parser.parse_args()
    setups = [
        ("R1, sync_interval 2m (nats default)", 1, "2m"),
        ("R1, sync_interval always", 1, "always"),
        ("R3, sync_interval always", 3, "always"),
    ]
    results = []
    with tempfile.TemporaryDirectory(prefix="tw-nats-bench-") as tmp:
        for i, (name, nodes, sync) in enumerate(setups):
            async with servers(Path(tmp) / f"s{i}", nodes, sync) as url:
                results.append(await measure(name, url, nodes, args.messages, args.concurrent))
    base = results[0]
    print(f"{args.messages} publishes of {len(PAYLOAD)} bytes, one at a time (awaiting each ack),")
    print(
        f"then {args.messages} with {args.concurrent} in flight; store on {tempfile.gettempdir()}"
    )
    print()
    print(
        f"{'setup':38} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'burst/s':>9}  vs first (p50, p99, burst)"
    )
    for r in results:
        print(
            f"{r.name:38} {r.p50_ms:8.3f} {r.p99_ms:8.3f} {r.mean_ms:8.3f} {r.burst_per_s:9.0f}"
            f"  x{r.p50_ms / base.p50_ms:.1f}, x{r.p99_ms / base.p99_ms:.1f},"
            f" x{r.burst_per_s / base.burst_per_s:.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
