"""Nothing lost on a real NATS: no delivery limit, pause while a dependency is down, dead letters, replay, order."""

from __future__ import annotations

import asyncio

from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, ConsumerSpec, Poison, RetryLater, RetryPolicy
from tonerwatch_shared.printer.model import PrinterIdentity
from tonerwatch_shared.testing.infra import eventually

FAST = RetryPolicy(base_s=0.02, cap_s=0.1, poison_after=3, ack_wait_s=5.0)


def _found(address: str) -> ev.PrinterFound:
    return ev.PrinterFound(
        source="test", site_id="site-a", address=address, identity=PrinterIdentity(vendor="HP")
    )


def _address(event: ev.Event) -> str:
    assert isinstance(event, ev.PrinterFound)
    return event.address


def _spec(bus: Bus, durable: str, *, ordered: bool = False) -> ConsumerSpec:
    return ConsumerSpec(
        durable=durable,
        filter_subject=bus.subjects.filter("printer.found", keyed=False),
        ordered=ordered,
    )


async def test_consumers_have_no_delivery_limit(bus: Bus) -> None:
    await bus.ensure_consumer(_spec(bus, "t-unbounded"))
    info = await bus.js.consumer_info(bus.subjects.events_stream, "t-unbounded")
    assert info.config.max_deliver in (-1, None, 0)


async def test_database_down_for_many_retry_windows_pauses_and_loses_nothing(bus: Bus) -> None:
    """A dependency down far longer than poison_after failures: paused, nothing set aside."""
    bus.retry = FAST
    database_up = False
    probes = 0
    handled: list[str] = []
    paused_seen = False
    stop = asyncio.Event()

    async def probe() -> None:
        nonlocal probes
        probes += 1
        if not database_up:
            raise ConnectionRefusedError("127.0.0.1:5432 refused")

    async def handler(event: ev.Event, _msg: object) -> None:
        if not database_up:
            raise RuntimeError("could not connect to server")  # what a driver says, not OSError
        handled.append(_address(event))
        if len(handled) == 3:
            stop.set()

    for i in range(3):
        await bus.publish(_found(f"127.0.0.{i + 10}"))
    task = asyncio.create_task(bus.consume(_spec(bus, "t-pause"), handler, stop=stop, probe=probe))
    # 20 failed probes: with poison_after 3 the old delivery limit would long have dropped them.
    for _ in range(400):
        paused_seen = paused_seen or "t-pause" in bus.paused
        if probes >= 20:
            break
        await asyncio.sleep(0.02)
    assert paused_seen and probes >= 20
    info = await bus.js.consumer_info(bus.subjects.events_stream, "t-pause")
    # Paused means not fetching: the outage cost a couple of deliveries, not one per probe.
    assert info.num_redelivered <= 3
    database_up = True
    await asyncio.wait_for(task, 15)
    assert sorted(handled) == ["127.0.0.10", "127.0.0.11", "127.0.0.12"]
    assert await bus.dead_letters() == []


