"""Discovery sweep benchmark on loopback only: prints time, CPU seconds, peak RSS and bytes (no asserts).

Scenarios, each in its own process so peak RSS is its own:
  slash24  a 127.x.y.0/24 with two snmpsim printers (HP M252dw, Konica C250i), 1 s timeout, 1,000 pps
  slash16  a 127.x.0.0/16 of 65,534 silent loopback addresses at 5,000 pps (hard cap 40 s)
  v3       slash24 with the HP answering SNMPv3 only (credential sets: community, then a v3 user)
  icmp     slash24 with the ICMP echo pre-pass (every 127.x address answers ping: worst case)
Run: uv run python bench/discovery_bench.py [slash24|slash16|v3|icmp]
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from tonerwatch_shared.events import SnmpCredentials

ROOT = Path(__file__).resolve().parents[1]
WALKS = ROOT.parent / "shared" / "printer-walks"
HARD_CAP_S = 40.0


def _usage() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


async def _sweep(
    targets: list[str],
    port: int,
    rate: float,
    timeout_s: float,
    credentials: Sequence[SnmpCredentials] = (SnmpCredentials(),),
    icmp_prepass: bool = False,
) -> dict[str, object]:
    from tonerwatch_discovery.sweep import Sweep, SweepConfig

    config = SweepConfig(
        targets=targets,
        port=port,
        rate_pps=rate,
        timeout_s=timeout_s,
        time_limit_s=HARD_CAP_S,
        credentials=credentials,
        icmp_prepass=icmp_prepass,
    )
    cpu0, rss0 = _usage()
    start = time.perf_counter()
    result = await Sweep(config).run()
    wall = time.perf_counter() - start
    cpu1, rss1 = _usage()
    return {
        "targets": targets,
        "rate_pps": rate,
        "timeout_s": timeout_s,
        "end_condition": result.end_condition,
        "addresses": result.total,
        "live": result.live,
        "printers": len(result.printers),
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu1 - cpu0, 3),
        "peak_rss_mb": round(rss1, 1),
        "rss_before_sweep_mb": round(rss0, 1),
        "echo_replies": result.echo_replies,
        "bytes_per_silent_address": result.bytes_per_silent_address,
        "bytes_per_printer_identified": result.bytes_per_printer,
        "first_snapshot_bytes_per_printer": result.snapshot_bytes_per_printer,
        "per_printer": [
            {
                "model": p.identity.model,
                "credentials": p.credentials_name,
                "probe": p.probe.total,
                "identify": p.identify.total,
                "first_snapshot": p.first_snapshot.total,
            }
            for p in result.printers
        ],
    }


async def slash24(*, v3: bool = False, icmp_prepass: bool = False) -> dict[str, object]:
    from tonerwatch_shared.simulator import SnmpSimulator, V3User, free_udp_port

    prefix = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"
    port = free_udp_port(f"{prefix}.1")
    user = V3User("ops")
    credentials = [SnmpCredentials()]
    if v3:  # snmpsim serves a recording by v3 context name: "hq-secret" answers no v2c GET
        credentials.append(
            SnmpCredentials(
                version="3",
                user=user.name,
                auth_protocol=user.auth_protocol,
                auth_key=user.auth_key,
                priv_protocol="AES",
                priv_key=user.priv_key,
                community="hq-secret",
            )
        )
    sims = []
    with tempfile.TemporaryDirectory() as tmp:
        for host, name in ((10, "jetdirect_m252dw"), (20, "konica_c250i")):
            folder = Path(tmp) / name
            folder.mkdir()
            only_v3 = v3 and host == 10
            recording = folder / ("hq-secret.snmprec" if only_v3 else "public.snmprec")
            recording.write_bytes((WALKS / f"{name}.snmprec").read_bytes())
            sims.append(
                SnmpSimulator(
                    [recording], [(f"{prefix}.{host}", port)], v3_user=user if only_v3 else None
                )
            )
        try:
            await asyncio.gather(*(s.start() for s in sims))
            return await _sweep([f"{prefix}.0/24"], port, 1000.0, 1.0, credentials, icmp_prepass)
        finally:
            for s in sims:
                s.stop()


async def slash16() -> dict[str, object]:
    prefix = f"127.{random.randint(64, 250)}"
    return await _sweep([f"{prefix}.0.0/16"], 9, 5000.0, 1.0)


def main() -> None:
    if len(sys.argv) > 1:
        scenarios: dict[str, Callable[[], Coroutine[Any, Any, dict[str, object]]]] = {
            "slash24": slash24,
            "slash16": slash16,
            "v3": lambda: slash24(v3=True),
            "icmp": lambda: slash24(icmp_prepass=True),
        }
        print(json.dumps(asyncio.run(scenarios[sys.argv[1]]())))
        return
    for name in ("slash24", "slash16", "v3", "icmp"):
        done = subprocess.run(
            [sys.executable, __file__, name],
            capture_output=True,
            text=True,
            timeout=HARD_CAP_S + 60,
            check=False,
        )
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}")
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: {json.dumps(figures, indent=1)}")


if __name__ == "__main__":
    main()
