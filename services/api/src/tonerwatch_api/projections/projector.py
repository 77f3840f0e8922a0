"""The projector: consumes the services' events and applies each once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.msg import Msg
from sqlalchemy.engine import Engine

from tonerwatch_api.db.tx import in_tx, run_tx
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.outbox import Outbox
from tonerwatch_api.projections.printers import ProjectionOptions, apply_event
from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import Bus, ConsumerSpec
from tonerwatch_shared.events import Event, PrinterFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Projection:
    """One durable consumer and the area.what kinds it applies."""

    durable: str
    area_what: str
    keyed: bool = True


def projections() -> tuple[Projection, ...]:
    """Return the consumers the api runs."""
    return (
        Projection("api-readings", sj.SUPPLY_READING),
        Projection("api-printers", "printer.>", keyed=False),
        Projection("api-alerts", "alert.>", keyed=False),
        Projection("api-supplies", sj.SUPPLY_REPLACED),
    )


def consumer_spec(p: Projection, root: str) -> ConsumerSpec:
    """Return the durable consumer of one projection under subject root."""
    filt = f"{root}.*.{p.area_what}" + (".*" if p.keyed else "")
    return ConsumerSpec(durable=p.durable, filter_subject=filt, max_deliver=30)


class Projector:
    """Runs the projection consumers: apply, record metrics, publish follow-ups."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        outbox: Outbox,
        metrics: Metrics,
        options: ProjectionOptions,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.outbox = outbox
        self.metrics = metrics
        self.options = options

    async def apply(self, event: Event, consumer: str) -> str:
        """Apply one event in one transaction; return the outcome."""
        now = datetime.now(UTC)
        outcome = await run_tx(
            self.engine, lambda s: apply_event(s, event, consumer, self.options, now)
        )
        self.metrics.event_applied(consumer, type(event).__name__, outcome, event.occurred_at)
        if outcome == "applied" and isinstance(event, PrinterFound):
            await self.outbox.flush()
        return outcome

    async def apply_batch(self, events: list[Event], consumer: str) -> None:
        """Apply events in one transaction (all or none); readings lock their printers in id order."""
        now = datetime.now(UTC)
        # The same lock order in every transaction: concurrent batches never deadlock.
        ordered = sorted(events, key=lambda e: (str(getattr(e, "printer_id", "")), e.occurred_at))
        outcomes = await run_tx(
            self.engine,
            lambda s: [apply_event(s, e, consumer, self.options, now) for e in ordered],
        )
        for event, outcome in zip(ordered, outcomes, strict=True):
            self.metrics.event_applied(consumer, type(event).__name__, outcome, event.occurred_at)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume every projection until stop is set."""
        parallel = self.engine.dialect.name == "postgresql"
        async with asyncio.TaskGroup() as tg:
            for p in projections():
                spec = consumer_spec(p, self.bus.subjects.root)

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
                        )
                    )


def apply_now(engine: Engine, event: Event, consumer: str = "test") -> str:
    """Apply one event synchronously (tools and tests); return the outcome."""
    now = datetime.now(UTC)
    return in_tx(engine, lambda s: apply_event(s, event, consumer, ProjectionOptions(), now))
