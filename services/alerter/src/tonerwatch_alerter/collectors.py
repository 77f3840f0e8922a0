"""Site collectors' health: one SiteOffline when a collector goes silent, one SiteOnline when it is back.

Judged by the occurred_at of the collector's statuses (they may arrive late, sourced from the
site after a cut), not by when they arrive. Each collector's watch lives in the ALERTER_COLLECTORS
KV bucket and every change is a compare-and-set carrying its events in an outbox, so of several
replicas checking at once only one raises the alert; event ids derive from the outage, so a
re-sent outbox is a duplicate JetStream drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tonerwatch_shared.bus import Bus, ConsumerSpec, event_type
from tonerwatch_shared.events import (
    CollectorStatus,
    Event,
    SiteOffline,
    SiteOnline,
    UnreadableEvent,
    parse_event,
)
from tonerwatch_shared.kv import KvConflict, ModelKv
from tonerwatch_shared.lifecycle import sleep_until_stopped
from tonerwatch_shared.subjects import Subjects, token

log = logging.getLogger(__name__)

BUCKET = "ALERTER_COLLECTORS"
_IDS = uuid.UUID("6f0c2b3e-3d4f-4a57-9a51-7c1c0e0d5a11")


class CollectorWatch(BaseModel):
    """What the alerter knows of one collector: when it last spoke, whether it is called offline."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    collector_id: str
    site_id: str
    last_seen: AwareDatetime
    offline_event_id: uuid.UUID | None = None
    outbox: tuple[str, ...] = Field(default=(), description="Events committed, not yet published")


def heard(
    watch: CollectorWatch | None,
    status: CollectorStatus,
    now: datetime,
    limit_s: float,
    source: str,
) -> CollectorWatch | None:
    """Return the watch after a status (None: nothing changes, e.g. an older status than known)."""
    if watch is not None and status.occurred_at <= watch.last_seen:
        return None
    base = watch or CollectorWatch(
        collector_id=status.collector_id, site_id=status.site_id, last_seen=status.occurred_at
    )
    new = base.model_copy(update={"last_seen": status.occurred_at, "site_id": status.site_id})
    fresh = now - status.occurred_at <= timedelta(seconds=limit_s)
    if base.offline_event_id is None or not fresh:
        # A status made during the outage and delivered late does not end it; a fresh one does.
        return new
    online = SiteOnline(
        event_id=uuid.uuid5(_IDS, f"online/{base.offline_event_id}"),
        source=source,
        site_id=status.site_id,
        collector_id=status.collector_id,
        offline_event_id=base.offline_event_id,
        last_seen=status.occurred_at,
    )
    return new.model_copy(
        update={"offline_event_id": None, "outbox": (*base.outbox, online.model_dump_json())}
    )


def silent(
    watch: CollectorWatch | None, now: datetime, limit_s: float, source: str
) -> CollectorWatch | None:
    """Return the watch with a SiteOffline when the collector is silent past the limit (else None)."""
    if watch is None or watch.offline_event_id is not None:
        return None
    if now - watch.last_seen <= timedelta(seconds=limit_s):
        return None
    offline = SiteOffline(
        event_id=uuid.uuid5(_IDS, f"offline/{watch.collector_id}/{watch.last_seen.isoformat()}"),
        source=source,
        site_id=watch.site_id,
        collector_id=watch.collector_id,
        last_seen=watch.last_seen,
        offline_after_s=limit_s,
    )
    return watch.model_copy(
        update={
            "offline_event_id": offline.event_id,
            "outbox": (*watch.outbox, offline.model_dump_json()),
        }
    )


def consumer_spec(subjects: Subjects, ack_wait_s: float = 30.0) -> ConsumerSpec:
    """Return the durable consumer of collectors' statuses every replica shares."""
    return ConsumerSpec(
        durable=subjects.name("alerter_collectors"),
        filter_subject=CollectorStatus.subject_filter(subjects),
        ack_wait_s=ack_wait_s,
    )


class CollectorWatcher:
    """Applies statuses as they come and looks for silent collectors every check_s."""

    def __init__(self, bus: Bus, kv: ModelKv[CollectorWatch], limit_s: float, source: str) -> None:
        self.bus = bus
        self.kv = kv
        self.limit_s = limit_s
        self.source = source
        self.published = 0

    async def handle(self, event: Event, msg: Msg | None = None) -> None:
        """Record a collector's status; resolve its site's offline alert when it is fresh."""
        if not isinstance(event, CollectorStatus):
            return
        now = datetime.now(UTC)
        await self._change(
            event.collector_id, lambda w: heard(w, event, now, self.limit_s, self.source)
        )

    async def check(self) -> None:
        """Raise SiteOffline for every collector silent past the limit, and send leftover outboxes."""
        now = datetime.now(UTC)
        for key in await self.kv.keys():
            await self._change(key, lambda w: silent(w, now, self.limit_s, self.source), key=key)

    async def run(self, stop: asyncio.Event, check_s: float) -> None:
        """Check every check_s until stop."""
        while not await sleep_until_stopped(stop, check_s):
            try:
                await self.check()
            except (KvConflict, nats.errors.Error, TimeoutError) as exc:
                log.warning("collector check: %r", exc)

    async def _change(
        self,
        collector_id: str,
        change: Callable[[CollectorWatch | None], CollectorWatch | None],
        *,
        key: str | None = None,
    ) -> None:
        key = key or token(collector_id)
        written = await self.kv.edit(key, change)
        watch = written.value if written is not None else (await self.kv.read(key)).value
        if watch is None or not watch.outbox:
            return
        for raw in watch.outbox:
            try:
                event = parse_event(raw)
            except UnreadableEvent as exc:
                log.error("dropped unreadable outbox entry: %s", exc)
                continue
            if await self.bus.publish(event):
                self.published += 1
                log.warning("%s: site %s (%s)", event_type(event), event.site_id, collector_id)
        sent = set(watch.outbox)

        def cleared(current: CollectorWatch | None) -> CollectorWatch | None:
            if current is None or not sent & set(current.outbox):
                return None
            return current.model_copy(
                update={"outbox": tuple(e for e in current.outbox if e not in sent)}
            )

        with contextlib.suppress(KvConflict):
            await self.kv.edit(key, cleared)


__all__ = ["BUCKET", "CollectorWatch", "CollectorWatcher", "consumer_spec", "heard", "silent"]
