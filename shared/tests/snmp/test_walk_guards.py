"""Walk guards: buggy agents (a fake one on a loopback socket) never make a walk loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from tonerwatch_shared.snmp.ber import BerError, decode_response, encode_oid
from tonerwatch_shared.snmp.errors import IoStats, SnmpProtocolError, SnmpTimeoutError
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Missing
from tonerwatch_shared.snmp.udp import UdpSnmpClient
from tonerwatch_shared.snmp.walk import Stream
from tonerwatch_shared.testing.snmp_agents import (
    Request,
    ScriptedAgent,
    StartAgent,
    int_response,
    response,
    scripted_agents,
    tlv,
)

LEVEL = "1.3.6.1.2.1.43.11.1.1.9"


@pytest_asyncio.fixture
async def start_agent() -> AsyncIterator[StartAgent]:
    async with scripted_agents() as start:
        yield start


@pytest.fixture
def fake_agent_factory(start_agent: StartAgent) -> Callable[..., object]:
    """Return start(answer) -> (agent, port): each request answered with answer(its number)."""

    async def start(answer: Callable[[int], list[tuple[str, int]]]) -> tuple[ScriptedAgent, int]:
        return await start_agent(
            lambda r: int_response(r.version, r.rid, r.community, answer(r.number))
        )

    return start


async def test_agent_repeating_the_same_oid_does_not_loop(fake_agent_factory) -> None:  # type: ignore[no-untyped-def]
    agent, port = await fake_agent_factory(lambda n: [(f"{LEVEL}.1.1", 50)])
    client = UdpSnmpClient()
    try:
        values = await client.walk_columns(SnmpTarget("127.0.0.1", port, timeout=1), [LEVEL])
    finally:
        await client.close()
    assert values == {f"{LEVEL}.1.1": 50}
    assert len(agent.requests) == 2  # the second answer repeats the OID: the walk stops


async def test_agent_going_backwards_does_not_loop(fake_agent_factory) -> None:  # type: ignore[no-untyped-def]
    rows = {1: [(f"{LEVEL}.1.3", 30)], 2: [(f"{LEVEL}.1.2", 20)]}
    agent, port = await fake_agent_factory(lambda n: rows.get(n, [(f"{LEVEL}.1.1", 10)]))
    client = UdpSnmpClient()
    try:
        values = await client.walk_columns(
            SnmpTarget("127.0.0.1", port, version="1", timeout=1), [LEVEL]
        )
    finally:
        await client.close()
    assert values == {f"{LEVEL}.1.3": 30}
    assert len(agent.requests) == 2


async def test_agent_inventing_rows_forever_is_cut_off(fake_agent_factory) -> None:  # type: ignore[no-untyped-def]
    # Increasing OIDs without end: only the row guard stops this one.
    agent, port = await fake_agent_factory(lambda n: [(f"{LEVEL}.1.{n}", n)])
    client = UdpSnmpClient()
    try:
        values = await client.walk_columns(
            SnmpTarget("127.0.0.1", port, version="1", timeout=1), [LEVEL]
        )
    finally:
        await client.close()
    assert len(values) == 64  # walk.MAX_ROWS_PER_COLUMN
    assert len(agent.requests) <= 65


async def test_agent_answering_nothing_ends_the_walk(fake_agent_factory) -> None:  # type: ignore[no-untyped-def]
    agent, port = await fake_agent_factory(lambda n: [])
    client = UdpSnmpClient()
    try:
        values = await client.walk_columns(SnmpTarget("127.0.0.1", port, timeout=1), [LEVEL])
    finally:
        await client.close()
    assert values == {}
    assert len(agent.requests) == 1


async def test_silent_port_times_out_quickly_with_a_clear_error(
    free_udp_port_factory: Callable[[], int],
) -> None:
    client = UdpSnmpClient()
    target = SnmpTarget("127.0.0.1", free_udp_port_factory(), timeout=0.2, retries=1)
    stats = IoStats()
    started = time.monotonic()
    try:
        with pytest.raises(SnmpTimeoutError, match=r"no response after 2 attempt\(s\) of 0.2s"):
            await client.get(target, ["1.3.6.1.2.1.1.1.0"], stats=stats)
    finally:
        await client.close()
    assert time.monotonic() - started < 1.0
    assert (stats.requests, stats.retries, stats.responses) == (2, 1, 0)


async def test_silent_printer_times_out_on_time_beside_printers_that_answer(  # type: ignore[no-untyped-def]
    fake_agent_factory, free_udp_port_factory: Callable[[], int]
) -> None:
    # One client's requests share one timer (the earliest deadline): answered requests' deadlines
    # neither delay a silent printer's retry nor time anything out, whatever their order.
    _agent, port = await fake_agent_factory(lambda _n: [(f"{LEVEL}.1.1", 50)])
    client = UdpSnmpClient()
    answering = SnmpTarget("127.0.0.1", port, timeout=0.05, retries=0)
    slow = SnmpTarget("127.0.0.1", port, timeout=30, retries=0)
    silent = SnmpTarget("127.0.0.1", free_udp_port_factory(), timeout=0.2, retries=1)
    stats = IoStats()
    started = time.monotonic()
    try:
        assert await client.get(slow, [f"{LEVEL}.1.1"]) == {f"{LEVEL}.1.1": 50}
        lost = asyncio.create_task(client.get(silent, ["1.3.6.1.2.1.1.1.0"], stats=stats))
        for _ in range(20):  # answered while the silent printer waits, deadlines before its own
            assert await client.get(answering, [f"{LEVEL}.1.1"]) == {f"{LEVEL}.1.1": 50}
        with pytest.raises(SnmpTimeoutError, match=r"no response after 2 attempt\(s\) of 0.2s"):
            await lost
    finally:
        await client.close()
    assert time.monotonic() - started < 2.0
    assert (stats.requests, stats.retries, stats.responses) == (2, 1, 0)


def _cut(r: Request) -> bytes:
    """Return a well-formed answer cut to its first half."""
    whole = int_response(r.version, r.rid, r.community, [(f"{LEVEL}.1.1", 50)])
    return whole[: len(whole) // 2]


async def test_a_truncated_answer_fails_its_request_at_once_not_after_the_retries(
    start_agent: StartAgent,
) -> None:
    agent, port = await start_agent(_cut)
    client = UdpSnmpClient()
    stats = IoStats()
    try:
        with pytest.raises(SnmpProtocolError, match="malformed response"):
            await client.get(
                SnmpTarget("127.0.0.1", port, timeout=10, retries=2),
                [f"{LEVEL}.1.1"],
                stats=stats,
            )
    finally:
        await client.close()
    # Answered on the first attempt: no retry was sent, no timeout waited for.
    assert len(agent.requests) == 1
    assert (stats.requests, stats.retries, stats.responses) == (1, 0, 1)


def test_stream_sizes_sibling_columns_from_the_first_column_present() -> None:
    # A trimmed agent without columns 2-5: the first column present sizes the rest.
    s = Stream("1.3.6.1.2.1.43.11.1.1", 2, 9, frozenset(range(2, 10)))
    s.feed([(f"1.3.6.1.2.1.43.11.1.1.6.1.{i}", b"Toner") for i in (1, 2, 3, 4)])
    s.feed([("1.3.6.1.2.1.43.11.1.1.8.1.1", 100)])
    assert s.lead_column == 6 and s.lead_rows == 4 and s.past_lead_column
    assert s.remaining() == 4 * 4 - 5 + 1  # columns 6-9, four rows, one more to see the end


def test_stream_stops_on_end_of_mib_view_and_no_such_object() -> None:
    s = Stream.column(LEVEL)
    s.feed([(f"{LEVEL}.1.1", 5), ("1.3.6.1.9", Missing.END_OF_MIB_VIEW)])
    assert s.done and s.anomaly is None and s.values == {f"{LEVEL}.1.1": 5}
    t = Stream.column(LEVEL)
    t.feed([(f"{LEVEL}.1.1", Missing.NO_SUCH_OBJECT)])
    assert t.done and t.anomaly == "noSuchObject" and not t.values


def test_adjacent_columns_share_one_stream() -> None:
    streams = Stream.columns([f"1.3.6.1.2.1.43.8.2.1.{c}" for c in (8, 9, 10, 12, 13)])
    assert [(s.first, s.last) for s in streams] == [(8, 10), (12, 13)]


def _raw_response(rid: int, community: bytes, varbind: bytes) -> bytes:
    return response(1, rid, community, tlv(0x30, varbind))


# An OID arc of about 9,000 digits (str() refuses ints over 4,300 digits), and an INTEGER of 20 octets.
_HUGE_ARC_OID = tlv(0x06, encode_oid(LEVEL)[2:] + b"\xff" * 4300 + b"\x01")
_LEVEL_OID = encode_oid(f"{LEVEL}.1.1")


@pytest.mark.parametrize(
    ("name", "varbind"),
    [
        ("oversized OID arc", _HUGE_ARC_OID + b"\x02\x01\x05"),
        ("OID of 200 arcs", tlv(0x06, b"\x2b" + b"\x01" * 200) + b"\x02\x01\x05"),
        ("INTEGER of 20 octets", _LEVEL_OID + tlv(0x02, b"\x7f" * 20)),
        ("Counter64 of 12 octets", _LEVEL_OID + tlv(0x46, b"\xff" * 12)),
    ],
)
async def test_malformed_answer_is_a_protocol_error_not_a_timeout(
    name: str, varbind: bytes, start_agent: StartAgent
) -> None:
    _agent, port = await start_agent(lambda r: _raw_response(r.rid, r.community, varbind))
    client = UdpSnmpClient()
    started = time.monotonic()
    try:
        with pytest.raises(SnmpProtocolError, match="malformed response"):
            await client.get(SnmpTarget("127.0.0.1", port, timeout=2, retries=0), [f"{LEVEL}.1.1"])
    finally:
        await client.close()
    assert time.monotonic() - started < 1.0, name  # answered at once, not timed out


def test_decoder_refuses_what_no_snmp_agent_may_send() -> None:
    with pytest.raises(BerError, match="2\\^32-1"):
        decode_response(_raw_response(7, b"public", _HUGE_ARC_OID + b"\x05\x00"))
    # The largest Counter64 still decodes.
    ok = decode_response(_raw_response(7, b"public", _LEVEL_OID + tlv(0x46, b"\x00" + b"\xff" * 8)))
    assert ok.varbinds == [(f"{LEVEL}.1.1", 2**64 - 1)]


async def test_walk_stops_at_the_byte_cap(fake_agent_factory) -> None:  # type: ignore[no-untyped-def]
    agent, port = await fake_agent_factory(lambda n: [(f"{LEVEL}.1.{n}", n)])
    client = UdpSnmpClient()
    streams = Stream.columns([LEVEL])
    stats = IoStats()
    try:
        await client.walk_streams(
            SnmpTarget("127.0.0.1", port, version="1", timeout=1),
            streams,
            max_bytes=400,
            stats=stats,
        )
    finally:
        await client.close()
    assert streams[0].anomaly is not None and "cap 400" in streams[0].anomaly
    assert stats.bytes_received < 400 + 100  # one answer past the cap at most
    assert len(agent.requests) < 10
