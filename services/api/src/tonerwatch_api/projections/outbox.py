"""The outbox: events queued in the change's transaction, published after commit."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from datetime import UTC, datetime

import nats.errors
from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import OutboxEvent
from tonerwatch_api.db.tx import run_tx
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import Event, UnreadableEvent, parse_event

log = logging.getLogger(__name__)
_FOLLOW_UP_NS = uuid.UUID("6f1d8a52-51c6-4f7e-9a51-0d3f3b1f0a11")


def follow_up_id(cause: Event, what: str) -> uuid.UUID:
    """Return the event id of what an event causes: stable, so a repeat is deduplicated."""
    return uuid.uuid5(_FOLLOW_UP_NS, f"{cause.event_id}:{what}")


def add_to_outbox(session: Session, event: Event) -> None:
    """Queue event for publishing once the transaction commits."""
    session.add(OutboxEvent(event_id=str(event.event_id), payload=event.model_dump_json()))


# Publishes awaiting their ack at once: a CSV import of 10,000 printers queues 10,000 events,
# and one ack round trip each (~1-3 ms on loopback, more under load) held the poller's first
# sight of them to a few hundred a second at best.
PUBLISH_WINDOW = 256


def _lane(event: Event) -> str | None:
    """Return the key whose events must reach the stream in the order queued.

    The poller applies a printer's configured and removed events in stream order (a printer
    configured then removed must end removed), so events of one printer (or order, or job) go out
    one after another; events without a key are few and all kept in one lane.
    """
    return event.subject_key()


class Outbox:
    """Publishes events written to the outbox table, in order per key, then deletes them."""

    def __init__(self, engine: Engine, bus: Bus, *, window: int = PUBLISH_WINDOW) -> None:
        self.engine = engine
        self.bus = bus
        self.window = window
        self._lock = asyncio.Lock()

    async def flush(self, limit: int = 1000) -> int:
        """Publish pending events, `limit` at a time until none is left; return how many went out.

        Up to `window` publishes await their acks at once; events of one key (the subject's
        printer or job id) go out one after another, in the order queued. The rows a batch
        published are deleted in one transaction after it, only once acked: a CSV import of
        1,000 printers queues 1,000 PrinterConfigured events, and a transaction per event,
        waiting on SQLite's write lock behind the import's own, held them back by minutes. A
        failed publish stops the batch (its key's later events wait behind it); what was acked is
        deleted, the rest stays and is sent again, and JetStream drops repeats (same event id)
        when an ack was lost rather than the publish.
        """
        sent = 0
        async with self._lock:
            while True:
                rows = await run_tx(
                    self.engine,
                    lambda s: list(
                        s.exec(
                            select(OutboxEvent)
                            .where(col(OutboxEvent.dead_at).is_(None))
                            .order_by(col(OutboxEvent.id))
                            .limit(limit)
                        ).all()
                    ),
                )
                published: list[int] = []
                try:
                    await self._publish(rows, published)
                finally:
                    # Also when a publish failed: what went out before it is not sent again.
                    if published:
                        await run_tx(
                            self.engine, functools.partial(_delete_outbox, row_ids=published)
                        )
                sent += len(published)
                if len(rows) < limit:
                    return sent

    async def _publish(self, rows: list[OutboxEvent], published: list[int]) -> None:
        """Publish rows, each key's in order, `window` at once; add each acked row's id to published.

        Raises the first publish failure once the publishes in flight have ended.
        """
        lanes: dict[str | None, list[tuple[int, Event]]] = {}
        for row in rows:
            try:
                event = parse_event(row.payload)
            except UnreadableEvent as exc:
                await self._bury(row, exc)
                continue
            if row.id is not None:
                lanes.setdefault(_lane(event), []).append((row.id, event))
        window = asyncio.Semaphore(self.window)
        failures: list[Exception] = []

        async def lane(events: list[tuple[int, Event]]) -> None:
            for row_id, event in events:
                async with window:
                    if failures:
                        return  # NATS refused one: the rest waits for the next flush, in order
                    try:
                        # JetStream drops a repeat of the same event_id, so a crash between
                        # publish and delete only means a harmless second publish.
                        await self.bus.publish(event)
                    except nats.errors.MaxPayloadError as exc:
                        await self._bury_id(row_id, str(event.event_id), exc)
                        continue
                    except Exception as exc:
                        failures.append(exc)
                        return
                published.append(row_id)

        async with asyncio.TaskGroup() as tg:
            for events in lanes.values():
                tg.create_task(lane(events))
        if failures:
            raise failures[0]

    async def _bury(self, row: OutboxEvent, exc: Exception) -> None:
        await self._bury_id(row.id, row.event_id, exc)

    async def _bury_id(self, row_id: int | None, event_id: str, exc: Exception) -> None:
        # Never publishable: set aside (kept) so the events behind it still go out.
        log.error("outbox event %s can never be published: %r", event_id, exc)
        await run_tx(self.engine, functools.partial(_bury, row_id, repr(exc)))

    async def run(self, stop: asyncio.Event, interval_s: float = 2.0) -> None:
        """Flush every interval_s until stop is set (retries what a failed publish left)."""
        while not stop.is_set():
            try:
                await self.flush()
            except Exception as exc:
                log.warning("outbox flush failed, will retry: %r", exc)
            try:
                async with asyncio.timeout(interval_s):
                    await stop.wait()
            except TimeoutError:
                pass


def _bury(row_id: int | None, error: str, session: Session) -> None:
    row = session.get(OutboxEvent, row_id)
    if row is not None:
        row.dead_at, row.error = datetime.now(UTC), error[:2000]
        session.add(row)


def dead_outbox_events(session: Session) -> int:
    """Return how many outbox events were set aside as never publishable."""
    q = select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.dead_at).is_not(None))
    return int(session.exec(q).one())


def _delete_outbox(session: Session, row_ids: list[int]) -> None:
    session.exec(delete(OutboxEvent).where(col(OutboxEvent.id).in_(row_ids)))
