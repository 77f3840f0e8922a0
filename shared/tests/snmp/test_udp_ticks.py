"""The UDP client reads answers in ticks while more are due (issue 15), and timeouts keep their
meaning: an answer queued between ticks counts before its request's deadline; a silent agent is
retried and timed out as before; a request alone wakes the client as its answer arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from tonerwatch_shared.snmp.errors import IoStats, SnmpTimeoutError
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.udp import UdpSnmpClient
from tonerwatch_shared.testing.snmp_agents import (
    Request,
    ScriptedAgent,
    int_response,
    scripted_agents,
)

LEVEL = "1.3.6.1.2.1.43.11.1.1.9.1.1"


@pytest_asyncio.fixture
async def agent_factory() -> AsyncIterator[Callable[..., object]]:
    """Yield start(delay) -> (agent, port): the value 7 after delay(community) s (None: never)."""
    async with scripted_agents() as start_agent:

        async def start(delay: Callable[[bytes], float | None]) -> tuple[ScriptedAgent, int]:
            def answer(r: Request) -> bytes | None:
                if delay(r.community) is None:
                    return None
                return int_response(r.version, r.rid, r.community, [(LEVEL, 7)])

            return await start_agent(answer, lambda r: delay(r.community) or 0.0)

        yield start


async def test_an_answer_queued_between_ticks_counts_before_its_deadline(agent_factory) -> None:  # type: ignore[no-untyped-def]
    # "fast" is answered at once, "slow" 50 ms later; the tick is 30 s: after fast's answer the
    # socket is left unread (slow is due), so only slow's deadline (0.5 s) reads it.
    _agent, port = await agent_factory(lambda c: 0.0 if c == b"fast" else 0.05)
    client = UdpSnmpClient(read_tick_s=30.0)
    slow_stats = IoStats()
    try:
        slow = asyncio.create_task(
            client.get(
                SnmpTarget("127.0.0.1", port, community="slow", timeout=0.5, retries=0),
                [LEVEL],
                stats=slow_stats,
            )
        )
        await asyncio.sleep(0)
        fast = await client.get(SnmpTarget("127.0.0.1", port, community="fast", timeout=5), [LEVEL])
        assert fast == {LEVEL: 7}
        assert client._transport is not None and not client._transport.reading  # between ticks
        assert await slow == {LEVEL: 7}  # read by its deadline's sweep, not timed out
        assert slow_stats.requests == 1 and slow_stats.retries == 0
    finally:
        await client.close()


async def test_a_silent_agent_is_retried_and_timed_out_while_answers_come_in_ticks(
    agent_factory,  # type: ignore[no-untyped-def]
) -> None:
    agent, port = await agent_factory(lambda c: None if c == b"silent" else 0.0)
    client = UdpSnmpClient(read_tick_s=0.02)
    stats = IoStats()
    try:
        silent = asyncio.create_task(
            client.get(
                SnmpTarget("127.0.0.1", port, community="silent", timeout=0.2, retries=2),
                [LEVEL],
                stats=stats,
            )
        )
        answered = SnmpTarget("127.0.0.1", port, community="answering", timeout=2)
        for _ in range(10):  # answers arriving while the silent one waits
            assert await client.get(answered, [LEVEL]) == {LEVEL: 7}
        with pytest.raises(SnmpTimeoutError, match="3 attempt"):
            await silent
    finally:
        await client.close()
    assert stats.requests == 3 and stats.retries == 2 and stats.responses == 0
    assert [r.community for r in agent.requests].count(b"silent") == 3


async def test_a_request_alone_is_read_as_its_answer_arrives(agent_factory) -> None:  # type: ignore[no-untyped-def]
    _agent, port = await agent_factory(lambda c: 0.0)
    client = UdpSnmpClient(read_tick_s=30.0)  # a tick would hold the answer 30 s
    try:
        target = SnmpTarget("127.0.0.1", port, timeout=5)
        for _ in range(3):
            assert await asyncio.wait_for(client.get(target, [LEVEL]), 5) == {LEVEL: 7}
            # Nothing else due: the socket is watched, no tick set.
            assert client._transport is not None and client._transport.reading
            assert client._transport.tick is None
    finally:
        await client.close()


async def test_a_group_is_answered_whole_in_ticks(agent_factory) -> None:  # type: ignore[no-untyped-def]
    # Twenty requests answered 2 ms apart, read every 10 ms: every one answered, none retried.
    order: dict[bytes, int] = {}

    def delay(community: bytes) -> float:
        order.setdefault(community, len(order))
        return 0.002 * order[community]

    _agent, port = await agent_factory(delay)
    client = UdpSnmpClient(read_tick_s=0.01)
    stats = IoStats()
    try:
        answers = await asyncio.gather(
            *(
                client.get(
                    SnmpTarget("127.0.0.1", port, community=f"p{i}", timeout=2, retries=1),
                    [LEVEL],
                    stats=stats,
                )
                for i in range(20)
            )
        )
    finally:
        await client.close()
    assert answers == [{LEVEL: 7}] * 20
    assert stats.requests == 20 and stats.retries == 0


async def test_answers_that_would_overflow_the_receive_buffer_are_not_left_unread(
    agent_factory,  # type: ignore[no-untyped-def]
) -> None:
    # "fast" answered at once, "slow" after 50 ms, a tick of 30 s: as in the first test the socket
    # would be left unread, but the buffer is said to hold no answer at all, so it stays watched
    # and slow's answer is read as it arrives (well before its 2 s deadline's sweep).
    _agent, port = await agent_factory(lambda c: 0.0 if c == b"fast" else 0.05)
    client = UdpSnmpClient(read_tick_s=30.0)
    try:
        transport = await client._socket()
        assert transport.rcvbuf > 0 and transport.holds(1)
        transport.rcvbuf = 1
        slow = asyncio.create_task(
            client.get(
                SnmpTarget("127.0.0.1", port, community="slow", timeout=2, retries=0), [LEVEL]
            )
        )
        await asyncio.sleep(0)
        fast = await client.get(SnmpTarget("127.0.0.1", port, community="fast", timeout=5), [LEVEL])
        assert fast == {LEVEL: 7}
        assert transport.reading and transport.tick is None
        assert await asyncio.wait_for(slow, 1.0) == {LEVEL: 7}
    finally:
        await client.close()


async def test_the_largest_answer_read_sizes_what_the_buffer_holds() -> None:
    client = UdpSnmpClient()
    try:
        transport = await client._socket()
        transport.rcvbuf = 100 * (2 * 484 + 1024)
        assert transport.holds(100) and not transport.holds(101)
        transport.largest = 8000  # a large answer was read: far fewer fit
        assert not transport.holds(100) and transport.holds(transport.rcvbuf // 17024)
    finally:
        await client.close()


async def test_a_tick_whose_read_fails_leaves_the_socket_watched(
    agent_factory,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _agent, port = await agent_factory(lambda c: 0.0)
    client = UdpSnmpClient(read_tick_s=30.0)
    try:
        transport = await client._socket()
        transport.pause(30.0)
        assert not transport.reading and transport.tick is not None

        def broken() -> int:
            raise RuntimeError("read failed")

        monkeypatch.setattr(transport, "drain", broken)
        with pytest.raises(RuntimeError):
            client._ticked()
        assert transport.reading and transport.tick is None  # watched again, no tick left
        monkeypatch.undo()
        target = SnmpTarget("127.0.0.1", port, timeout=5)
        assert await asyncio.wait_for(client.get(target, [LEVEL]), 5) == {LEVEL: 7}
    finally:
        await client.close()
