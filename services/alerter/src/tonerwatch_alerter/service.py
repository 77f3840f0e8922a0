"""The alerter service: supply readings and reachability in, ThresholdCrossed / AlertResolved / SupplyReplaced out.

Two durable consumers share the work between replicas: `<prefix>_alerter` on supply readings and
`<prefix>_alerter_printer` on printer events (unreachable, reachable, removed). State lives in the
ALERTER KV bucket, so replicas and restarts agree on what has been announced.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from tonerwatch_alerter.engine import Context
from tonerwatch_alerter.process import Processor
from tonerwatch_alerter.rules import AlertRules, Resolved
from tonerwatch_alerter.store import BUCKET, StateStore
from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import Bus, ConsumerSpec
from tonerwatch_shared.lifecycle import install_stop_signals
from tonerwatch_shared.settings import CommonSettings
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger(__name__)


class Settings(CommonSettings):
    """Alerter knobs (env TONERWATCH_<FIELD>); TONERWATCH_ALERT_RULES holds per-site/printer/kind overrides as JSON."""

    low_percent: float = Field(default=20.0, ge=0, le=100, description="Low threshold, percent")
    critical_percent: float = Field(default=5.0, ge=0, le=100, description="Critical threshold")
    hysteresis_points: float = Field(
        default=3.0, ge=0, le=50, description="Points above a threshold before an alert clears"
    )
    lead_time_days: float = Field(
        default=7.0, gt=0, description="Reorder lead time: forecast alerts below this many days"
    )
    replacement_jump_points: float = Field(
        default=15.0, gt=0, le=100, description="A rise of more than this is a new cartridge"
    )
    alert_rules: AlertRules = Field(
        default_factory=AlertRules,
        description='Overrides, e.g. {"sites": {"hq": {"low_percent": 25, "kinds": {"ink": {...}}}}}',
    )
    ack_wait_s: float = Field(default=30.0, gt=0)

    def context(self) -> Context:
        """Return the evaluation context these settings describe."""
        return Context(
            base=Resolved(
                low_percent=self.low_percent,
                critical_percent=min(self.critical_percent, self.low_percent),
                hysteresis_points=self.hysteresis_points,
                lead_time_days=self.lead_time_days,
                replacement_jump_points=self.replacement_jump_points,
            ),
            rules=self.alert_rules,
            source=f"alerter/{self.instance}",
        )


def consumer_specs(
    subjects: Subjects, ack_wait_s: float = 30.0
) -> tuple[ConsumerSpec, ConsumerSpec]:
    """Return the durable consumers every replica shares: readings, and printer events."""
    readings = ConsumerSpec(
        durable=subjects.name("alerter"),
        filter_subject=subjects.filter(sj.SUPPLY_READING),
        ack_wait_s=ack_wait_s,
    )
    printers = ConsumerSpec(
        durable=subjects.name("alerter_printer"),
        # printer.<what>.<id>: unreachable, reachable, removed (configured is ignored).
        filter_subject=f"{subjects.root}.*.printer.*.*",
        ack_wait_s=ack_wait_s,
    )
    return readings, printers


async def run(
    settings: Settings, *, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None
) -> None:
    """Run one alerter replica until stop (or SIGTERM), then drain."""
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    subjects = Subjects(settings.subject_root, settings.stream_prefix)
    bus = await Bus.connect(
        settings.require_nats_url(),
        subjects=subjects,
        name=f"alerter/{settings.instance}",
        max_age_s=settings.event_max_age_days * 86400,
        attempts=settings.nats_connect_attempts,
        connect_timeout_s=settings.nats_connect_timeout_s,
    )
    try:
        await bus.ensure_event_stream()
        store = StateStore(await bus.key_value(BUCKET))
        processor = Processor(bus, store, settings.context())
        specs = consumer_specs(subjects, settings.ack_wait_s)
        for spec in specs:
            await bus.ensure_consumer(spec)
        if ready is not None:
            ready.set()
        log.info("alerter ready")
        async with asyncio.TaskGroup() as tg:
            for spec in specs:
                tg.create_task(bus.consume(spec, processor.handle, stop=stop))
        log.info(
            "alerter stopping: %d published, %d duplicates, %d write conflicts",
            processor.published,
            processor.duplicates,
            processor.conflicts,
        )
    finally:
        await bus.drain()


__all__ = ["Settings", "consumer_specs", "run"]
