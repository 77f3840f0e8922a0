"""The api's activity projections: discovery jobs and network usage, each a durable consumer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial

import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tonerwatch_api.db.tx import database_probe, run_write_tx
from tonerwatch_api.projections.collectors import apply_collector_event
from tonerwatch_api.projections.discovery_jobs import apply_job_event
from tonerwatch_api.projections.network_usage import apply_usage, apply_usage_batch
from tonerwatch_shared.bus import (
    DEAD_MAX_MSGS,
    PUBLISH_TIMEOUT_S,
    Bus,
    ConsumerSpec,
    dead_stream,
    dead_subject,
)
from tonerwatch_shared.events import (
    CollectorStatus,
    DiscoveryFinished,
    DiscoveryRequested,
    Event,
    PrinterFound,
    UnreadableEvent,
    UpstreamSynced,
    parse_event,
    printer_of,
    unbatched,
)
from tonerwatch_shared.nats_users import API_RETIRED_DURABLES
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger(__name__)
Apply = Callable[[Session, Event], str]
ApplyBatch = Callable[[Session, list[Event]], list[str]]
# Set-based equivalents (same rows and outcomes as applying each event in turn): a batch in a few
# statements instead of a few per event.
SET_BASED: dict[Apply, ApplyBatch] = {apply_usage: apply_usage_batch}

# Durables the api no longer runs (tonerwatch_shared.nats_users.API_RETIRED_DURABLES, which lets
# the api user drain and delete them), drained and then deleted at start (so an upgrade loses
# nothing they had not applied yet, and they don't pile up messages nobody takes), each with what
# drains it and the durable that takes over its dead letters. api-usage-polling: the readings'
# network usage is applied in the readings' own transaction (readings.apply_readings_and_usage) by
# api-readings.
RETIRED: dict[str, tuple[ApplyBatch, str]] = {
    "api-usage-polling": (apply_usage_batch, "api-readings"),
}
# How long one start drains a retired durable at most; what is left is drained at the next start.
RETIRE_DRAIN_S = 300.0
RETIRE_BATCH = 256


def activity_consumers(subjects: Subjects) -> tuple[tuple[ConsumerSpec, Apply], ...]:
    """Return each consumer (durable name, subject filter) with what it applies."""
    every_job_event = subjects.area(DiscoveryRequested.subject_area())
    # The whole sync area: UpstreamSynced is keyed by printer only when the event had one.
    every_sync_event = subjects.area(UpstreamSynced.subject_area())
    return (
        (ConsumerSpec("api-discovery-jobs", every_job_event), apply_job_event),
        (
            ConsumerSpec("api-discovery-found", PrinterFound.subject_filter(subjects)),
            apply_job_event,
        ),
        (
            ConsumerSpec("api-usage-discovery", DiscoveryFinished.subject_filter(subjects)),
            apply_usage,
        ),
        (ConsumerSpec("api-usage-sync", every_sync_event), apply_usage),
        # The whole site area: collectors' statuses and the alerter's site offline/online.
        (
            ConsumerSpec("api-collectors", subjects.area(CollectorStatus.subject_area())),
            apply_collector_event,
        ),
    )


async def retire_durables(
    bus: Bus, engine: Engine, stop: asyncio.Event, drain_s: float = RETIRE_DRAIN_S
) -> None:
    """Drain each retired durable of the api, then delete it; move its dead letters to its heir.

    Bounded by drain_s; a NATS or database error, a stop or the bound leaves the durable for the
    next start (nothing is lost: what it holds is drained then).
    """
    for durable in API_RETIRED_DURABLES:
        drain, heir = RETIRED[durable]
        try:
            await _move_dead_letters(bus, durable, heir, stop)
            if not await _drain(bus, engine, durable, drain, stop, drain_s):
                continue
            with contextlib.suppress(NotFoundError):
                await bus.js.delete_consumer(bus.subjects.events_stream, durable)
                log.info("drained and deleted the retired consumer %s", durable)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # NATS or the database: what is not acked is drained next time
            log.warning("could not retire the consumer %s (%r): at the next start", durable, exc)


async def _drain(
    bus: Bus,
    engine: Engine,
    durable: str,
    apply: ApplyBatch,
    stop: asyncio.Event,
    drain_s: float,
) -> bool:
    """Apply what durable still holds with apply; return whether it is done (or gone).

    Done: nothing pending nor unacknowledged, or everything up to the stream's last message at
    the start acknowledged (what came after is also taken by the consumer that replaced it).
    Unacknowledged deliveries of a stopped old api come back after the durable's ack wait.
    """
    stream = bus.subjects.events_stream
    try:
        info = await bus.js.consumer_info(stream, durable)
    except NotFoundError:
        return True
    if info.num_pending + info.num_ack_pending == 0:
        return True
    upto = (await bus.js.stream_info(stream)).state.last_seq
    log.info(
        "draining the retired consumer %s: %d pending, %d unacknowledged",
        durable,
        info.num_pending,
        info.num_ack_pending,
    )
    sub = await bus.js.pull_subscribe_bind(durable, stream=stream)
    deadline = time.monotonic() + drain_s
    applied = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(RETIRE_BATCH, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                msgs = []
            if msgs:
                # An unreadable event is set aside by the consumer that replaced this one.
                # A message of readings published together (SupplyReadingBatch): each reading.
                readable = [r for e in map(_readable, msgs) if e is not None for r in unbatched(e)]
                await run_write_tx(engine, partial(_apply_sorted, apply, readable))
                # Plain acks, one flush, no round trip per message: a lost ack only redelivers
                # what is applied already (apply drops repeats by processed_events).
                for msg in msgs:
                    await msg.ack()
                await bus.nc.flush(timeout=int(PUBLISH_TIMEOUT_S))
                applied += len(msgs)
                if max(msg.metadata.sequence.stream for msg in msgs) < upto:
                    continue
                # Past the stream's end at the start: while readings keep coming, a fetch is never
                # empty, so "done" is asked here too, not only after an empty fetch.
            info = await bus.js.consumer_info(stream, durable)
            if info.num_pending + info.num_ack_pending == 0 or info.ack_floor.stream_seq >= upto:
                log.info("drained the retired consumer %s: %d events applied", durable, applied)
                return True
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    log.warning(
        "the retired consumer %s is not drained yet (%d applied): the rest at the next start",
        durable,
        applied,
    )
    return False


def _apply_sorted(apply: ApplyBatch, events: list[Event], session: Session) -> list[str]:
    # Sorted: the same row order as the readings' transactions (no deadlock).
    return apply(session, sorted(events, key=lambda e: printer_of(e) or ""))


def _readable(msg: Msg) -> Event | None:
    try:
        return parse_event(msg.data)
    except UnreadableEvent:
        return None


async def _move_dead_letters(bus: Bus, durable: str, heir: str, stop: asyncio.Event) -> None:
    """Move durable's dead letters to heir's (replayed through heir from now on); delete its replay consumer.

    Each is published again under heir's dead subject with its headers (Tw-Consumer heir,
    Tw-Moved-From durable), then deleted: a replay through api-readings applies the reading's
    usage, the reading itself already applied being a no-op. Bounded by the dead stream's size.
    """
    dead = dead_stream(bus.subjects)
    subject = dead_subject(bus.subjects, durable)
    for _ in range(DEAD_MAX_MSGS):
        if stop.is_set():
            return
        try:
            raw = await bus.js.get_last_msg(dead, subject)
        except NotFoundError:
            break
        headers = dict(raw.headers or {})
        headers["Nats-Msg-Id"] = f"moved:{heir}:{headers.get('Nats-Msg-Id', raw.seq)}"
        headers["Tw-Consumer"] = heir
        headers["Tw-Moved-From"] = durable
        await bus.js.publish(
            dead_subject(bus.subjects, heir),
            raw.data or b"",
            timeout=PUBLISH_TIMEOUT_S,
            headers=headers,
        )
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_msg(dead, raw.seq or 0)
        log.info("moved dead letter %d of the retired %s to %s", raw.seq, durable, heir)
    with contextlib.suppress(NotFoundError):
        await bus.js.delete_consumer(dead, f"{durable}_replay")


async def run_activity(engine: Engine, bus: Bus, stop: asyncio.Event) -> None:
    """Consume until stop is set: each fetched batch in one transaction (one by one if it fails)."""
    probe = database_probe(engine)
    async with asyncio.TaskGroup() as tg:
        # Beside the consumers: a long drain never holds back what the api runs now.
        tg.create_task(retire_durables(bus, engine, stop))
        for spec, apply in activity_consumers(bus.subjects):

            async def handler(event: Event, _msg: Msg, apply: Apply = apply) -> None:
                set_based = SET_BASED.get(apply)
                if set_based is not None:
                    await run_write_tx(engine, lambda s: set_based(s, [event]))
                else:
                    await run_write_tx(engine, lambda s: apply(s, event))

            async def batch(events: list[Event], apply: Apply = apply) -> None:
                # Sorted: concurrent replicas update shared rows in the same order (no deadlock).
                ordered = sorted(events, key=lambda e: printer_of(e) or "")
                set_based = SET_BASED.get(apply)
                if set_based is not None:
                    await run_write_tx(engine, lambda s: set_based(s, ordered))
                else:
                    await run_write_tx(engine, lambda s: [apply(s, e) for e in ordered])

            tg.create_task(
                bus.consume(spec, handler, stop=stop, batch=64, batch_handler=batch, probe=probe)
            )
