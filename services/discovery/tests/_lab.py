"""A small loopback "site" for sweep tests: snmpsim agents on a few 127.x.y.z addresses of one /24.

Each device is its own SnmpSimulator serving one recording as community "public": printers from
../shared/printer-walks, other devices (switch, Linux host, UPS) from the snmpsim-data package.
Every other address of the block is silent. Only 127.0.0.0/8 is ever used.
"""

from __future__ import annotations

import asyncio
import bz2
import random
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import snmpsim_data  # type: ignore[import-untyped]

from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port

DATA = Path(snmpsim_data.__file__).parent / "data"

PRINTERS = {
    10: "jetdirect_m252dw",  # HP Color LaserJet Pro M252dw, serial VNB3J99999
    20: "konica_c250i",  # Konica Minolta bizhub C250i, serial AA2M021115700
    30: "brother_hl-l2340dw",  # Brother HL-L2340DW, private MIB only
}
OTHERS = {
    40: "network/switch/dlink-des3038",  # D-Link DES-3028 switch
    50: "os/linux/slackware",  # a Linux host (net-snmp)
    60: "UPS/apc-8641",  # APC rack PDU / UPS card
}


def random_block() -> str:
    """A random 127.x.y.0/24 prefix ("127.91.17"), so concurrent test runs do not collide."""
    return f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"


def recording_copy(source: Path, directory: Path, community: str = "public") -> Path:
    """The recording copied (unpacked if .bz2) as <community>.snmprec in its own directory."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{community}.snmprec"
    if source.suffix == ".bz2":
        target.write_bytes(bz2.decompress(source.read_bytes()))
    else:
        shutil.copyfile(source, target)
    return target


def other_device(name: str) -> Path:
    """The snmpsim-data recording of a non-printer device."""
    for suffix in (".snmprec", ".snmprec.bz2"):
        path = DATA / f"{name}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"snmpsim-data has no recording {name}")


@dataclass
class Lab:
    """The agents running: block prefix, port, and which host octet serves which recording."""

    prefix: str
    port: int
    devices: dict[int, str]
    simulators: list[SnmpSimulator]

    def ip(self, host: int) -> str:
        """The address of host octet `host` in the block."""
        return f"{self.prefix}.{host}"

    @property
    def block(self) -> str:
        """The /24 swept."""
        return f"{self.prefix}.0/24"


@asynccontextmanager
async def run_lab(
    walks: Path,
    tmp: Path,
    devices: dict[int, Path],
    prefix: str | None = None,
    port: int | None = None,
) -> AsyncIterator[Lab]:
    """Starts one simulator per device (concurrently) and stops them all on exit."""
    prefix = prefix or random_block()
    port = port or free_udp_port(f"{prefix}.1")
    sims = [
        SnmpSimulator([recording_copy(path, tmp / f"dev{host}")], [(f"{prefix}.{host}", port)])
        for host, path in devices.items()
    ]
    try:
        await asyncio.gather(*(s.start() for s in sims))
        yield Lab(prefix, port, {h: p.name for h, p in devices.items()}, sims)
    finally:
        for sim in sims:
            sim.stop()


def site_devices(walks: Path, printers: Sequence[int] = (10, 20, 30)) -> dict[int, Path]:
    """The standard site: three printers and three other SNMP devices."""
    devices = {h: walks / f"{PRINTERS[h]}.snmprec" for h in printers}
    devices.update({h: other_device(name) for h, name in OTHERS.items()})
    return devices
