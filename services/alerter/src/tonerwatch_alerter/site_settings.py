"""Alert settings the web UI configures per site (AlertSettingsConfigured), kept in a KV bucket.

The api is the system of record; the alerter keeps the latest event per site in the ALERTER_SITES
bucket, so every replica and a restart see the same settings. They apply on top of the environment's
rules: env defaults < env site < env printer < configured site < configured printer (each with its
per-kind overrides), and their recipients are added to every mail route's recipients for the site
(and a printer's own, printer_recipients, to the mail about that printer).
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from tonerwatch_alerter.rules import AlertRules, Layer, Limits
from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import ConsumerSpec
from tonerwatch_shared.events import AlertLimits, AlertSettingsConfigured, Event
from tonerwatch_shared.kv import KvConflict, ModelKv
from tonerwatch_shared.kv_mirror import ModelMirror
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger(__name__)

BUCKET = "ALERTER_SITES"
MAX_ATTEMPTS = 8


def _limits(src: AlertLimits) -> Limits:
    return Limits(
        low_percent=src.low_percent,
        critical_percent=src.critical_percent,
        lead_time_days=src.lead_time_days,
    )


def rules_of(event: AlertSettingsConfigured | None) -> AlertRules:
    """Return the configured settings of a site as rule layers (empty when nothing is configured)."""
    if event is None:
        return AlertRules()
    site = Layer(
        low_percent=event.low_percent,
        critical_percent=event.critical_percent,
        lead_time_days=event.lead_time_days,
        kinds={kind: _limits(v) for kind, v in event.kinds.items()},
    )
    printers = {
        pid: Layer(
            **_limits(v).model_dump(),
            kinds={kind: _limits(k) for kind, k in v.kinds.items()},
        )
        for pid, v in event.printers.items()
    }
    return AlertRules(sites={event.site_id: site}, printers=printers)


def consumer_spec(subjects: Subjects, ack_wait_s: float = 30.0) -> ConsumerSpec:
    """Return the durable consumer all replicas share for site settings (every one since the start)."""
    return ConsumerSpec(
        durable=subjects.name("alerter_settings"),
        filter_subject=AlertSettingsConfigured.subject_filter(subjects),
        ack_wait_s=ack_wait_s,
    )


class SiteSettings:
    """Latest AlertSettingsConfigured per site in a KV bucket (highest revision wins)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.sites = ModelKv(kv, AlertSettingsConfigured)
        # Read for every reading: from memory, kept current by a watch once started (a change
        # saved in the web UI by any replica applies to the readings after it arrives, ms later).
        self.mirror = ModelMirror(self.sites)

    async def start(self) -> None:
        """Load the bucket into memory and follow it (without: every load asks KV)."""
        await self.mirror.start()

    async def stop(self) -> None:
        """End the watch."""
        await self.mirror.stop()

    async def load(self, site_id: str) -> AlertSettingsConfigured | None:
        """Return the settings configured for site_id (None: nothing configured, env rules only)."""
        return (await self.mirror.read(sj.token(site_id))).value

    async def rules(self, site_id: str) -> AlertRules:
        """Return site_id's configured settings as rule layers."""
        return rules_of(await self.load(site_id))

    async def recipients(self, site_id: str) -> tuple[str, ...]:
        """Return the addresses configured for site_id's alerts."""
        event = await self.load(site_id)
        return event.recipients if event else ()

    async def printer_recipients(self, site_id: str, printer_id: str) -> tuple[str, ...]:
        """Return the addresses configured for printer_id's alerts besides its site's."""
        event = await self.load(site_id)
        return event.recipients_of(printer_id) if event else ()

    async def store(self, event: AlertSettingsConfigured) -> bool:
        """Keep event unless a newer revision is already kept; return whether it was written."""

        def newer(current: AlertSettingsConfigured | None) -> AlertSettingsConfigured | None:
            if current is not None and (current.revision, current.occurred_at) >= (
                event.revision,
                event.occurred_at,
            ):
                return None  # a redelivery, or overtaken by a newer change
            return event

        try:
            written = await self.sites.edit(
                sj.token(event.site_id), newer, attempts=MAX_ATTEMPTS, pause_s=0.0
            )
        except KvConflict as exc:
            raise RuntimeError(
                f"gave up storing alert settings of {event.site_id}: write conflicts"
            ) from exc
        if written is None:
            return False
        self.mirror.keep(sj.token(event.site_id), event, written.revision)
        log.info(
            "alert settings of site %s at revision %d",
            event.site_id,
            event.revision,
            extra={"site": event.site_id},
        )
        return True

    async def handle(self, event: Event, msg: Msg | None = None) -> None:
        """Consumer handler: keep AlertSettingsConfigured events, ignore anything else."""
        if isinstance(event, AlertSettingsConfigured):
            await self.store(event)


__all__ = ["BUCKET", "SiteSettings", "consumer_spec", "rules_of"]
