"""Publishing serialized events whose acks come back on the bus's one ack inbox (issue 15)."""

from __future__ import annotations

import asyncio
import contextlib

import nats.errors
import nats.js.errors
import pytest

from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, event_type, wait_for_event
from tonerwatch_shared.printer.model import PrinterIdentity
from tonerwatch_shared.testing.infra import eventually


def _found(address: str) -> ev.PrinterFound:
    return ev.PrinterFound(
        source="test", site_id="site-a", address=address, identity=PrinterIdentity(vendor="HP")
    )


async def test_serialized_events_published_at_once_are_each_acked_and_deduped(bus: Bus) -> None:
    events = [_found(f"127.0.0.{i + 20}") for i in range(20)]

    async def publish(event: ev.Event) -> bool:
        return await bus.publish_json(
            event.subject(bus.subjects),
            event.to_bytes(),
            event_id=str(event.event_id),
            type_=event_type(event),
        )

    assert await asyncio.gather(*(publish(e) for e in events)) == [True] * 20
    assert await publish(events[3]) is False  # Nats-Msg-Id: a repeat is dropped, and said
    info = await bus.js.stream_info(bus.subjects.events_stream)
    assert info.state.messages == 20
    found = await wait_for_event(
        bus,
        bus.subjects.filter("printer.found", keyed=False),
        lambda e: isinstance(e, ev.PrinterFound) and e.event_id == events[7].event_id,
        timeout_s=5,
    )
    assert found == events[7]


async def test_a_publish_nobody_acks_times_out_and_one_without_a_stream_is_refused(
    bus: Bus,
) -> None:
    silent = await bus.nc.subscribe("tw_silent.x")  # takes it, never answers
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await bus.publish_json("tw_silent.x", b"{}", event_id="a", type_="t", timeout_s=0.3)
    finally:
        await silent.unsubscribe()
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await bus.publish_json("tw_nowhere.x", b"{}", event_id="b", type_="t", timeout_s=2)
    assert bus._acks is not None and not bus._acks.pending


async def test_no_timer_is_left_once_nothing_waits_for_an_ack_and_a_late_one_still_times_out(
    bus: Bus,
) -> None:
    """The deadline timer runs only while a publish waits: an idle bus is not woken for it."""
    ev_ = _found("127.0.0.9")
    assert await bus.publish_json(
        ev_.subject(bus.subjects),
        ev_.to_bytes(),
        event_id=str(ev_.event_id),
        type_="t",
        timeout_s=0.2,
    )
    acks = bus._acks
    assert acks is not None and not acks.pending
    await asyncio.sleep(0.4)  # past the acked publish's deadline: its timer came and set no other
    assert acks.timer is None
    silent = await bus.nc.subscribe("tw_silent.y")
    try:
        # A long deadline first, then a short one: the short one's deadline is kept.
        slow = asyncio.create_task(
            bus.publish_json("tw_silent.y", b"{}", event_id="s", type_="t", timeout_s=30)
        )
        await asyncio.sleep(0.05)
        with pytest.raises(nats.errors.TimeoutError):
            await bus.publish_json("tw_silent.y", b"{}", event_id="f", type_="t", timeout_s=0.3)
        assert acks.timer is not None  # for the long one, still waiting
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow
    finally:
        await silent.unsubscribe()
    assert not acks.pending


async def test_a_publish_waiting_for_its_ack_at_shutdown_ends_when_the_bus_drains(
    nats_url: str, bus: Bus
) -> None:
    """Shutdown drains the connection while a publish waits for an ack that will never come: the
    publish fails when the connection closes, long before its own 60 s deadline (it used to wait
    forever: drain stopped the deadline timer first)."""
    other = await Bus.connect(nats_url, subjects=bus.subjects, name="test-shutdown", attempts=3)
    # Takes it, never answers; on the publisher's own connection and flushed, so the server knows
    # the interest before the publish (else "no responders" answers it at once).
    await other.nc.subscribe("tw_silent.z")
    await other.nc.flush(timeout=5)
    waiting = asyncio.create_task(
        other.publish_json("tw_silent.z", b"{}", event_id="z", type_="t", timeout_s=60)
    )
    await eventually(
        lambda: other._acks is not None and bool(other._acks.pending), timeout_s=10, interval_s=0.01
    )
    async with asyncio.timeout(15):
        await other.drain(timeout_s=5)
        with pytest.raises(nats.errors.ConnectionClosedError):
            await waiting
    assert not other._acks.pending and other._acks.timer is None
