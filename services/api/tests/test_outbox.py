"""The outbox on a real NATS: a window of publishes in flight, each key's events in order, none lost."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import nats.errors
import nats.js.errors
import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import OutboxEvent
from tonerwatch_api.db.tx import in_tx
from tonerwatch_api.projections.outbox import Outbox, add_to_outbox
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import Event, PrinterConfigured, PrinterRemoved, parse_event


class _Watched:
    """The real bus, counting the publishes awaiting their ack at once; it can lose chosen acks."""

    def __init__(self, bus: Bus, lose_ack_of: set[uuid.UUID] | None = None) -> None:
        self.bus = bus
        self.lose_ack_of = set(lose_ack_of or ())
        self.in_flight = 0
        self.most_in_flight = 0
        self.repeats = 0

    async def publish(self, event: Event) -> bool:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            fresh = await self.bus.publish(event)
        finally:
            self.in_flight -= 1
        self.repeats += not fresh
        if event.event_id in self.lose_ack_of:
            self.lose_ack_of.discard(event.event_id)
            raise nats.errors.TimeoutError  # stored by the stream, its ack never came back
        return fresh


async def _stream(bus: Bus) -> list[Event]:
    """Return every event in the test's event stream, in stream order."""
    info = await bus.js.stream_info(bus.subjects.events_stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg(bus.subjects.events_stream, seq)
        out.append(parse_event(msg.data or b""))
    return out


def _history(
    configured: Callable[..., PrinterConfigured], printers: int
) -> tuple[list[Event], dict[str, list[uuid.UUID]]]:
    """Return each printer configured, removed and configured again, interleaved across printers."""
    events: list[Event] = []
    for step in range(3):
        for i in range(printers):
            pid = f"p-{i:04d}"
            if step == 1:
                events.append(PrinterRemoved(source="test", site_id="default", printer_id=pid))
            else:
                events.append(configured(pid, interval_s=60.0 + step))
    return events, _per_printer(events)


def _per_printer(events: list[Event]) -> dict[str, list[uuid.UUID]]:
    out: dict[str, list[uuid.UUID]] = {}
    for e in events:
        out.setdefault(e.subject_key() or "", []).append(e.event_id)
    return out


def _left(db: Engine) -> list[str]:
    with Session(db) as s:
        return [r.event_id for r in s.exec(select(OutboxEvent).order_by(col(OutboxEvent.id)))]


async def test_the_window_keeps_each_printers_events_in_the_order_queued(
    bus: Bus, db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    # Configured, removed, configured again: a printer's last event must be its last in the
    # stream, or the poller ends with it removed (it applies them in stream order).
    events, queued = _history(configured, 200)
    in_tx(db, lambda s: [add_to_outbox(s, e) for e in events])
    watched = _Watched(bus)
    assert await Outbox(db, watched, window=64).flush(limit=250) == 600  # type: ignore[arg-type]
    assert 1 < watched.most_in_flight <= 64  # a window, bounded
    stream = await _stream(bus)
    assert len(stream) == 600
    assert _per_printer(stream) == queued
    assert _left(db) == []


async def test_nats_refusing_mid_window_loses_nothing_and_sends_nothing_twice(
    bus: Bus, db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    # The stream fills after 150 events (discard new): NATS refuses the rest of the window.
    config = (await bus.js.stream_info(bus.subjects.events_stream)).config
    config.max_msgs = 150
    await bus.js.update_stream(config)
    events, queued = _history(configured, 100)
    in_tx(db, lambda s: [add_to_outbox(s, e) for e in events])
    with pytest.raises(nats.js.errors.APIError):
        await Outbox(db, bus, window=32).flush(limit=120)
    stored = await _stream(bus)
    assert len(stored) == 150
    # What the stream holds left the outbox; everything else is still there, in the order queued.
    left = _left(db)
    assert set(left).isdisjoint(str(e.event_id) for e in stored)
    assert len(left) + len(stored) == len(events)
    assert left == [str(e.event_id) for e in events if str(e.event_id) in set(left)]
    # No printer has a later event in the stream than one still waiting.
    for e in stored:
        mine = queued[e.subject_key() or ""]
        assert all(str(before) not in left for before in mine[: mine.index(e.event_id)])

    config.max_msgs = -1
    await bus.js.update_stream(config)
    assert await Outbox(db, bus, window=32).flush(limit=120) == len(left)
    stream = await _stream(bus)
    assert len(stream) == len(events) and _per_printer(stream) == queued
    assert _left(db) == []


async def test_a_lost_ack_keeps_the_row_and_its_second_publish_is_dropped_as_a_repeat(
    bus: Bus, db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    events, queued = _history(configured, 40)
    lost = {events[45].event_id, events[90].event_id}
    in_tx(db, lambda s: [add_to_outbox(s, e) for e in events])
    with pytest.raises(nats.errors.TimeoutError):
        await Outbox(db, _Watched(bus, lose_ack_of=lost), window=16).flush()  # type: ignore[arg-type]
    left = _left(db)
    assert {str(i) for i in lost} <= set(left)  # not acked: kept, though the stream has them
    again = _Watched(bus)
    assert await Outbox(db, again, window=16).flush() == len(left)  # type: ignore[arg-type]
    assert again.repeats >= 1  # JetStream recognised the lost-ack events by their id
    stream = await _stream(bus)
    assert len(stream) == len(events) and _per_printer(stream) == queued
    with Session(db) as s:
        assert s.exec(select(func.count()).select_from(OutboxEvent)).one() == 0


async def test_an_unreadable_row_is_set_aside_while_the_window_sends_the_rest(
    bus: Bus, db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    events = [configured(f"p-{i:03d}") for i in range(20)]
    in_tx(db, lambda s: [add_to_outbox(s, e) for e in events[:10]])
    in_tx(db, lambda s: s.add(OutboxEvent(event_id=str(uuid.uuid4()), payload="{not json")))
    in_tx(db, lambda s: [add_to_outbox(s, e) for e in events[10:]])
    assert await Outbox(db, bus, window=8).flush() == 20
    assert {e.event_id for e in await _stream(bus)} == {e.event_id for e in events}
    with Session(db) as s:
        [dead] = s.exec(select(OutboxEvent)).all()
        assert dead.dead_at is not None and "{not json" in dead.payload
