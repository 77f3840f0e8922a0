"""Alert settings the web UI configures per site (AlertSettingsConfigured), kept in a KV bucket.

The api is the system of record; the alerter keeps the latest event per site in the ALERTER_SITES
bucket, so every replica and a restart see the same settings. They apply on top of the environment's
rules: env defaults < env site < env printer < configured site < configured printer (each with its
per-kind overrides), and their recipients are added to every mail route's recipients for the site
(and a printer's own, printer_recipients, to the mail about that printer).
"""

from __future__ import annotations

import logging

import nats.js.errors
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from tonerwatch_alerter.rules import AlertRules, Layer, Limits
from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import ConsumerSpec
from tonerwatch_shared.events import (
    AlertLimits,
    AlertSettingsConfigured,
    Event,
    UnreadableEvent,
    parse_event,
)
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
        filter_subject=subjects.filter(sj.ALERT_SETTINGS_CONFIGURED, keyed=False),
        ack_wait_s=ack_wait_s,
    )


class SiteSettings:
    """Latest AlertSettingsConfigured per site in a KV bucket (highest revision wins)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def _get(self, site_id: str) -> tuple[AlertSettingsConfigured | None, int]:
        try:
            entry = await self.kv.get(sj.token(site_id))
        except nats.js.errors.KeyDeletedError as exc:
            return None, exc.entry.revision if exc.entry and exc.entry.revision else 0
        except nats.js.errors.KeyNotFoundError:
            return None, 0
        revision = entry.revision or 0
        if not entry.value:
            return None, revision
        try:
            event = parse_event(entry.value)
        except UnreadableEvent as exc:
            log.warning("unreadable alert settings of site %s, ignored: %s", site_id, exc)
            return None, revision
        return (event if isinstance(event, AlertSettingsConfigured) else None), revision

    async def load(self, site_id: str) -> AlertSettingsConfigured | None:
        """Return the settings configured for site_id (None: nothing configured, env rules only)."""
        return (await self._get(site_id))[0]

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
        key = sj.token(event.site_id)
        for _ in range(MAX_ATTEMPTS):
            current, kv_revision = await self._get(event.site_id)
            if current is not None and (current.revision, current.occurred_at) >= (
                event.revision,
                event.occurred_at,
            ):
                return False  # a redelivery, or overtaken by a newer change
            try:
                if kv_revision:
                    await self.kv.update(key, event.to_bytes(), last=kv_revision)
                else:
                    await self.kv.create(key, event.to_bytes())
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another replica wrote meanwhile: look again
            log.info(
                "alert settings of site %s at revision %d",
                event.site_id,
                event.revision,
                extra={"site": event.site_id},
            )
            return True
        raise RuntimeError(f"gave up storing alert settings of {event.site_id}: write conflicts")

    async def handle(self, event: Event, msg: Msg | None = None) -> None:
        """Consumer handler: keep AlertSettingsConfigured events, ignore anything else."""
        if isinstance(event, AlertSettingsConfigured):
            await self.store(event)


__all__ = ["BUCKET", "SiteSettings", "consumer_spec", "rules_of"]
