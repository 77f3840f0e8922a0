"""The projector: consumes the services' events and applies each once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.msg import Msg
from sqlalchemy.engine import Engine

from tonerwatch_api.db.tx import database_probe, in_tx, run_write_tx
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.outbox import Outbox
from tonerwatch_api.projections.printers import ProjectionOptions, apply_event
from tonerwatch_api.projections.readings import apply_readings_and_usage
from tonerwatch_shared.bus import Bus, ConsumerSpec
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    PrinterConfigured,
    PrinterFound,
    SupplyReading,
    SupplyReplaced,
    UpstreamOrderUpdate,
    printer_of,
)
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Projection:
    """One durable consumer and the area.what kinds it applies."""

    durable: str
    filter_subject: Callable[[Subjects], str]


def projections() -> tuple[Projection, ...]:
    """Return the consumers the api runs."""
    return (
        Projection("api-readings", SupplyReading.subject_filter),
        # Whole areas: every printer.* and alert.* kind, keyed or not, in one ordered consumer.
        Projection("api-printers", lambda s: s.area(PrinterConfigured.subject_area())),
        Projection("api-alerts", lambda s: s.area(AlertResolved.subject_area())),
        Projection("api-supplies", SupplyReplaced.subject_filter),
        # The upstream portal's confirmations, shipments and cancellations (the syncer's downlink).
        Projection("api-upstream", UpstreamOrderUpdate.subject_filter),
    )


# A printer's and an alert's events are applied one at a time, in stream order: after an outage a
# "resolved" is never applied before its "crossed". Readings carry their own time and go in batches.
ORDERED = frozenset({"api-printers", "api-alerts"})


# After a fetch that brought less than a full batch, the readings consumer waits this long before
# the next: at a steady rate a transaction then applies several readings instead of one (its fixed
# cost, ~3 ms of CPU on SQLite, dominated at 33 readings/s); a reading is visible this much later.
READINGS_LINGER_S = 0.2


def consumer_spec(p: Projection, subjects: Subjects) -> ConsumerSpec:
    """Return the durable consumer of one projection (never drops an event: docs/reliability.md)."""
    return ConsumerSpec(
        durable=p.durable,
        filter_subject=p.filter_subject(subjects),
        ordered=p.durable in ORDERED,
        linger_s=READINGS_LINGER_S if p.durable == "api-readings" else 0.0,
        # A message may hold 128 readings: a worker's first fetch takes one (ConsumerSpec), so a
        # backlog at start is applied by every worker side by side, not by the first alone.
        first_fetch=1 if p.durable == "api-readings" else 0,
    )


class Projector:
    """Runs the projection consumers: apply, record metrics, publish follow-ups."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        outbox: Outbox,
        metrics: Metrics,
        options: ProjectionOptions,
        on_applied: Callable[[Event], None] | None = None,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.outbox = outbox
        self.metrics = metrics
        self.options = options
        # Told of every event applied once committed (the UI's live printer updates).
        self.on_applied = on_applied

    async def apply(self, event: Event, consumer: str) -> str:
        """Apply one event in one transaction; return the outcome."""
        now = datetime.now(UTC)
        if isinstance(event, SupplyReading):
            # A fetch that brought one reading: the set-based path costs a fraction of the ORM's
            # (same rows and outcomes, test_a_batch_of_readings_equals_applying_them_one_by_one).
            [outcome] = await run_write_tx(
                self.engine,
                lambda s: apply_readings_and_usage(s, [event], consumer, self.options, now),
            )
        else:
            outcome = await run_write_tx(
                self.engine, lambda s: apply_event(s, event, consumer, self.options, now)
            )
        self.metrics.event_applied(consumer, type(event).__name__, outcome, event.occurred_at)
        if outcome == "applied" and isinstance(event, PrinterFound):
            await self.outbox.flush()
        if outcome == "applied" and self.on_applied is not None:
            self.on_applied(event)
        return outcome

    async def apply_batch(self, events: list[Event], consumer: str) -> None:
        """Apply events in one transaction (all or none); readings lock their printers in id order."""
        now = datetime.now(UTC)
        # The same lock order in every transaction: concurrent batches never deadlock.
        ordered = sorted(events, key=lambda e: (printer_of(e) or "", e.occurred_at))
        readings = [e for e in ordered if isinstance(e, SupplyReading)]
        if len(readings) == len(ordered):
            # Set-based: a fixed number of statements per batch (same results, see apply_readings),
            # the readings' network usage in the same transaction.
            outcomes = await run_write_tx(
                self.engine,
                lambda s: apply_readings_and_usage(s, readings, consumer, self.options, now),
            )
        else:
            outcomes = await run_write_tx(
                self.engine,
                lambda s: [apply_event(s, e, consumer, self.options, now) for e in ordered],
            )
        for event, outcome in zip(ordered, outcomes, strict=True):
            self.metrics.event_applied(consumer, type(event).__name__, outcome, event.occurred_at)
            if outcome == "applied" and self.on_applied is not None:
                self.on_applied(event)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume every projection until stop is set."""
        parallel = self.engine.dialect.name == "postgresql"
        probe = database_probe(self.engine)
        async with asyncio.TaskGroup() as tg:
            for p in projections():
                spec = consumer_spec(p, self.bus.subjects)

                async def handler(event: Event, _msg: Msg, durable: str = p.durable) -> None:
                    await self.apply(event, durable)

                async def batch(events: list[Event], durable: str = p.durable) -> None:
                    await self.apply_batch(events, durable)

                # Pull subscriptions on one durable share its messages between them.
                readings = p.durable == "api-readings"
                workers = self.options.reading_workers if readings else 1
                for _ in range(max(1, workers) if parallel else 1):
                    tg.create_task(
                        self.bus.consume(
                            spec,
                            handler,
                            stop=stop,
                            batch=self.options.reading_batch if readings else 64,
                            batch_handler=batch if readings else None,
                            probe=probe,
                        )
                    )


def apply_now(engine: Engine, event: Event, consumer: str = "test") -> str:
    """Apply one event synchronously (tools and tests); return the outcome."""
    now = datetime.now(UTC)
    return in_tx(engine, lambda s: apply_event(s, event, consumer, ProjectionOptions(), now))
