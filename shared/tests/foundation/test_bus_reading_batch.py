"""Readings in batches on a real NATS: one message, every reading handled as if it came alone."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable

import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tonerwatch_shared import bus as bus_module
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import (
    Bus,
    ConsumerSpec,
    NotYet,
    Poison,
    RetryPolicy,
    wait_for_event,
)
from tonerwatch_shared.printer.model import PrinterIdentity
from tonerwatch_shared.subjects import BATCH_KEY, token
from tonerwatch_shared.testing.infra import eventually

FAST = RetryPolicy(base_s=0.02, cap_s=0.1, poison_after=3, ack_wait_s=5.0)


def _reading(printer_id: str, seq: int, site_id: str = "site-a") -> ev.SupplyReading:
    return ev.SupplyReading(
        source="poller",
        site_id=site_id,
        printer_id=printer_id,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="HP"),
        seq=seq,
    )


def _batch(*readings: ev.SupplyReading) -> ev.SupplyReadingBatch:
    return ev.SupplyReadingBatch(source="poller", site_id=readings[0].site_id, readings=readings)


def _spec(bus: Bus, durable: str) -> ConsumerSpec:
    return ConsumerSpec(
        durable=durable, filter_subject=ev.SupplyReading.subject_filter(bus.subjects)
    )


def _key(event: ev.Event) -> tuple[str, int | None]:
    assert isinstance(event, ev.SupplyReading)
    return event.printer_id, event.seq


async def _settled(bus: Bus, durable: str) -> bool:
    await bus.ensure_consumer(_spec(bus, durable))
    info = await bus.js.consumer_info(bus.subjects.events_stream, durable)
    return info.num_ack_pending == 0 and info.num_pending == 0


def test_the_batch_key_is_no_printer_token_and_every_readings_filter_matches_it() -> None:
    assert all(token(p) != BATCH_KEY for p in (BATCH_KEY, "~batch", "_batch", "batch", ""))
    batch = _batch(_reading("p-1", 1))
    subject = batch.subject(ev.sj.Subjects("tw"))
    assert subject == "tw.site-a.supply.reading.~batch"
    assert ev.SupplyReadingBatch.subject_filter(ev.sj.Subjects("tw")) == "tw.*.supply.reading.*"


def test_a_batch_encoded_from_readings_json_is_the_model() -> None:
    readings = [_reading("p-1", 1), _reading("p-2", 7)]
    event_id = uuid.uuid4()
    data = ev.encode_batch(
        [r.to_bytes() for r in readings], site_id="site-a", source="poller", event_id=event_id
    )
    parsed = ev.parse_event(data)
    assert isinstance(parsed, ev.SupplyReadingBatch)
    assert parsed.event_id == event_id and parsed.readings == tuple(readings)
    assert ev.unbatched(parsed) == tuple(readings)


def test_a_batch_holds_one_site_only() -> None:
    try:
        _batch(_reading("p-1", 1), _reading("p-2", 1, site_id="site-b"))
    except ValueError as exc:
        assert "site" in str(exc)
    else:
        raise AssertionError("a batch of two sites was accepted")


async def test_a_batch_reaches_handlers_reading_by_reading_in_order_and_is_acked_once(
    bus: Bus,
) -> None:
    handled: list[tuple[str, int | None]] = []
    batches: list[list[tuple[str, int | None]]] = []
    stop = asyncio.Event()
    readings = [_reading("p-1", 1), _reading("p-2", 1), _reading("p-1", 2)]

    async def handler(event: ev.Event, _msg: object) -> None:
        handled.append(_key(event))

    async def batch_handler(events: list[ev.Event]) -> None:
        batches.append([_key(e) for e in events])

    assert await bus.publish(batch := _batch(*readings))
    assert not await bus.publish(batch)  # the batch's own id dedupes it
    await bus.publish(_reading("p-3", 1))  # a single reading, as older pollers send
    data = ev.encode_batch(
        [_reading("p-4", 1).to_bytes()], site_id="site-a", source="poller", event_id=uuid.uuid4()
    )
    subject = bus.subjects.batch_subject("site-a", ev.sj.SUPPLY_READING)
    await bus.publish_json(subject, data, event_id="b-2", type_=ev.READING_BATCH_TYPE)
    tasks = [
        asyncio.create_task(bus.consume(_spec(bus, "t-one"), handler, stop=stop)),
        asyncio.create_task(
            bus.consume(_spec(bus, "t-all"), handler, stop=stop, batch_handler=batch_handler)
        ),
    ]
    want = [_key(r) for r in readings] + [("p-3", 1), ("p-4", 1)]
    await eventually(lambda: _settled(bus, "t-one"), timeout_s=10)
    await eventually(lambda: _settled(bus, "t-all"), timeout_s=10)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert handled == want  # t-one's, one by one
    assert [k for b in batches for k in b] == want  # t-all's, whole fetches at once
    found = await wait_for_event(
        bus,
        ev.SupplyReading.subject_filter(bus.subjects),
        lambda e: isinstance(e, ev.SupplyReading) and e.printer_id == "p-2",
        timeout_s=5,
    )
    assert found == readings[1]


async def test_a_failure_mid_batch_retries_from_the_failed_reading(bus: Bus) -> None:
    """The readings before the failure are not handled again; nothing after it is skipped."""
    bus.retry = FAST
    handled: list[tuple[str, int | None]] = []
    failed = 0
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        nonlocal failed
        if _key(event) == ("p-2", 1) and failed < 2:
            failed += 1
            raise RuntimeError("database hiccup")
        handled.append(_key(event))

    await bus.publish(_batch(_reading("p-1", 1), _reading("p-2", 1), _reading("p-3", 1)))
    task = asyncio.create_task(bus.consume(_spec(bus, "t-mid"), handler, stop=stop))
    await eventually(lambda: _settled(bus, "t-mid"), timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert failed == 2
    assert handled == [("p-1", 1), ("p-2", 1), ("p-3", 1)]
    assert await bus.dead_letters() == []


async def test_a_poison_reading_of_a_batch_is_set_aside_alone_and_replayed(bus: Bus) -> None:
    bus.retry = FAST
    handled: list[tuple[str, int | None]] = []
    fixed = False
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        if _key(event) == ("p-2", 1) and not fixed:
            raise Poison("refused for good")
        handled.append(_key(event))

    bad = _reading("p-2", 1)
    await bus.publish(_batch(_reading("p-1", 1), bad, _reading("p-3", 1)))
    task = asyncio.create_task(bus.consume(_spec(bus, "t-poison"), handler, stop=stop))
    await eventually(lambda: _settled(bus, "t-poison"), timeout_s=10)
    assert handled == [("p-1", 1), ("p-3", 1)]
    (letter,) = await bus.dead_letters()
    assert letter.event_id == str(bad.event_id)
    assert letter.event_type == "tonerwatch.supply_reading.v1"
    assert letter.subject == bad.subject(bus.subjects)
    assert ev.parse_event(letter.data) == bad
    fixed = True
    await bus.request_replay("t-poison", letter.seq)

    async def replayed() -> bool:
        return handled[-1:] == [("p-2", 1)] and await bus.dead_letters() == []

    await eventually(replayed, timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert handled == [("p-1", 1), ("p-3", 1), ("p-2", 1)]


async def test_live_subscribers_receive_the_readings_of_a_batch(bus: Bus) -> None:
    seen: list[tuple[str, int | None]] = []
    stop = asyncio.Event()

    async def handler(event: ev.Event) -> None:
        seen.append(_key(event))
        if len(seen) == 2:
            stop.set()

    task = asyncio.create_task(
        bus.subscribe_events(
            ev.SupplyReading.subject_filter(bus.subjects), stop=stop, handler=handler
        )
    )
    await asyncio.sleep(0.2)  # subscribed (core NATS: only what is published from now on)
    await bus.publish(_batch(_reading("p-1", 1), _reading("p-2", 1)))
    await asyncio.wait_for(task, 10)
    assert seen == [("p-1", 1), ("p-2", 1)]


async def test_a_fetch_of_batches_reaches_a_batch_handler_in_parts_of_whole_messages(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus_module, "BATCH_HANDLER_EVENTS", 3)
    calls: list[list[tuple[str, int | None]]] = []
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        raise AssertionError("every part applied whole")

    async def batch_handler(events: list[ev.Event]) -> None:
        calls.append([_key(e) for e in events])

    for n in range(3):
        await bus.publish(_batch(_reading(f"p-{n}", 1), _reading(f"p-{n}", 2)))
    await bus.publish(_reading("p-9", 1))
    await bus.ensure_consumer(_spec(bus, "t-parts"))
    task = asyncio.create_task(
        bus.consume(_spec(bus, "t-parts"), handler, stop=stop, batch_handler=batch_handler)
    )
    await eventually(lambda: _settled(bus, "t-parts"), timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    # Two messages (4 readings) reach the limit; a message's readings are never split.
    assert [len(c) for c in calls] == [4, 3]
    assert [k for c in calls for k in c] == [
        *[(f"p-{n}", s) for n in range(3) for s in (1, 2)],
        ("p-9", 1),
    ]


def _count_asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Return the message counts every fetch asks for from now on in this test."""
    asked: list[int] = []
    plain = Bus._fetch_in_turn

    async def fetch_in_turn(
        self: Bus, sub: JetStreamContext.PullSubscription, spec: ConsumerSpec, n: int, t: float
    ) -> list[Msg]:
        asked.append(n)
        return await plain(self, sub, spec, n, t)

    monkeypatch.setattr(Bus, "_fetch_in_turn", fetch_in_turn)
    return asked


