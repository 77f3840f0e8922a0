"""The api's activity projections: discovery jobs and network usage, each a durable consumer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tonerwatch_api.db.tx import database_probe, run_write_tx
from tonerwatch_api.projections.collectors import apply_collector_event
from tonerwatch_api.projections.discovery_jobs import apply_job_event
from tonerwatch_api.projections.network_usage import apply_usage, apply_usage_batch
from tonerwatch_shared.bus import Bus, ConsumerSpec
from tonerwatch_shared.events import (
    CollectorStatus,
    DiscoveryFinished,
    DiscoveryRequested,
    Event,
    PrinterFound,
    UpstreamSynced,
    printer_of,
)
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger(__name__)
Apply = Callable[[Session, Event], str]
ApplyBatch = Callable[[Session, list[Event]], list[str]]
# Set-based equivalents (same rows and outcomes as applying each event in turn): a batch in a few
# statements instead of a few per event.
SET_BASED: dict[Apply, ApplyBatch] = {apply_usage: apply_usage_batch}

# Durables the api no longer runs, deleted at start so they don't pile up messages nobody takes.
# api-usage-polling: the readings' network usage is applied in the readings' own transaction
# (readings.apply_readings_and_usage). tonerwatch_shared.nats_users.API_RETIRED_DURABLES lets the
# api user delete them.
RETIRED_DURABLES = ("api-usage-polling",)


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


async def retire_durables(bus: Bus) -> None:
    """Delete the retired durables of the api if they exist (a NATS error: tried at the next start)."""
    for durable in RETIRED_DURABLES:
        try:
            await bus.js.delete_consumer(bus.subjects.events_stream, durable)
            log.info("deleted the retired consumer %s", durable)
        except NotFoundError:
            pass
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning(
                "could not delete the retired consumer %s (%r): at the next start", durable, exc
            )


async def run_activity(engine: Engine, bus: Bus, stop: asyncio.Event) -> None:
    """Consume until stop is set: each fetched batch in one transaction (one by one if it fails)."""
    probe = database_probe(engine)
    await retire_durables(bus)
    async with asyncio.TaskGroup() as tg:
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
