"""The bus against a real NATS JetStream: dedupe, ack, retry with back-off, poison terminated."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats.errors
import pytest

from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, ConsumerSpec, retry_delay, wait_for_event
from tonerwatch_shared.embedded import EmbeddedNats
from tonerwatch_shared.printer.model import PrinterIdentity
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually, nats_tasks


def _found(address: str = "127.0.0.5") -> ev.PrinterFound:
    return ev.PrinterFound(
        source="test", site_id="site-a", address=address, identity=PrinterIdentity(vendor="HP")
    )


async def test_publish_twice_with_same_event_id_stores_once(bus: Bus) -> None:
    event = _found()
    assert await bus.publish(event) is True
    assert await bus.publish(event) is False  # Nats-Msg-Id dedupe
    info = await bus.js.stream_info(bus.subjects.events_stream)
    assert info.state.messages == 1


async def test_consumer_acks_handled_events_once(bus: Bus) -> None:
    seen: list[ev.Event] = []
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        seen.append(event)
        if len(seen) == 3:
            stop.set()

    for i in range(3):
        await bus.publish(_found(f"127.0.0.{i + 10}"))
    spec = ConsumerSpec(
        durable="t-acks", filter_subject=bus.subjects.filter("printer.found", keyed=False)
    )
    await asyncio.wait_for(bus.consume(spec, handler, stop=stop), 15)
    assert [e.address for e in seen if isinstance(e, ev.PrinterFound)] == [
        "127.0.0.10",
        "127.0.0.11",
        "127.0.0.12",
    ]

    async def all_acked() -> bool:
        # Acks are asynchronous: the server applies them a moment after the handler returns.
        info = await bus.js.consumer_info(bus.subjects.events_stream, "t-acks")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(all_acked, timeout_s=5)


async def test_failing_handler_is_retried_then_succeeds(bus: Bus) -> None:
    attempts = 0
    stop = asyncio.Event()

    async def flaky(_event: ev.Event, _msg: object) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("database briefly down")
        stop.set()

    await bus.publish(_found())
    spec = ConsumerSpec(
        durable="t-retry", filter_subject=bus.subjects.filter("printer.found", keyed=False)
    )
    await asyncio.wait_for(bus.consume(spec, flaky, stop=stop), 15)
    assert attempts == 2


async def test_poison_message_is_terminated_not_redelivered(bus: Bus) -> None:
    subject = bus.subjects.subject("site-a", "printer.found")
    await bus.js.publish(subject, b"{broken json")
    await bus.publish(_found("127.0.0.99"))
    handled: list[ev.Event] = []
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        handled.append(event)
        stop.set()

    spec = ConsumerSpec(durable="t-poison", filter_subject=subject, ack_wait_s=1.0)
    await asyncio.wait_for(bus.consume(spec, handler, stop=stop), 15)
    await asyncio.sleep(1.5)  # past ack_wait: a poison message not terminated would come back
    info = await bus.js.consumer_info(bus.subjects.events_stream, "t-poison")
    assert len(handled) == 1
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_batch_handler_applies_a_fetch_at_once_and_acks_it(bus: Bus) -> None:
    subject = bus.subjects.subject("site-a", "printer.found")
    for i in range(5):
        await bus.publish(_found(f"127.0.0.{i + 30}"))
    await bus.js.publish(subject, b"{broken json")  # terminated, never offered to a handler
    batches: list[list[str]] = []
    singles: list[ev.Event] = []
    stop = asyncio.Event()

    async def batch(events: list[ev.Event]) -> None:
        batches.append([e.address for e in events if isinstance(e, ev.PrinterFound)])
        stop.set()

    async def single(event: ev.Event, _msg: object) -> None:
        singles.append(event)

    spec = ConsumerSpec(durable="t-batch", filter_subject=subject, ack_wait_s=1.0)
    await asyncio.wait_for(bus.consume(spec, single, stop=stop, batch_handler=batch), 15)
    assert batches == [[f"127.0.0.{i + 30}" for i in range(5)]] and singles == []

    async def all_acked() -> bool:
        info = await bus.js.consumer_info(bus.subjects.events_stream, "t-batch")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(all_acked, timeout_s=5)


async def test_failed_batch_is_applied_one_by_one_so_one_bad_event_delays_only_itself(
    bus: Bus,
) -> None:
    for i in range(4):
        await bus.publish(_found(f"127.0.0.{i + 40}"))
    tried_batches = 0
    applied: list[str] = []
    stop = asyncio.Event()

    async def batch(events: list[ev.Event]) -> None:
        nonlocal tried_batches
        tried_batches += 1
        raise RuntimeError("one printer unknown yet: the transaction rolls back")

    async def single(event: ev.Event, _msg: object) -> None:
        assert isinstance(event, ev.PrinterFound)
        if event.address == "127.0.0.42":
            raise RuntimeError("not yet")
        applied.append(event.address)
        if len(applied) == 3:
            stop.set()

    spec = ConsumerSpec(
        durable="t-batch-fallback",
        filter_subject=bus.subjects.filter("printer.found", keyed=False),
    )
    await asyncio.wait_for(bus.consume(spec, single, stop=stop, batch_handler=batch), 15)
    assert tried_batches == 1
    assert applied == ["127.0.0.40", "127.0.0.41", "127.0.0.43"]

    async def only_the_failed_one_pending() -> bool:
        # Acks are asynchronous; the failed one waits for its retry (nak with back-off).
        info = await bus.js.consumer_info(bus.subjects.events_stream, "t-batch-fallback")
        return info.num_ack_pending == 1

    await eventually(only_the_failed_one_pending, timeout_s=5)


async def test_ensure_stream_is_idempotent(bus: Bus) -> None:
    await bus.ensure_event_stream()
    await bus.ensure_event_stream()
    info = await bus.js.stream_info(bus.subjects.events_stream)
    assert info.config.duplicate_window == 120.0


async def test_wait_for_event_finds_a_published_event(bus: Bus) -> None:
    await bus.publish(_found("127.0.0.77"))
    got = await wait_for_event(
        bus,
        bus.subjects.filter("printer.found", keyed=False),
        lambda e: isinstance(e, ev.PrinterFound) and e.address == "127.0.0.77",
        timeout_s=5,
    )
    assert isinstance(got, ev.PrinterFound)


async def test_connect_to_nothing_fails_with_the_url(subjects: object) -> None:
    from tonerwatch_shared.bus import BusError
    from tonerwatch_shared.embedded import free_tcp_port
    from tonerwatch_shared.subjects import Subjects

    url = f"nats://127.0.0.1:{free_tcp_port()}"
    try:
        await Bus.connect(url, subjects=Subjects(), name="t", attempts=2, connect_timeout_s=0.5)
    except BusError as exc:
        assert url in str(exc)
    else:
        raise AssertionError("connect to a closed port must fail")


async def test_a_connect_that_gives_up_leaves_nothing_dialling() -> None:
    from tonerwatch_shared.bus import BusError
    from tonerwatch_shared.embedded import free_tcp_port

    url = f"nats://127.0.0.1:{free_tcp_port()}"
    before = nats_tasks()
    with pytest.raises(BusError):
        # Each attempt is cut short (connect_timeout_s x 2) while nats-py still retries inside.
        await Bus.connect(url, subjects=Subjects(), name="t", attempts=2, connect_timeout_s=0.5)
    # An attempt left running kept dialling the port for the rest of the process, logging each refusal.
    assert nats_tasks() - before == set()


async def test_a_cancelled_connect_leaves_nothing_dialling() -> None:
    from tonerwatch_shared.embedded import free_tcp_port

    url = f"nats://127.0.0.1:{free_tcp_port()}"
    before = nats_tasks()
    # The caller gives up (its own timeout, a service's task cancelled) during the first attempt.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(Bus.connect(url, subjects=Subjects(), name="t", attempts=30), 0.5)
    assert nats_tasks() - before == set()


def test_retry_delay_grows_and_is_capped() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(50) == 60.0


async def test_a_stream_larger_than_the_store_is_refused_at_once_with_the_servers_reason(
    bus: Bus,
) -> None:
    import time

    from nats.js.api import StreamConfig

    from tonerwatch_shared.bus import BusError

    started = time.monotonic()
    huge = StreamConfig(
        name=f"{bus.subjects.stream_prefix}_HUGE",
        subjects=[f"{bus.subjects.root}-huge.>"],
        max_bytes=1024**5,  # a petabyte: more than any test server's max_file_store
        num_replicas=1,
    )
    try:
        await bus.ensure_stream(huge)
    except BusError as exc:
        assert "err_code 10047" in str(exc) and "insufficient storage" in str(exc)
    else:
        raise AssertionError("a petabyte stream must be refused")
    # Insufficient resources never mends: no waiting out the placement patience.
    assert time.monotonic() - started < 5.0


async def test_a_consumer_set_up_timing_out_in_a_leader_election_is_tried_again() -> None:
    # A cluster electing a leader times out a consumer's set-up for a few seconds: the service
    # must set up again, not stop (a replay consumer's timeout once took the api down).
    from tonerwatch_shared import bus as bus_module

    calls = 0

    async def set_up() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise nats.errors.TimeoutError
        return "subscribed"

    stop = asyncio.Event()
    result = await asyncio.wait_for(
        bus_module._set_up_when_answered(set_up, "api-readings_replay", stop), 10
    )
    assert (result, calls) == ("subscribed", 3)


async def test_a_consumer_set_up_gives_up_once_the_service_stops() -> None:
    from tonerwatch_shared import bus as bus_module

    async def never() -> str:
        raise nats.errors.NoRespondersError

    stop = asyncio.Event()
    stop.set()
    assert await asyncio.wait_for(bus_module._set_up_when_answered(never, "x", stop), 5) is None


async def test_a_backlog_is_fetched_ahead_and_what_was_not_handled_is_handed_back_at_stop(
    bus: Bus,
) -> None:
    """While a full batch is applied the next is fetched; stopped then, it is handed back at once.

    ack_wait is long (60 s): the second consumer gets the batch fetched ahead only because the
    first nakked it at stop. Every event is applied once, none lost.
    """
    addresses = [f"127.0.1.{i}" for i in range(12)]
    for address in addresses:
        await bus.publish(_found(address))
    spec = ConsumerSpec(
        durable="t-ahead",
        filter_subject=bus.subjects.filter("printer.found", keyed=False),
        ack_wait_s=60.0,
    )
    applied: list[str] = []
    stop = asyncio.Event()

    async def both_batches_out() -> bool:
        info = await bus.js.consumer_info(bus.subjects.events_stream, "t-ahead")
        return int(info.num_ack_pending) == 8

    async def first(events: list[ev.Event]) -> None:
        # This batch and the next one, fetched ahead, are out and not acknowledged yet.
        await eventually(both_batches_out, timeout_s=10)
        applied.extend(e.address for e in events if isinstance(e, ev.PrinterFound))
        stop.set()

    async def single(event: ev.Event, _msg: object) -> None:
        raise AssertionError("a batch of found printers never fails here")

    await asyncio.wait_for(bus.consume(spec, single, stop=stop, batch=4, batch_handler=first), 20)
    assert len(applied) == 4
    again = asyncio.Event()

    async def rest(events: list[ev.Event]) -> None:
        applied.extend(e.address for e in events if isinstance(e, ev.PrinterFound))
        if len(applied) == len(addresses):
            again.set()

    await asyncio.wait_for(bus.consume(spec, single, stop=again, batch=4, batch_handler=rest), 20)
    assert sorted(applied) == sorted(addresses)


async def test_a_bus_made_by_connect_tells_its_listeners_of_each_reconnect(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    bus = await Bus.connect(server.url, subjects=Subjects(root="trc"), name="test", attempts=3)
    try:
        assert bus.on_reconnect is not None
        heard: list[int] = []
        bus.on_reconnect.append(lambda: heard.append(bus.nc.stats["reconnects"]))

        def broken() -> None:
            raise RuntimeError("a listener's bug")

        bus.on_reconnect.insert(0, broken)  # does not keep the others from hearing
        assert server.proc is not None
        server.proc.kill()
        await asyncio.to_thread(server.proc.wait)
        await asyncio.to_thread(server.start)
        await eventually(lambda: heard == [1], timeout_s=20)
    finally:
        await bus.drain()
        server.stop()
