"""What the poller keeps per printer between polls: its plans and parsed answers (issue 15).

N snmpd printers on a loopback network of the run's own (127.X.Y.1, ports from 20000), each
learned and polled twice by tonerwatch_shared.reading.read_printer as the poller does, keeping
`plan` and `parsed` per printer; tracemalloc (started after one warm-up printer, so import-time
caches are not counted) gives the bytes still held per printer after gc.collect(), by line.

Then what the poller keeps of each printer's configuration (beside the KV mirror's bytes, not
counted: both keep the same object), for N configurations as the CSV import writes them: before,
the three structures of main at 6077cb3 (the parsed PrinterConfigured with its bytes, the
(site, partition) placement, the overdue check's facts), rebuilt here as that code built them;
after, the one record (tonerwatch_poller.service.Monitored).

    python bench/poller_memory_bench.py --printers 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

from e2e import fleet_address, free_ports, git_head, load
from poll_bench import WALKS, snmpd_config, start_snmpd, stop

from tonerwatch_poller.leases import partition_of
from tonerwatch_poller.service import Monitored
from tonerwatch_shared.events import PrinterConfigured, SnmpCredentials
from tonerwatch_shared.reading import Parsed, read_printer
from tonerwatch_shared.snmp.poll import PollPlan
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.udp import UdpSnmpClient

RESULTS = Path(__file__).resolve().parent / "results" / "poller_memory.md"


async def measure(host: str, ports: list[int], top: int) -> list[str]:
    client = UdpSnmpClient()
    plans: dict[str, PollPlan] = {}
    parsed: dict[str, Parsed | None] = {}
    try:

        async def poll(pid: str, port: int) -> None:
            target = SnmpTarget(host, port, community="public", timeout=2.0, retries=1)
            polled = await read_printer(
                client,
                target,
                printer_id=pid,
                site_id="site-1",
                source="poller",
                plan=plans.get(pid),
                parsed=parsed.get(pid),
            )
            plans[pid] = polled.plan
            parsed[pid] = polled.parsed

        for _ in range(2):  # warm-up printer: import-time caches made before tracing
            await poll("warm-up", ports[0])
        plans.clear()
        parsed.clear()
        gc.collect()
        tracemalloc.start(5)
        before = tracemalloc.take_snapshot()
        n = len(ports) - 1
        for _ in range(2):  # learning, then a steady poll
            for i, port in enumerate(ports[1:]):
                await poll(f"{i:08d}-0000-4000-8000-000000000000", port)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        await client.close()
    diff = after.compare_to(before, "lineno")
    total = sum(d.size_diff for d in diff)
    lines = [f"| all | {total / n:,.0f} |"]
    for d in diff[:top]:
        frame = d.traceback[0]
        name = frame.filename.split("/src/")[-1].split("site-packages/")[-1]
        lines.append(
            f"| {name}:{frame.lineno} ({d.count_diff / n:.1f} objects) | {d.size_diff / n:,.0f} |"
        )
    return lines


def held_per_printer(build: object, n: int) -> float:
    """Return the bytes build() (making what is kept of n printers) leaves held, per printer."""
    assert callable(build)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    kept = build()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    del kept
    return sum(d.size_diff for d in after.compare_to(before, "filename")) / n


def measure_configs(n: int, partitions: int = 16) -> list[str]:
    """What the poller keeps of each printer's configuration, before and after (one record)."""
    raws = {
        uuid.uuid4().hex: PrinterConfigured(
            source="api",
            site_id="default",
            printer_id=str(uuid.uuid4()),
            address=f"127.1.{i // 250}.{i % 250 + 1}",
            port=20000 + i,
            credentials=SnmpCredentials(community="public"),
            interval_s=300.0,
            name=f"bench printer {i:05d}",
        ).to_bytes()
        for i in range(n)
    }

    def before() -> object:
        configs, placed, facts = {}, {}, {}
        for key, raw in raws.items():
            placed[key] = (str(json.loads(raw)["site_id"]), partition_of(key, partitions))
            configs[key] = (raw, PrinterConfigured.model_validate_json(raw))
            fact = PrinterConfigured.model_validate_json(raw)  # the overdue check's own parse
            facts[key] = (
                raw,
                fact.printer_id,
                fact.site_id,
                fact.interval_s,
                fact.occurred_at.timestamp(),
            )
        return configs, placed, facts

    def after() -> object:
        shared: dict[SnmpCredentials, SnmpCredentials] = {}
        return {
            key: Monitored.parse(raw, partition_of(key, partitions), shared)
            for key, raw in raws.items()
        }

    old, new = held_per_printer(before, n), held_per_printer(after, n)
    return [
        f"| configurations kept, before: parsed + placement + overdue facts | {old:,.0f} |",
        f"| configurations kept, after: one record (Monitored) | {new:,.0f} |",
        f"| before / after | {old / new:.1f}x |",
    ]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--printers", type=int, default=200)
    parser.add_argument("--recording", default="jetdirect_m252dw")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tonerwatch-pmem-")))
        conf = tmp / "snmpd.conf"
        conf.write_text(snmpd_config(load_snmprec(WALKS / f"{args.recording}.snmprec")))
        host = f"{fleet_address()}.1"
        ports = free_ports(args.printers + 1, host)
        snmpds = start_snmpd(conf, ports, host)
        stack.callback(stop, snmpds)
        time.sleep(1.0 + len(ports) / 2000)  # snmpd binding its sockets
        rows = asyncio.run(measure(host, ports, args.top))
    rows += measure_configs(max(1000, args.printers))
    out = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {args.printers} printers ({args.recording}), "
        f"git {git_head()}, load {load()}",
        "",
        "| held per printer after two polls (plan + parsed) | bytes |",
        "|---|---:|",
        *rows,
        "",
    ]
    print("\n".join(out))
    if not args.no_save:
        with RESULTS.open("a") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