async def test_event_failing_for_its_own_reasons_is_set_aside_with_why(bus: Bus) -> None:
    bus.retry = FAST
    handled: list[str] = []
    tries = 0
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        nonlocal tries
        if _address(event) == "127.0.0.66":
            tries += 1
            raise ValueError("supply index 7 out of range")
        handled.append(_address(event))

    await bus.publish(bad := _found("127.0.0.66"))
    await bus.publish(_found("127.0.0.67"))
    task = asyncio.create_task(bus.consume(_spec(bus, "t-own"), handler, stop=stop))
    await eventually(lambda: _one_dead(bus), timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert tries == FAST.poison_after and handled == ["127.0.0.67"]
    (letter,) = await bus.dead_letters()
    assert letter.consumer == "t-own"
    assert letter.subject == bad.subject(bus.subjects)
    assert letter.event_id == str(bad.event_id)
    assert letter.event_type == "tonerwatch.printer_found.v1"
    assert "supply index 7 out of range" in letter.error
    assert letter.deliveries == FAST.poison_after
    assert letter.headers["Nats-Msg-Id"] == str(bad.event_id)
    assert ev.parse_event(letter.data) == bad
    info = await bus.js.consumer_info(bus.subjects.events_stream, "t-own")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def _one_dead(bus: Bus) -> bool:
    return len(await bus.dead_letters()) == 1


async def test_poison_and_unreadable_are_set_aside_at_once_then_replayed(bus: Bus) -> None:
    bus.retry = FAST
    fixed = False
    handled: list[str] = []
    tries = 0
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        nonlocal tries
        tries += 1
        if not fixed:
            raise Poison("the receiver refused it for good (550)")
        handled.append(_address(event))

    await bus.publish(_found("127.0.0.70"))
    await bus.js.publish(bus.subjects.subject("site-a", "printer.found"), b"{broken json")
    task = asyncio.create_task(bus.consume(_spec(bus, "t-replay"), handler, stop=stop))

    async def two_dead() -> bool:
        return len(await bus.dead_letters()) == 2

    await eventually(two_dead, timeout_s=10)
    assert tries == 1
    unreadable, poisoned = await bus.dead_letters()  # newest first
    assert "unreadable" in unreadable.error and unreadable.event_id is None
    assert "550" in poisoned.error and poisoned.deliveries == 1
    # The operator fixed the cause and replays: the owning consumer handles it and removes it.
    fixed = True
    await bus.request_replay("t-replay", poisoned.seq)

    async def replayed() -> bool:
        return handled == ["127.0.0.70"] and [d.seq for d in await bus.dead_letters()] == [
            unreadable.seq
        ]

    await eventually(replayed, timeout_s=10)
    # Replaying what cannot be read keeps it, and says so.
    await bus.request_replay("t-replay", unreadable.seq)
    await asyncio.sleep(1.5)
    assert [d.seq for d in await bus.dead_letters()] == [unreadable.seq]
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_ordered_consumer_never_lets_a_later_event_overtake_a_retried_one(bus: Bus) -> None:
    """Like "resolved" after "crossed": the first fails twice, the others still come after it."""
    bus.retry = FAST
    failures = 0
    handled: list[str] = []
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        nonlocal failures
        if _address(event) == "127.0.0.80" and failures < 2:
            failures += 1
            raise RetryLater("upstream answered 503")
        handled.append(_address(event))
        if len(handled) == 4:
            stop.set()

    for i in range(4):
        await bus.publish(_found(f"127.0.0.{80 + i}"))
    spec = _spec(bus, "t-ordered", ordered=True)
    await asyncio.wait_for(bus.consume(spec, handler, stop=stop), 15)
    assert handled == ["127.0.0.80", "127.0.0.81", "127.0.0.82", "127.0.0.83"]


async def test_a_handler_longer_than_the_ack_wait_keeps_its_event_and_gets_it_once(
    bus: Bus,
) -> None:
    """The in-progress beats start only when a handler runs long (a timer, no task per event)."""
    stop = asyncio.Event()
    calls: list[str] = []

    async def slow(event: ev.Event, _msg: object) -> None:
        calls.append(_address(event))
        await asyncio.sleep(2.5)  # past the 1 s ack wait: only the beats keep the event
        stop.set()

    spec = ConsumerSpec(
        durable="t-slow",
        filter_subject=bus.subjects.filter("printer.found", keyed=False),
        ack_wait_s=1.0,
    )
    await bus.publish(_found("127.0.0.31"))
    await asyncio.wait_for(bus.consume(spec, slow, stop=stop), 20)
    await asyncio.sleep(1.5)  # a redelivery would come now
    info = await bus.js.consumer_info(bus.subjects.events_stream, "t-slow")
    assert calls == ["127.0.0.31"]
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_a_lingering_consumer_takes_every_event_in_order(bus: Bus) -> None:
    stop = asyncio.Event()
    handled: list[str] = []

    async def handler(event: ev.Event, _msg: object) -> None:
        handled.append(_address(event))
        if len(handled) == 20:
            stop.set()

    spec = ConsumerSpec(
        durable="t-linger",
        filter_subject=bus.subjects.filter("printer.found", keyed=False),
        linger_s=0.2,
    )
    consuming = asyncio.create_task(bus.consume(spec, handler, stop=stop))
    for i in range(20):
        await bus.publish(_found(f"127.0.0.{40 + i}"))
        await asyncio.sleep(0.02)
    await asyncio.wait_for(consuming, 20)
    assert handled == [f"127.0.0.{40 + i}" for i in range(20)]


async def test_the_workers_of_a_lingering_durable_share_one_fetch_turn(bus: Bus) -> None:
    """After a short fetch no worker of the durable fetches before linger_s; a full one hands on at once.

    Four workers each fetching as soon as they may (the api's readings on PostgreSQL) split a
    steady trickle into a small batch per worker; sharing the turn, what arrives during the
    linger goes to the next fetch, whoever makes it.
    """
    fetches: list[str] = []
    replies: asyncio.Queue[int] = asyncio.Queue()

    class Pull:
        """A pull subscription whose fetches bring what the test says, in the order asked."""

        def __init__(self, name: str) -> None:
            self.name = name

        async def fetch(self, n: int, timeout: float) -> list[object]:  # noqa: ASYNC109 (nats-py)
            fetches.append(self.name)
            return [object()] * await replies.get()

    spec = ConsumerSpec("t-turn", bus.subjects.filter("printer.found", keyed=False), linger_s=3600)
    full = ConsumerSpec("t-turn-full", spec.filter_subject, linger_s=3600)
    a, b = Pull("a"), Pull("b")
    first = asyncio.create_task(bus._fetch_in_turn(a, full, 4, 1.0))  # type: ignore[arg-type]
    second = asyncio.create_task(bus._fetch_in_turn(b, full, 4, 1.0))  # type: ignore[arg-type]
    await eventually(lambda: fetches == ["a"])
    replies.put_nowait(4)  # a full batch: a backlog, the next worker fetches at once
    assert len(await first) == 4
    await eventually(lambda: fetches == ["a", "b"])
    replies.put_nowait(4)
    assert len(await second) == 4

    fetches.clear()
    first = asyncio.create_task(bus._fetch_in_turn(a, spec, 4, 1.0))  # type: ignore[arg-type]
    await eventually(lambda: fetches == ["a"])
    replies.put_nowait(1)  # less than a batch: the turn is held for linger_s (an hour here)
    assert len(await first) == 1
    second = asyncio.create_task(bus._fetch_in_turn(b, spec, 4, 1.0))  # type: ignore[arg-type]
    third = asyncio.create_task(bus._fetch_in_turn(a, spec, 4, 1.0))  # type: ignore[arg-type]
    for _ in range(20):
        await asyncio.sleep(0)
    assert fetches == ["a"] and not second.done() and not third.done()
    bus._fetch_turns["t-turn"].release()  # linger_s over
    await eventually(lambda: fetches == ["a", "b"])
    replies.put_nowait(0)  # nothing came: a short fetch again, the turn held again
    assert await second == []
    for _ in range(20):
        await asyncio.sleep(0)
    assert fetches == ["a", "b"] and not third.done()
    third.cancel()
