"""Alerts: found, listed, acknowledged."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Alert, Printer, Site
from tonerwatch_api.domain.access import Principal, Scope, audit, in_scope
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.listing import Listing, field
from tonerwatch_api.schemas.printers import AlertOut

PRINTER_WIDE = "printer"
SITE_WIDE = "site"


def alert_site() -> Any:
    """Return the site of an alert row: its own (site-wide alert) or its printer's."""
    return func.coalesce(col(Alert.site_id), col(Printer.site_id))


def alerts_query(
    tenant_id: str,
    *,
    open_only: bool,
    printer_id: str | None = None,
    site_id: str | None = None,
    severities: Sequence[str] = (),
    kinds: Sequence[str] = (),
    site_ids: Sequence[str] | None = None,
    scope: Scope | None = None,
) -> Any:
    """Return the select of (alert, printer name) of the tenant matching the list filters.

    Site-wide alerts (a site collector gone silent: no printer) are the site's: they match the
    site filters, and the scope by site, never a printer id or a supply kind but `printer`'s
    neighbour `site`.
    """
    site = alert_site()
    q = (
        select(Alert, Printer.name)
        .outerjoin(Printer, col(Printer.id) == col(Alert.printer_id))
        .join(Site, col(Site.id) == site)
        .where(Site.tenant_id == tenant_id)
    )
    if open_only:
        q = q.where(col(Alert.resolved_at).is_(None))
    if printer_id:
        q = q.where(Alert.printer_id == printer_id)
    if severities:
        q = q.where(col(Alert.severity).in_(list(severities)))
    if kinds:
        # "printer": alerts about the whole printer (jam, door, unreachable), which have no kind;
        # "site": alerts about a whole site (its collector gone silent), which have no printer.
        named = [k for k in kinds if k not in (PRINTER_WIDE, SITE_WIDE)]
        conds: list[ColumnElement[bool]] = [col(Alert.kind).in_(named)] if named else []
        if PRINTER_WIDE in kinds:
            conds.append(
                and_(col(Alert.supply_index).is_(None), col(Alert.printer_id).is_not(None))
            )
        if SITE_WIDE in kinds:
            conds.append(col(Alert.printer_id).is_(None))
        q = q.where(or_(*conds))
    if site_id:
        q = q.where(site == site_id)
    if site_ids is not None:
        q = q.where(site.in_(list(site_ids)))
    if scope is not None:
        q = q.where(in_scope(scope, site, Alert.printer_id))
    return q


def find_alerts(
    session: Session,
    tenant_id: str,
    *,
    open_only: bool,
    printer_id: str | None = None,
    limit: int = 200,
    site_ids: Sequence[str] | None = None,
    scope: Scope | None = None,
) -> list[AlertOut]:
    """Return the tenant's alerts, newest first (only those of site_ids, and of scope, when given)."""
    q = alerts_query(
        tenant_id, open_only=open_only, printer_id=printer_id, site_ids=site_ids, scope=scope
    )
    q = q.order_by(col(Alert.raised_at).desc(), col(Alert.id).desc()).limit(limit)
    return [alert_out(a, name) for a, name in session.exec(q).all()]


def alert_out(a: Alert, printer_name: str | None) -> AlertOut:
    """Return the API view of an alert."""
    return AlertOut(
        id=a.id or 0,
        alert_id=a.alert_id,
        printer_id=a.printer_id,
        printer_name=printer_name,
        site_id=a.site_id,
        rule=a.rule,
        severity=a.severity,
        message=a.message,
        supply_index=a.supply_index,
        supply_description=a.supply_description,
        part_number=a.part_number,
        colour=a.colour,
        percent=a.percent,
        days_to_empty=a.days_to_empty,
        raised_at=a.raised_at,
        resolved_at=a.resolved_at,
        acknowledged_by=a.acknowledged_by,
        acknowledged_at=a.acknowledged_at,
        kind=a.kind,
        superseded_by=a.superseded_by,
    )


def acknowledge(session: Session, who: Principal, alert_row_id: int) -> AlertOut:
    """Mark an alert acknowledged by the caller (idempotent)."""
    done, missing = acknowledge_many(session, who, [alert_row_id])
    if missing:
        raise NotFound(f"alert {alert_row_id} not found")
    return done[0]


def acknowledge_many(
    session: Session, who: Principal, alert_row_ids: Sequence[int]
) -> tuple[list[AlertOut], list[int]]:
    """Acknowledge the tenant's alerts among ids; return (them, ids not found). Idempotent."""
    wanted = list(dict.fromkeys(alert_row_ids))
    rows = session.exec(
        select(Alert, Printer.name)
        .outerjoin(Printer, col(Printer.id) == col(Alert.printer_id))
        .join(Site, col(Site.id) == alert_site())
        .where(Site.tenant_id == who.tenant_id, col(Alert.id).in_(wanted))
    ).all()
    found = {a.id: (a, name) for a, name in rows}
    now = datetime.now(UTC)
    done = []
    for row_id in wanted:
        if row_id not in found:
            continue
        alert, name = found[row_id]
        if alert.acknowledged_at is None:
            alert.acknowledged_at = now
            alert.acknowledged_by = who.username
            session.add(alert)
            audit(session, who, "alert.acknowledge", str(alert.id), alert_id=alert.alert_id)
        done.append(alert_out(alert, name))
    return done, [i for i in wanted if i not in found]


def open_alert_counts(session: Session) -> dict[str, int]:
    """Return unresolved alerts per severity (all tenants; for metrics)."""
    q = (
        select(Alert.severity, func.count())
        .where(col(Alert.resolved_at).is_(None))
        .group_by(col(Alert.severity))
    )
    return {sev: int(n) for sev, n in session.exec(q).all()}


ALERTS = Listing(
    fields={
        "id": field(col(Alert.id), "int"),
        "raised_at": field(col(Alert.raised_at), "datetime"),
        "resolved_at": field(col(Alert.resolved_at), "datetime"),
        "acknowledged_at": field(col(Alert.acknowledged_at), "datetime"),
        "severity": field(col(Alert.severity), "str"),
        "rule": field(col(Alert.rule), "str"),
        "kind": field(col(Alert.kind), "str"),
        "printer_id": field(col(Alert.printer_id), "str"),
        "percent": field(col(Alert.percent), "float"),
        "days_to_empty": field(col(Alert.days_to_empty), "float"),
    },
    default="-raised_at",
)
