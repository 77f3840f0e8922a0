"""The peer of bench/e2e.py: Debian's prometheus-snmp-exporter scraped like Prometheus would.

- `start_exporter`: the exporter on 127.0.0.1 with bench/snmp_exporter.yml (or a copy adding the
  module `printer_get`: one GET of exactly the OIDs of TonerWatch's steady poll).
- `Scraper`: Prometheus's part, in a thread: each target scraped every interval, the targets'
  slots spread evenly over the interval, at most `in_flight` scrapes at once; bounded in count
  (targets x rounds) and in time.
- `Relay`: a UDP relay on loopback counting SNMP payload bytes and datagrams each way, so one
  printer's scrape (or one of our polls) can be weighed as the poll bench weighs ours.

Loopback only: every address here is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"
EXPORTER = "prometheus-snmp-exporter"
CONFIG = Path(__file__).resolve().parent / "snmp_exporter.yml"
MODULES = {"walk": "printer", "get": "printer_get"}
_PACKETS = re.compile(rb"^snmp_scrape_packets_sent ([0-9.e+]+)$", re.M)


def exporter_path() -> str | None:
    return shutil.which(EXPORTER)


def exporter_version() -> str:
    """'0.21.0' (the exporter prints its version on stderr)."""
    out = subprocess.run(
        [EXPORTER, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    m = re.search(r"version (\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "?"


def write_config(tmp: Path, get_oids: Sequence[str]) -> Path:
    """A copy of bench/snmp_exporter.yml with the module `printer_get`: the same metrics, and
    instead of the walks one GET of `get_oids` (the instances our steady poll reads)."""
    text = CONFIG.read_text()
    body = text[text.index("printer:\n") :]
    head, metrics = body.split("  metrics:\n", 1)
    settings = head.split("  get:\n", 1)[0].replace("printer:\n", "printer_get:\n", 1)
    get = "  get:\n" + "".join(f"  - {oid}\n" for oid in get_oids)
    out = tmp / "snmp_exporter.yml"
    out.write_text(text + "\n" + settings + get + "  metrics:\n" + metrics)
    return out


def start_exporter(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The exporter listening on 127.0.0.1:port, answering once it is up (bounded, 30 s)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                EXPORTER,
                f"--config.file={config}",
                f"--web.listen-address={HOST}:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{HOST}:{port}/", timeout=2).status_code == 200:
                return proc
        if proc.poll() is not None:
            raise SystemExit(f"{EXPORTER} exited {proc.returncode}; see {log}")
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"{EXPORTER} not answering on {HOST}:{port} after 30 s; see {log}")


@dataclass
class Scrape:
    slot: float  # when it was due (epoch s)
    start: float
    end: float
    ok: bool  # HTTP 200 with the supply levels in it
    packets: float  # SNMP packets the exporter sent for it (its snmp_scrape_packets_sent)
    size: int  # bytes of the HTTP body


@dataclass
class Scraper:
    """Scrapes `/snmp?module=...&target=127.0.0.1:<port>` for each port every interval."""

    url: str
    module: str
    ports: Sequence[int]
    interval_s: float
    max_s: float  # the whole run: warm-up, window, settling
    in_flight: int = 64
    target_host: str = HOST  # the printers' loopback address
    scrapes: list[Scrape] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)

    async def _run(self) -> None:
        n = len(self.ports)
        rounds = int(self.max_s / self.interval_s) + 2
        base = time.time() + 1.0
        deadline = time.monotonic() + self.max_s + 5
        slots = asyncio.Semaphore(self.in_flight)
        tasks: set[asyncio.Task[None]] = set()
        limits = httpx.Limits(max_connections=self.in_flight, max_keepalive_connections=16)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:

            async def one(port: int, slot: float) -> None:
                async with slots:
                    start = time.time()
                    try:
                        r = await client.get(
                            f"{self.url}/snmp",
                            params={"module": self.module, "target": f"{self.target_host}:{port}"},
                        )
                        body = r.content
                        ok = r.status_code == 200 and b"prtMarkerSuppliesLevel{" in body
                    except httpx.HTTPError as exc:
                        self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
                        body, ok = b"", False
                    m = _PACKETS.search(body)
                    self.scrapes.append(
                        Scrape(slot, start, time.time(), ok, float(m.group(1)) if m else 0.0,
                               len(body))
                    )  # fmt: skip

            for k in range(rounds):  # bounded: targets x rounds scrapes, and max_s seconds
                for i, port in enumerate(self.ports):
                    slot = base + k * self.interval_s + self.interval_s * i / n
                    # The stop flag is a threading.Event set from the bench's main thread.
                    while not self._stop.is_set() and (wait := slot - time.time()) > 0:  # noqa: ASYNC110
                        await asyncio.sleep(min(wait, 0.5))
                    if self._stop.is_set() or time.monotonic() > deadline:
                        break
                    task = asyncio.create_task(one(port, slot))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    continue
                break
            if tasks:
                await asyncio.wait(tasks, timeout=30)


class Relay(asyncio.DatagramProtocol):
    """Forwards datagrams from 127.0.0.1:<port> to an agent and back, counting payload bytes."""

    def __init__(self, agent_host: str, agent_port: int) -> None:
        self.agent = (agent_host, agent_port)
        self.down: asyncio.DatagramTransport | None = None
        self.ups: dict[tuple[str, int], asyncio.DatagramTransport] = {}
        self.sent = self.received = self.requests = self.responses = 0

    def reset(self) -> None:
        self.sent = self.received = self.requests = self.responses = 0

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(HOST, 0))
        self.down = transport
        return int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent += len(data)
        self.requests += 1
        up = self.ups.get(addr)
        if up is not None:
            up.sendto(data)
            return
        asyncio.get_running_loop().create_task(self._open_up(addr, data))

    async def _open_up(self, client: tuple[str, int], first: bytes) -> None:
        relay = self

        class Up(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                relay.received += len(data)
                relay.responses += 1
                if relay.down is not None:
                    relay.down.sendto(data, client)

        loop = asyncio.get_running_loop()
        up, _ = await loop.create_datagram_endpoint(Up, remote_addr=self.agent)
        self.ups[client] = up
        up.sendto(first)

    def close(self) -> None:
        for up in self.ups.values():
            up.close()
        if self.down is not None:
            self.down.close()