async def test_after_a_fetch_of_batches_a_worker_asks_for_about_one_part_of_readings(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch of reading batches makes the next fetch ask for ~BATCH_HANDLER_EVENTS readings'
    worth of messages (the rest of a backlog left to the durable's other workers); a fetch of
    lone events asks for the whole batch again."""
    monkeypatch.setattr(bus_module, "BATCH_HANDLER_EVENTS", 6)
    asked = _count_asked(monkeypatch)
    applied: list[tuple[str, int | None]] = []
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        applied.append(_key(event))

    async def batch_handler(events: list[ev.Event]) -> None:
        applied.extend(_key(e) for e in events)

    spec = _spec(bus, "t-want")
    for n in range(4):  # 4 messages of 3 readings: 3 readings a message
        await bus.publish(_batch(*(_reading(f"p-{n}", s) for s in (1, 2, 3))))
    await bus.ensure_consumer(spec)
    task = asyncio.create_task(
        bus.consume(
            spec, handler, stop=stop, batch=10, fetch_timeout_s=0.2, batch_handler=batch_handler
        )
    )
    await eventually(lambda: _settled(bus, "t-want"), timeout_s=10)
    # The first fetch asks for 10 messages; after it, 6 readings / 3 a message = 2.
    await eventually(lambda: len(asked) >= 2, timeout_s=10)
    assert asked[:2] == [10, 2]
    for n in range(4, 7):
        await bus.publish(_batch(*(_reading(f"p-{n}", s) for s in (1, 2, 3))))
    await eventually(lambda: _settled(bus, "t-want"), timeout_s=10)
    await bus.publish(_reading("p-9", 1))
    await bus.publish(_reading("p-9", 2))
    await eventually(lambda: _settled(bus, "t-want"), timeout_s=10)
    await eventually(lambda: asked[-1] == 10, timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert set(asked) == {10, 2}
    assert sorted(applied) == sorted(
        [*((f"p-{n}", s) for n in range(7) for s in (1, 2, 3)), ("p-9", 1), ("p-9", 2)]
    )


async def test_a_backlog_of_reading_batches_is_shared_by_the_durables_workers(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers of one durable start on a backlog of batches: both apply parts of it.

    Without first_fetch the first fetch of a whole batch of messages took the backlog into one
    worker, which applied it part after part while the other found nothing (on PostgreSQL the
    api's CPU and the database's never overlapped)."""
    monkeypatch.setattr(bus_module, "BATCH_HANDLER_EVENTS", 6)
    by_worker: dict[str, list[tuple[str, int | None]]] = {"a": [], "b": []}
    asked = _count_asked(monkeypatch)
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        raise AssertionError("every part applied whole")

    def batch_handler(worker: str) -> Callable[[list[ev.Event]], Awaitable[None]]:
        async def apply(events: list[ev.Event]) -> None:
            await asyncio.sleep(0.05)  # a transaction's time: the other worker fetches meanwhile
            by_worker[worker].extend(_key(e) for e in events)

        return apply

    spec = dataclasses.replace(_spec(bus, "t-shared"), first_fetch=1)
    for n in range(12):  # 12 messages of 3 readings
        await bus.publish(_batch(*(_reading(f"p-{n}", s) for s in (1, 2, 3))))
    await bus.ensure_consumer(spec)
    tasks = [
        asyncio.create_task(
            bus.consume(spec, handler, stop=stop, batch_handler=batch_handler(w), batch=64)
        )
        for w in ("a", "b")
    ]
    await eventually(lambda: _settled(bus, "t-shared"), timeout_s=10)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert by_worker["a"] and by_worker["b"]
    assert sorted(by_worker["a"] + by_worker["b"]) == sorted(
        (f"p-{n}", s) for n in range(12) for s in (1, 2, 3)
    )
    # Each worker's first fetch asks for one message, the others for 6 readings' worth (2).
    assert asked[:2] == [1, 1] and set(asked) == {1, 2}


@pytest.mark.parametrize("batched", [True, False])
async def test_a_failed_dead_letter_write_keeps_the_failure_count(
    bus: Bus, monkeypatch: pytest.MonkeyPatch, batched: bool
) -> None:
    """The redelivery after a failed set-aside is set aside at once, not failed poison_after again."""
    bus.retry = FAST
    attempts = 0
    writes = 0
    stop = asyncio.Event()
    dead_letter = bus.dead_letter

    async def failing_once(*args: object, **kwargs: object) -> None:
        nonlocal writes
        writes += 1
        if writes == 1:
            raise nats.errors.TimeoutError
        await dead_letter(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bus, "dead_letter", failing_once)

    async def handler(event: ev.Event, _msg: object) -> None:
        nonlocal attempts
        if _key(event) == ("p-2", 1):
            attempts += 1
            raise RuntimeError("refused every time")

    bad = _reading("p-2", 1)
    await bus.publish(_batch(_reading("p-1", 1), bad) if batched else bad)
    durable = f"t-dead-write-{batched}"
    task = asyncio.create_task(bus.consume(_spec(bus, durable), handler, stop=stop))

    async def set_aside() -> bool:
        return bool(await bus.dead_letters()) and await _settled(bus, durable)

    await eventually(set_aside, timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    (letter,) = await bus.dead_letters()
    assert letter.event_id == str(bad.event_id)
    assert (writes, attempts) == (2, FAST.poison_after + 1)


async def test_a_later_part_of_a_batch_backs_off_from_its_own_first_failure(bus: Bus) -> None:
    """The batch's earlier deliveries (for an earlier reading's failures) do not lengthen it."""
    delays: list[int] = []

    class Recording(RetryPolicy):
        def delay(self, failures: int) -> float:
            delays.append(failures)
            return super().delay(failures)

    bus.retry = Recording(base_s=0.02, cap_s=0.1, poison_after=5, ack_wait_s=5.0)
    failing = {("p-1", 1): 2, ("p-2", 1): 1}
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        if failing.get(_key(event), 0) > 0:
            failing[_key(event)] -= 1
            raise RuntimeError("database hiccup")

    await bus.publish(_batch(_reading("p-1", 1), _reading("p-2", 1)))
    task = asyncio.create_task(bus.consume(_spec(bus, "t-own-backoff"), handler, stop=stop))
    await eventually(lambda: _settled(bus, "t-own-backoff"), timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert delays == [1, 2, 1]


async def test_a_full_fetch_of_batches_is_not_fetched_ahead(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches hold many readings each: the next fetch waits until this one's are applied."""
    fetches = 0
    fetch = JetStreamContext.PullSubscription.fetch

    def counting(sub: JetStreamContext.PullSubscription, *args: object, **kwargs: object) -> object:
        nonlocal fetches
        fetches += args[:1] == (2,)  # the consumer's fetches, not the replays'
        return fetch(sub, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", counting)
    started: list[int] = []
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        raise AssertionError("every part applied whole")

    async def batch_handler(events: list[ev.Event]) -> None:
        started.append(fetches)

    for n in range(4):
        await bus.publish(_batch(_reading(f"p-{n}", 1), _reading(f"p-{n}", 2)))
    await bus.ensure_consumer(_spec(bus, "t-no-ahead"))
    task = asyncio.create_task(
        bus.consume(
            _spec(bus, "t-no-ahead"), handler, stop=stop, batch=2, batch_handler=batch_handler
        )
    )
    await eventually(lambda: _settled(bus, "t-no-ahead"), timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    # Each full fetch is applied before the next fetch starts.
    assert started == [1, 2]


@pytest.mark.parametrize("whole", [True, False])
async def test_a_slow_fetch_of_batches_past_the_ack_wait_is_never_redelivered(
    bus: Bus, monkeypatch: pytest.MonkeyPatch, whole: bool
) -> None:
    """A fetch of batch messages applied in parts for longer than ack_wait stays with its worker.

    Eight messages of two readings, applied two readings at a time (whole: a batch handler, else
    reading by reading) for ~3 s, with a 1 s ack wait; a second worker of the durable pulls all
    along. Without the fetch's keep-alive (in_progress for every message not yet acked) the
    messages still waiting were redelivered to it and handled twice.
    """
    monkeypatch.setattr(bus_module, "BATCH_HANDLER_EVENTS", 2)
    durable = f"t-keep-alive-{whole}"
    spec = ConsumerSpec(
        durable=durable,
        filter_subject=ev.SupplyReading.subject_filter(bus.subjects),
        ack_wait_s=1.0,
    )
    handled: list[tuple[str, int | None]] = []
    stop = asyncio.Event()

    async def handler(event: ev.Event, _msg: object) -> None:
        await asyncio.sleep(0.2)
        handled.append(_key(event))

    async def batch_handler(events: list[ev.Event]) -> None:
        await asyncio.sleep(0.4)
        handled.extend(_key(e) for e in events)

    for n in range(8):
        await bus.publish(_batch(_reading(f"p-{n}", 1), _reading(f"p-{n}", 2)))
    await bus.ensure_consumer(spec)

    def worker() -> asyncio.Task[None]:
        return asyncio.create_task(
            bus.consume(
                spec, handler, stop=stop, batch=8, batch_handler=batch_handler if whole else None
            )
        )

    async def all_out() -> bool:
        info = await bus.js.consumer_info(bus.subjects.events_stream, durable)
        return int(info.num_ack_pending) == 8

    tasks = [worker()]
    await eventually(all_out, timeout_s=10)
    tasks.append(worker())  # pulls while the first applies its fetch

    async def done() -> bool:
        return len(handled) >= 16 and await _settled(bus, durable)

    await eventually(done, timeout_s=20)
    await asyncio.sleep(1.5)  # a late redelivery would come now
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    info = await bus.js.consumer_info(bus.subjects.events_stream, durable)
    assert sorted(handled) == sorted((f"p-{n}", s) for n in range(8) for s in (1, 2))
    assert info.num_redelivered == 0


def _raw_batch(bus: Bus, readings: list[bytes], event_id: str) -> tuple[str, bytes]:
    data = ev.encode_batch(
        readings, site_id="site-a", source="poller", event_id=uuid.UUID(event_id)
    )
    return bus.subjects.batch_subject("site-a", ev.sj.SUPPLY_READING), data


async def test_an_invalid_reading_of_a_batch_is_set_aside_alone_and_the_others_are_handled(
    bus: Bus,
) -> None:
    """Each reading is read on its own once the batch fails to read whole.

    A reading without its printer and one of another site go to the dead letters, each alone with
    its JSON as sent; the batch's good readings are handled, by a consumer going one by one and
    by one with a batch handler (the message then goes one by one). Before, the whole batch was
    unreadable: every reading set aside.
    """
    bus.retry = FAST
    handled: dict[str, list[tuple[str, int | None]]] = {"t-part-one": [], "t-part-all": []}
    stop = asyncio.Event()
    good = [_reading("p-1", 1), _reading("p-3", 1), _reading("p-4", 1)]
    no_printer = _reading("p-2", 1).model_dump(mode="json")
    del no_printer["printer_id"]
    elsewhere = _reading("p-5", 1, site_id="site-b")
    raws = [
        good[0].to_bytes(),
        json.dumps(no_printer, separators=(",", ":")).encode(),
        good[1].to_bytes(),
        elsewhere.to_bytes(),
        good[2].to_bytes(),
    ]
    subject, data = _raw_batch(bus, raws, str(uuid.uuid4()))
    with pytest.raises(ev.UnreadableEvent):
        ev.parse_event(data)  # the batch as a whole is no valid event
    await bus.publish_json(subject, data, event_id="b-invalid", type_=ev.READING_BATCH_TYPE)

    def handler_of(durable: str) -> bus_module.Handler:
        async def handler(event: ev.Event, _msg: object) -> None:
            handled[durable].append(_key(event))

        return handler

    async def batch_handler(events: list[ev.Event]) -> None:
        raise AssertionError("a message with an unreadable reading goes one by one")

    tasks = [
        asyncio.create_task(
            bus.consume(_spec(bus, "t-part-one"), handler_of("t-part-one"), stop=stop)
        ),
        asyncio.create_task(
            bus.consume(
                _spec(bus, "t-part-all"),
                handler_of("t-part-all"),
                stop=stop,
                batch_handler=batch_handler,
            )
        ),
    ]
    await eventually(lambda: _settled(bus, "t-part-one"), timeout_s=10)
    await eventually(lambda: _settled(bus, "t-part-all"), timeout_s=10)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert handled["t-part-one"] == handled["t-part-all"] == [_key(r) for r in good]
    letters = await bus.dead_letters()
    assert sorted(letter.consumer for letter in letters) == sorted(2 * ["t-part-one", "t-part-all"])
    for letter in letters:
        assert letter.subject == subject
        assert letter.error.startswith("unreadable: reading ")
        assert letter.event_type == "tonerwatch.supply_reading.v1"
        assert letter.headers["Nats-Msg-Id"] == letter.event_id
        assert json.loads(letter.data) in (no_printer, json.loads(elsewhere.to_bytes()))
    by_id = {letter.event_id: letter for letter in letters}
    assert set(by_id) == {no_printer["event_id"], str(elsewhere.event_id)}
    assert "printer_id" in by_id[no_printer["event_id"]].error or "Field required" in (
        by_id[no_printer["event_id"]].error
    )
    assert "site" in by_id[str(elsewhere.event_id)].error


async def test_a_batch_with_a_malformed_envelope_is_set_aside_whole(bus: Bus) -> None:
    """The envelope read alone: without a site (or readings not a list) the message is poison."""
    stop = asyncio.Event()
    handled: list[tuple[str, int | None]] = []

    async def handler(event: ev.Event, _msg: object) -> None:
        handled.append(_key(event))

    subject, data = _raw_batch(bus, [_reading("p-1", 1).to_bytes()], str(uuid.uuid4()))
    envelope = json.loads(data)
    del envelope["site_id"]
    bad = json.dumps(envelope).encode()
    await bus.publish_json(subject, bad, event_id="b-envelope", type_=ev.READING_BATCH_TYPE)
    task = asyncio.create_task(bus.consume(_spec(bus, "t-envelope"), handler, stop=stop))
    await eventually(lambda: _settled(bus, "t-envelope"), timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert handled == []
    (letter,) = await bus.dead_letters()
    assert letter.data == bad and letter.subject == subject
    assert letter.error.startswith("unreadable: invalid tonerwatch.supply_reading_batch.v1")
    assert letter.event_type == ev.READING_BATCH_TYPE


async def test_a_reading_that_is_not_yet_handled_waits_alone_for_its_consumer_only(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NotYet splits a reading out of its batch: published again alone, the batch goes on.

    p-2's two readings wait (NotYet) for something on its way; p-1's and p-3's, after them in the
    batch, are handled at once. The first publish of p-2's first reading is kept but its ack is
    lost: the batch is not acked (nakked, redelivered, taken up from p-2) and the publish again
    is dropped by its Nats-Msg-Id (one copy). p-2's second reading follows it out without being
    tried; both are handled once once p-2 may be; another consumer of the same readings (t-other) handles each
    reading once, the copies being for t-wait only.
    """
    bus.retry = RetryPolicy(base_s=0.2, cap_s=0.4, poison_after=50, ack_wait_s=5.0)
    ready = False
    handled: dict[str, list[tuple[str, int | None]]] = {"t-wait": [], "t-other": []}
    deliveries: dict[tuple[str, int | None], int] = {}
    stop = asyncio.Event()

    async def waiting(event: ev.Event, msg: Msg) -> None:
        if _key(event)[0] == "p-2" and not ready:
            raise NotYet("p-2 is not configured yet")
        handled["t-wait"].append(_key(event))
        deliveries[_key(event)] = msg.metadata.num_delivered

    async def other(event: ev.Event, _msg: object) -> None:
        handled["t-other"].append(_key(event))

    publish_json = bus.publish_json
    lost = 0

    async def ack_lost_once(*args: object, **kwargs: object) -> bool:
        nonlocal lost
        kept = await publish_json(*args, **kwargs)  # type: ignore[arg-type]
        if str(kwargs["event_id"]).startswith("alone:") and not lost:
            lost += 1
            raise nats.errors.TimeoutError  # kept, but the ack never came
        return kept

    monkeypatch.setattr(bus, "publish_json", ack_lost_once)
    first, second = _reading("p-2", 1), _reading("p-2", 2)
    await bus.publish(_batch(_reading("p-1", 1), first, _reading("p-3", 1), second))
    tasks = [
        asyncio.create_task(bus.consume(_spec(bus, "t-wait"), waiting, stop=stop)),
        asyncio.create_task(bus.consume(_spec(bus, "t-other"), other, stop=stop)),
    ]

    async def others_done() -> bool:
        return handled["t-wait"] == [("p-1", 1), ("p-3", 1)]

    await eventually(others_done, timeout_s=10)
    # The batch was acked only after a publish of p-2's reading was: at its second delivery.
    assert deliveries == {("p-1", 1): 1, ("p-3", 1): 2}
    subject = first.subject(bus.subjects)
    info = await bus.js.stream_info(bus.subjects.events_stream, subjects_filter=subject)
    assert (info.state.subjects or {}).get(subject) == 2  # p-2's two readings, once each
    copies = [await bus.js.get_last_msg(bus.subjects.events_stream, subject)]
    assert copies[0].headers is not None
    assert copies[0].headers["Tw-For"] == "t-wait"
    assert copies[0].headers["Nats-Msg-Id"] == f"alone:t-wait:{second.event_id}"
    ready = True

    async def all_done() -> bool:
        return (
            len(handled["t-wait"]) == 4
            and await _settled(bus, "t-wait")
            and await _settled(bus, "t-other")
        )

    await eventually(all_done, timeout_s=15)
    await asyncio.sleep(0.5)  # a repeat would come now
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    # Each copy backs off on its own (the first, published a delivery earlier, failed more):
    # p-2's readings may be applied in either order, their seq orders them in the handlers.
    assert handled["t-wait"][:2] == [("p-1", 1), ("p-3", 1)]
    assert sorted(handled["t-wait"][2:]) == [("p-2", 1), ("p-2", 2)]
    assert handled["t-other"] == [("p-1", 1), ("p-2", 1), ("p-3", 1), ("p-2", 2)]
    assert await bus.dead_letters() == []


async def test_a_fetch_with_a_waiting_reading_applies_its_other_messages_whole(
    bus: Bus,
) -> None:
    """A batch handler's NotYet names the waiting events: the rest of the part is applied again whole.

    Three messages in one fetch; one reading of the first waits (NotYet naming it). Only that
    message goes one by one (its other reading, then the waiting one split out to wait alone); the
    other two are applied in one more call of the batch handler. Before, a failed part went one
    by one entirely: every reading of the fetch in a transaction of its own.
    """
    bus.retry = RetryPolicy(base_s=0.2, cap_s=0.4, poison_after=50, ack_wait_s=5.0)
    ready = False
    wait = _reading("p-w", 1)
    calls: list[list[tuple[str, int | None]]] = []
    single: list[tuple[str, int | None]] = []
    stop = asyncio.Event()

    async def batch_handler(events: list[ev.Event]) -> None:
        if not ready and any(e.event_id == wait.event_id for e in events):
            raise NotYet("p-w not yet", waiting=[wait.event_id])
        calls.append([_key(e) for e in events])

    async def handler(event: ev.Event, _msg: object) -> None:
        if event.event_id == wait.event_id and not ready:
            raise NotYet("p-w not yet")
        single.append(_key(event))

    await bus.publish(_batch(_reading("p-a", 1), wait))
    await bus.publish(_batch(_reading("p-b", 1), _reading("p-b", 2)))
    await bus.publish(_reading("p-c", 1))
    await bus.ensure_consumer(_spec(bus, "t-rest-whole"))
    task = asyncio.create_task(
        bus.consume(_spec(bus, "t-rest-whole"), handler, stop=stop, batch_handler=batch_handler)
    )

    async def others_done() -> bool:
        return len(single) == 1 and len(calls) == 1

    await eventually(others_done, timeout_s=10)
    assert calls == [[("p-b", 1), ("p-b", 2), ("p-c", 1)]]
    assert single == [("p-a", 1)]
    ready = True
    await eventually(lambda: _settled(bus, "t-rest-whole"), timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert single == [("p-a", 1), ("p-w", 1)]  # the copy, alone: the one-event path
    assert await bus.dead_letters() == []


async def test_a_reading_whose_copy_is_refused_every_time_ends_among_the_dead_letters(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting reading's copy refused by NATS every time (a deployment whose api lacks the
    permission to publish readings) counts as its failure: after poison_after tries it is set
    aside alone and the batch's later readings are handled, where it used to hold them forever."""
    bus.retry = FAST
    handled: list[tuple[str, int | None]] = []
    stop = asyncio.Event()
    waiting = _reading("p-2", 1)

    async def handler(event: ev.Event, _msg: object) -> None:
        if _key(event)[0] == "p-2":
            raise NotYet("p-2 is not configured yet")
        handled.append(_key(event))

    publish_json = bus.publish_json

    async def copies_refused(*args: object, **kwargs: object) -> bool:
        if str(kwargs["event_id"]).startswith("alone:"):
            raise nats.errors.NoRespondersError
        return await publish_json(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bus, "publish_json", copies_refused)
    await bus.publish(_batch(_reading("p-1", 1), waiting, _reading("p-3", 1)))
    task = asyncio.create_task(bus.consume(_spec(bus, "t-refused"), handler, stop=stop))
    await eventually(lambda: _settled(bus, "t-refused"), timeout_s=15)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert handled == [("p-1", 1), ("p-3", 1)]
    (letter,) = await bus.dead_letters()
    assert letter.event_id == str(waiting.event_id) and letter.consumer == "t-refused"
    assert letter.error.startswith("could not split out of its batch")
    assert letter.subject == waiting.subject(bus.subjects)


async def test_messages_a_fetch_ahead_brings_are_kept_alive_with_the_fetch_being_handled() -> None:
    """working_on beats for what also() returns at each beat, not only for the messages it was
    given: a fetch made ahead arrives while the current one is handled and waits its turn."""

    class Held:
        def __init__(self) -> None:
            self.is_acked = False
            self.beats = 0

        async def in_progress(self) -> None:
            self.beats += 1

    current, ahead = Held(), Held()
    arrived: list[Held] = []
    async with bus_module.working_on(
        [current],  # type: ignore[list-item]
        ack_wait_s=0.3,
        also=lambda: arrived,  # type: ignore[arg-type,return-value]
    ):
        await asyncio.sleep(0.15)
        arrived.append(ahead)  # the fetch ahead returns mid-way
        await asyncio.sleep(0.4)
    assert current.beats >= 2 and ahead.beats >= 1
