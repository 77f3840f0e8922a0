"""Site collectors from their statuses and the alerter's site-offline judgement.

A SiteOffline is also a site-wide alert (printer_id None, site_id set) in the alerts list, resolved
by the SiteOnline that names it: one alert per outage, not one per printer.
"""

from __future__ import annotations

from datetime import UTC

from sqlmodel import Session, select

from tonerwatch_api.db.collectors import CollectorRow
from tonerwatch_api.db.models import Alert
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
        alerted = _site_alert(session, event)
        row = session.get(CollectorRow, event.collector_id)
        if row is None:
            return "applied" if alerted else "ignored"
        row.offline_since = event.occurred_at if isinstance(event, SiteOffline) else None
        session.add(row)
        return "applied"
    return "ignored"


SITE_OFFLINE_RULE = "site_offline"


def _site_alert(session: Session, event: SiteOffline | SiteOnline) -> bool:
    """Raise the site's alert for a SiteOffline, resolve it for its SiteOnline; True if changed."""
    if isinstance(event, SiteOffline):
        alert_id = str(event.event_id)
        if session.exec(select(Alert).where(Alert.alert_id == alert_id)).first() is not None:
            return False  # redelivered
        ensure_site(session, event.site_id, DEFAULT_TENANT)
        session.add(
            Alert(
                alert_id=alert_id,
                printer_id=None,
                site_id=event.site_id,
                rule=SITE_OFFLINE_RULE,
                severity="critical",
                message=(
                    f"Site {event.site_id} offline: its collector {event.collector_id} "
                    f"has not been heard since {event.last_seen.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
                ),
                raised_at=event.occurred_at,
            )
        )
        return True
    changed = False
    for alert in session.exec(
        select(Alert).where(Alert.alert_id == str(event.offline_event_id))
    ).all():
        if alert.resolved_at is None:
            alert.resolved_at = event.occurred_at
            session.add(alert)
            changed = True
    return changed
