"""Run inside a network namespace of its own (`unshare -n`): the ICMP pre-pass against a ping-deaf host.

Prints one JSON object: sweeps of 127.0.0.0/28 with an snmpsim HP M252dw on 127.0.0.10, first with
the unprivileged datagram socket while loopback answers ping, then with ping ignored (as a firewalled
printer would), with and without the pre-pass. Only this namespace's loopback is ever addressed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tonerwatch_discovery.sweep import Sweep, SweepConfig, SweepResult
from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port

HOST = "127.0.0.10"


def _sysctl(name: str, value: str) -> None:
    Path("/proc/sys/net/ipv4", name).write_text(value)


def _figures(result: SweepResult) -> dict[str, object]:
    return {
        "printers": [p.address for p in result.printers],
        "echo_replies": result.echo_replies,
        "live": result.live,
        "probed": result.probed,
        "silent": result.silent_addresses,
        "bytes_per_silent_address": result.bytes_per_silent_address,
        "end": result.end_condition,
    }


async def main(walks: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "public.snmprec"
        shutil.copyfile(walks / "jetdirect_m252dw.snmprec", recording)
        port = free_udp_port(HOST)
        async with SnmpSimulator([recording], [(HOST, port)]):

            def config(prepass: bool) -> SweepConfig:
                return SweepConfig(
                    targets=["127.0.0.0/28"],
                    port=port,
                    rate_pps=500.0,
                    timeout_s=0.3,
                    snapshot=False,
                    icmp_prepass=prepass,
                    icmp_sockets=("dgram",),
                )

            out["answering"] = _figures(await Sweep(config(True)).run())
            _sysctl("icmp_echo_ignore_all", "1")
            out["deaf_prepass"] = _figures(await Sweep(config(True)).run())
            out["deaf_no_prepass"] = _figures(await Sweep(config(False)).run())
    return out


if __name__ == "__main__":
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    _sysctl("ping_group_range", "0 0")  # this namespace only: root's group may use ping sockets
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
