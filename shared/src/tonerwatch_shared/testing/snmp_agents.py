"""Scripted SNMP agents on loopback for tests: answers built byte by byte, so a test can be any
agent's bug (a repeated OID, an answer cut short, an arc no agent may send, an answer late or
never) where snmpsim and snmpd only serve well-formed ones."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tonerwatch_shared.snmp.ber import RESPONSE, decode_header, encode_oid


def tlv(tag: int, body: bytes) -> bytes:
    """Return tag, BER length (short or two-octet long form) and body."""
    n = len(body)
    length = bytes([n]) if n < 128 else b"\x82" + n.to_bytes(2, "big")
    return bytes([tag]) + length + body


def ber_int(value: int) -> bytes:
    """Return value as a BER INTEGER."""
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def varbind(oid: str, value: int) -> bytes:
    """Return one VarBind of oid and an INTEGER value."""
    return tlv(0x30, encode_oid(oid) + ber_int(value))


def response(version: int, rid: int, community: bytes, varbinds: bytes) -> bytes:
    """Return a GetResponse message (no error) carrying varbinds (VarBinds already encoded)."""
    pdu = tlv(RESPONSE, ber_int(rid) + ber_int(0) + ber_int(0) + tlv(0x30, varbinds))
    return tlv(0x30, ber_int(version) + tlv(0x04, community) + pdu)


def int_response(version: int, rid: int, community: bytes, pairs: list[tuple[str, int]]) -> bytes:
    """Return a GetResponse message answering each OID of pairs with its INTEGER."""
    return response(version, rid, community, b"".join(varbind(o, v) for o, v in pairs))


@dataclass(frozen=True)
class Request:
    """One request a scripted agent took: its header and its number (the first is 1)."""

    version: int
    community: bytes
    rid: int
    number: int


Answer = Callable[[Request], bytes | None]
Delay = Callable[[Request], float]


class ScriptedAgent(asyncio.DatagramProtocol):
    """Answers each request with answer(request) (None: never) after delay(request) seconds."""

    def __init__(self, answer: Answer, delay: Delay | None = None) -> None:
        self.answer = answer
        self.delay = delay
        self.requests: list[Request] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.late: list[asyncio.TimerHandle] = []  # answers still to send: cancelled at close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        version, community, _tag, rid, _pos = decode_header(data)
        request = Request(version, community, rid, len(self.requests) + 1)
        self.requests.append(request)
        datagram = self.answer(request)
        if datagram is None or self.transport is None:
            return
        delay = self.delay(request) if self.delay is not None else 0.0
        if delay > 0:
            loop = asyncio.get_running_loop()
            self.late.append(loop.call_later(delay, self.transport.sendto, datagram, addr))
        else:
            self.transport.sendto(datagram, addr)


StartAgent = Callable[..., Awaitable[tuple[ScriptedAgent, int]]]


@contextlib.asynccontextmanager
async def scripted_agents() -> AsyncIterator[StartAgent]:
    """Yield start(answer, delay=None) -> (agent, its port on 127.0.0.1); all closed on exit."""
    agents: list[tuple[asyncio.DatagramTransport, ScriptedAgent]] = []

    async def start(answer: Answer, delay: Delay | None = None) -> tuple[ScriptedAgent, int]:
        transport, agent = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: ScriptedAgent(answer, delay), local_addr=("127.0.0.1", 0)
        )
        agents.append((transport, agent))
        return agent, transport.get_extra_info("sockname")[1]

    try:
        yield start
    finally:
        for transport, agent in agents:
            for handle in agent.late:
                handle.cancel()
            transport.close()


__all__ = [
    "Request",
    "ScriptedAgent",
    "StartAgent",
    "ber_int",
    "int_response",
    "response",
    "scripted_agents",
    "tlv",
    "varbind",
]
