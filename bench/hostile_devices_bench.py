"""What misbehaving devices cost a poller: time and bytes per poll, as ratios to a well-behaved printer.

Every device is on 127.0.0.1 (snmpsim, a UDP relay in front of it, or a fake agent in this process);
each is polled the poller's way (tonerwatch_shared.reading.read_printer on the poller's
UdpSnmpClient, with the poller's default timeout and retries): a first poll that learns the
layout, then steady polls with the learned plan, one at a time. Prints, per device, the median
wall time of a poll, bytes received and sent and requests per poll, the size of the published
event, the outcome (a reading and its anomalies, or the error), and time and bytes as ratios to
the well-behaved printer of the same run. Prints figures; asserts nothing.

Devices:
  good         the HP M252dw recording (shared/printer-walks) served by snmpsim
  slow         the same behind a relay delaying every answer (--delay-ms, default 100)
  truncated    the same behind a relay cutting every answer to 60 % of its bytes
  wrong-types  the same recording with every INTEGER of the Printer MIB sent as an OCTET STRING
  phantom      an agent inventing rows (shared/tests/fixtures/hostile/phantom-rows.snmprec)
  absurd       absurd values: Counter32 maxima, long strings, controls (absurd-values.snmprec)
  endless      a fake agent answering every request with ever new rows of the supplies table
  silent       a port that never answers

    uv run python bench/hostile_devices_bench.py [--polls 5] [--delay-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tonerwatch_shared.reading import read_printer
from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port
from tonerwatch_shared.snmp.ber import RESPONSE, decode_header, encode_oid
from tonerwatch_shared.snmp.poll import PollPlan
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.udp import UdpSnmpClient

ROOT = Path(__file__).resolve().parents[1]
WALKS = ROOT.parent / "shared" / "printer-walks"
HOSTILE = ROOT / "shared" / "tests" / "fixtures" / "hostile"
GOOD = "jetdirect_m252dw"
HOST = "127.0.0.1"
PRINTER_MIB = "1.3.6.1.2.1.43."
SUPPLY_LEVEL = "1.3.6.1.2.1.43.11.1.1.9.1"
try:  # the poller's defaults, so the bench measures what a replica does out of the box
    from tonerwatch_poller.service import Settings as _PollerSettings

    TIMEOUT_S = float(_PollerSettings.model_fields["poll_timeout_s"].default)
    RETRIES = int(_PollerSettings.model_fields["poll_retries"].default)
except ImportError:  # pragma: no cover - the bench run outside the workspace
    TIMEOUT_S, RETRIES = 2.0, 1


def wrong_types(recording: Path, out: Path) -> Path:
    """Write recording with every Printer MIB INTEGER turned into an OCTET STRING ("lots")."""
    lines = []
    for line in recording.read_text().splitlines():
        parts = line.split("|", 2)
        if len(parts) == 3 and parts[0].startswith(PRINTER_MIB) and parts[1] == "2":
            line = f"{parts[0]}|4|lots"
        lines.append(line)
    out.write_text("\n".join(lines) + "\n")
    return out


class Relay(asyncio.DatagramProtocol):
    """A UDP relay to an agent that changes its answers (delay, truncation) on the way back."""

    def __init__(self, upstream: tuple[str, int], delay_s: float = 0.0, keep: float = 1.0) -> None:
        self.upstream = upstream
        self.delay_s = delay_s
        self.keep = keep
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.out: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client = addr
        if self.out is not None:
            self.out.sendto(data, self.upstream)

    def answer(self, data: bytes) -> None:
        if self.keep < 1.0:
            data = data[: max(1, int(len(data) * self.keep))]
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay_s, self._send, data)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and self.client is not None:
            self.transport.sendto(data, self.client)


class _Back(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.answer(data)


async def start_relay(upstream: tuple[str, int], **kwargs: float) -> tuple[Relay, int]:
    """Start a relay on a free loopback port; return it and its port."""
    loop = asyncio.get_running_loop()
    transport, relay = await loop.create_datagram_endpoint(
        lambda: Relay(upstream, **kwargs), local_addr=(HOST, 0)
    )
    out, _ = await loop.create_datagram_endpoint(lambda: _Back(relay), local_addr=(HOST, 0))
    relay.out = out
    return relay, int(transport.get_extra_info("sockname")[1])


def _int(v: int) -> bytes:
    body = v.to_bytes(v.bit_length() // 8 + 1, "big", signed=True)
    return b"\x02" + bytes([len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 128 else b"\x82" + n.to_bytes(2, "big")
    return bytes([tag]) + length + body


class Endless(asyncio.DatagramProtocol):
    """Answers every request with 30 new rows of the supply level column, for ever."""

    def __init__(self) -> None:
        self.rows = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        version, community, _tag, rid, _pos = decode_header(data)
        varbinds = []
        for _ in range(30):
            self.rows += 1
            varbinds.append(_tlv(0x30, encode_oid(f"{SUPPLY_LEVEL}.{self.rows}") + _int(50)))
        pdu = _tlv(RESPONSE, _int(rid) + _int(0) + _int(0) + _tlv(0x30, b"".join(varbinds)))
        message = _tlv(0x30, _int(version) + _tlv(0x04, community) + pdu)
        assert self.transport is not None
        self.transport.sendto(message, addr)


class Silent(asyncio.DatagramProtocol):
    """Takes every request and answers none."""


async def start_agent(factory: Callable[[], asyncio.DatagramProtocol]) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(factory, local_addr=(HOST, 0))
    return int(transport.get_extra_info("sockname")[1])


@dataclass
class Figures:
    """One device's polls."""

    name: str
    wall_ms: list[float] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    event_bytes: list[int] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def saw(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    @property
    def outcome(self) -> str:
        return "; ".join(f"{n}x {o}" for o, n in self.outcomes.items())

    def median(self, values: list[float] | list[int]) -> float:
        return float(statistics.median(values)) if values else 0.0


async def poll_device(name: str, target: SnmpTarget, polls: int) -> Figures:
    """Poll target polls times, the first learning the layout; return what each poll cost."""
    figures = Figures(name)
    plan: PollPlan | None = None
    client = UdpSnmpClient()
    try:
        for _ in range(polls):
            before = (
                client.totals.bytes_received,
                client.totals.bytes_sent,
                client.totals.requests,
            )
            started = time.perf_counter()
            try:
                polled = await read_printer(
                    client, target, printer_id=name, site_id="bench", source="bench", plan=plan
                )
            except Exception as exc:  # a hostile device's error is a figure here
                figures.saw(f"{type(exc).__name__}: {str(exc).split(': ', 1)[-1][:50]}")
                reading = None
            else:
                reading = polled.reading
                plan = polled.plan
            figures.wall_ms.append((time.perf_counter() - started) * 1000)
            figures.received.append(client.totals.bytes_received - before[0])
            figures.sent.append(client.totals.bytes_sent - before[1])
            figures.requests.append(client.totals.requests - before[2])
            if reading is not None:
                figures.event_bytes.append(len(reading.to_bytes()))
                figures.saw(
                    f"reading: {len(reading.supplies)} supplies, {len(reading.anomalies)} anomalies"
                )
    finally:
        await client.close()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=5, help="polls per device (first learns)")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="the slow device's delay")
    args = parser.parse_args()
    polls = max(1, min(args.polls, 50))
    with tempfile.TemporaryDirectory(prefix="tw-hostile-bench-") as tmp:
        mistyped = wrong_types(WALKS / f"{GOOD}.snmprec", Path(tmp) / "wrong-types.snmprec")
        recordings = [
            WALKS / f"{GOOD}.snmprec",
            mistyped,
            HOSTILE / "phantom-rows.snmprec",
            HOSTILE / "absurd-values.snmprec",
        ]
        async with SnmpSimulator(recordings) as sim:
            upstream = (sim.host, sim.port)
            _, slow_port = await start_relay(upstream, delay_s=args.delay_ms / 1000)
            _, cut_port = await start_relay(upstream, keep=0.6)
            endless_port = await start_agent(Endless)
            silent_port = await start_agent(Silent)

            def at(port: int, community: str = GOOD) -> SnmpTarget:
                return SnmpTarget(
                    HOST, port, community=community, timeout=TIMEOUT_S, retries=RETRIES
                )

            devices = [
                ("good", at(sim.port)),
                (f"slow ({args.delay_ms:.0f} ms)", at(slow_port)),
                ("truncated (60 %)", at(cut_port)),
                ("wrong-types", at(sim.port, "wrong-types")),
                ("phantom rows", at(sim.port, "phantom-rows")),
                ("absurd values", at(sim.port, "absurd-values")),
                ("endless", at(endless_port)),
                ("silent", at(silent_port)),
            ]
            results = [await poll_device(name, target, polls) for name, target in devices]
    assert free_udp_port  # loopback only: every port above is 127.0.0.1
    good = results[0]
    base_ms = good.median(good.wall_ms) or 1.0
    base_bytes = good.median(good.received) or 1.0
    print(
        f"{polls} polls per device, one at a time (first learns the layout); poller defaults: "
        f"timeout {TIMEOUT_S:g} s, {RETRIES} retry; medians per poll; ratios to 'good'\n"
    )
    header = (
        f"{'device':20} {'ms/poll':>9} {'first ms':>9} {'B in':>8} {'B out':>7} {'req':>5}"
        f" {'event B':>8} {'x time':>7} {'x bytes':>8}  outcome"
    )
    print(header)
    print("-" * len(header))
    for f in results:
        print(
            f"{f.name:20} {f.median(f.wall_ms):9.1f} {f.wall_ms[0]:9.1f} {f.median(f.received):8.0f}"
            f" {f.median(f.sent):7.0f} {f.median(f.requests):5.0f} {f.median(f.event_bytes):8.0f}"
            f" {f.median(f.wall_ms) / base_ms:7.1f} {f.median(f.received) / base_bytes:8.2f}"
            f"  {f.outcome}"
        )


if __name__ == "__main__":
    asyncio.run(main())
