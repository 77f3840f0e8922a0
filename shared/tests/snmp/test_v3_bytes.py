"""SNMPv3 byte counts against the datagrams a loopback relay actually carried."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
import pytest_asyncio

from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.poll import poll_printer
from tonerwatch_shared.snmp.target import SnmpTarget

pytestmark = pytest.mark.recordings


class _Relay(asyncio.DatagramProtocol):
    """Forwards one client's datagrams to the agent and back, counting octets each way."""

    def __init__(self, agent: tuple[str, int]) -> None:
        self.agent = agent
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.sent = 0
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport is a DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self.transport is not None
        source = (str(addr[0]), int(addr[1]))
        if source == self.agent:
            self.received += len(data)
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = source
            self.sent += len(data)
            self.transport.sendto(data, self.agent)


@pytest_asyncio.fixture
async def relay(snmp_agent: SnmpSimulator) -> AsyncIterator[_Relay]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Relay((snmp_agent.host, snmp_agent.port)), local_addr=("127.0.0.1", 0)
    )
    yield protocol
    transport.close()


def _through(target: SnmpTarget, relay: _Relay) -> SnmpTarget:
    assert relay.transport is not None
    port = int(relay.transport.get_extra_info("sockname")[1])
    return dataclasses.replace(target, port=port)


async def test_hp_m252dw_v3_poll_counts_every_byte_on_the_wire(
    snmp_agent: SnmpSimulator, relay: _Relay
) -> None:
    try:
        import cryptography  # noqa: F401  (pysnmp needs it for privacy)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("cryptography not installed: SNMPv3 privacy unavailable")
        pytest.skip("cryptography not installed: SNMPv3 privacy unavailable")
    client = SnmpClient()
    try:
        target = _through(snmp_agent.v3_target("jetdirect_m252dw"), relay)
        first = await poll_printer(client, target)
        steady = await poll_printer(client, target, first.plan)
    finally:
        await client.close()
    counted_sent = first.bytes_sent + steady.bytes_sent
    counted_received = first.bytes_received + steady.bytes_received
    # Engine-ID discovery and its report included: every datagram is some call's.
    assert (counted_sent, counted_received) == (relay.sent, relay.received)
    assert first.round_trips <= 3 and steady.requests == 1
    assert steady.bytes_sent + steady.bytes_received < 1000


async def test_v2c_poll_counts_match_the_wire_too(
    snmp_agent: SnmpSimulator, relay: _Relay, printer_walks_dir: Path
) -> None:
    client = SnmpClient()
    try:
        target = _through(snmp_agent.target("canonprinter_tm"), relay)
        first = await poll_printer(client, target)
    finally:
        await client.close()
    assert (first.bytes_sent, first.bytes_received) == (relay.sent, relay.received)
