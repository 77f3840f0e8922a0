"""Site collectors from their statuses and the alerter's site-offline judgement."""

from __future__ import annotations

from sqlmodel import Session

from tonerwatch_api.db.collectors import CollectorRow
from tonerwatch_api.db.tx import DEFAULT_TENANT, ensure_site
from tonerwatch_shared.events import CollectorStatus, Event, SiteOffline, SiteOnline


def apply_collector_event(session: Session, event: Event) -> str:
    """Apply a CollectorStatus, SiteOffline or SiteOnline; return "applied" or "ignored".

    Idempotent and order-tolerant: a status older than the one kept changes nothing (statuses
    made during a cut arrive late); offline/online are judged by the alerter, kept as it says.
    """
    if isinstance(event, CollectorStatus):
        row = session.get(CollectorRow, event.collector_id)
        if row is not None and event.occurred_at <= row.last_seen:
            return "ignored"
        if row is None:
            ensure_site(session, event.site_id, DEFAULT_TENANT)
            row = CollectorRow(
                id=event.collector_id,
                site_id=event.site_id,
                version=event.version,
                started_at=event.started_at,
                last_seen=event.occurred_at,
            )
        row.site_id = event.site_id
        row.version = event.version
        row.printers = event.printers
        row.queue_depth = event.queue_depth
        row.started_at = event.started_at
        row.last_seen = event.occurred_at
        session.add(row)
        return "applied"
    if isinstance(event, SiteOffline | SiteOnline):
        row = session.get(CollectorRow, event.collector_id)
        if row is None:
            return "ignored"
        row.offline_since = event.occurred_at if isinstance(event, SiteOffline) else None
        session.add(row)
        return "applied"
    return "ignored"
