"""REST /alerts."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from sqlmodel import Session

from tonerwatch_api.db.tx import run_read_tx, run_tx
from tonerwatch_api.deps import ERRORS, AlertRowId, Operator, Viewer, app_state, page_of
from tonerwatch_api.domain.alerts import (
    ALERTS,
    acknowledge,
    acknowledge_many,
    alert_out,
    alerts_query,
)
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.printers import (
    AlertOut,
    AlertPage,
    AlertsAcknowledge,
    AlertsAcknowledged,
)
from tonerwatch_shared.printer.model import SupplyKind

router = APIRouter(prefix="/api/v1")
# Supply kinds, and "printer" for printer-wide alerts.
AlertKind = Enum(  # type: ignore[misc]
    "AlertKind",
    {k.name: k.value for k in SupplyKind} | {"PRINTER": "printer", "SITE": "site"},
    type=str,
)
AlertsAsked = Annotated[Page, page_of(ALERTS, "Alerts", limit=200, most=1000)]


@router.get("/alerts", response_model=AlertPage, tags=["alerts"], responses=ERRORS)
async def list_alerts(
    request: Request,
    who: Viewer,
    page: AlertsAsked,
    open: Annotated[bool, Query(description="Only unresolved alerts")] = True,
    printer_id: Annotated[
        str | None, Query(max_length=128, description="Only this printer")
    ] = None,
    site: Annotated[str | None, Query(max_length=64, description="Only this site")] = None,
    severity: Annotated[
        list[Literal["critical", "warning", "info"]] | None,
        Query(description="Only these severities (repeat the parameter for several)"),
    ] = None,
    kind: Annotated[
        list[AlertKind] | None,
        Query(
            description="Only alerts about these supply kinds; `printer` for printer-wide ones "
            "(jam, door, unreachable), `site` for site-wide ones (a site collector gone silent). "
            "Repeat the parameter for several"
        ),
    ] = None,
) -> AlertPage:
    """Return alerts, newest first unless sorted otherwise, a page at a time."""

    def work(s: Session) -> AlertPage:
        base = alerts_query(
            who.tenant_id,
            open_only=open,
            printer_id=printer_id,
            site_id=site,
            severities=severity or (),
            kinds=[k.value for k in kind or ()],
        )
        rows, nxt = ALERTS.fetch(
            s, base, page.order, page.cursor, page.limit, row_of=lambda r: r[0]
        )
        return AlertPage(items=[alert_out(a, name) for a, name in rows], next_cursor=nxt)

    return await run_read_tx(app_state(request).engine, work)


@router.post(
    "/alerts/acknowledge", response_model=AlertsAcknowledged, tags=["alerts"], responses=ERRORS
)
async def acknowledge_alerts(
    request: Request, body: AlertsAcknowledge, who: Operator
) -> AlertsAcknowledged:
    """Acknowledge several alerts at once; ids not of the caller's tenant come back in not_found."""

    def work(s: Session) -> AlertsAcknowledged:
        done, missing = acknowledge_many(s, who, body.ids)
        return AlertsAcknowledged(acknowledged=done, not_found=missing)

    return await run_tx(app_state(request).engine, work)


@router.post(
    "/alerts/{alert_id}/acknowledge", response_model=AlertOut, tags=["alerts"], responses=ERRORS
)
async def acknowledge_alert(request: Request, alert_id: AlertRowId, who: Operator) -> AlertOut:
    """Acknowledge an alert (someone is on it)."""
    return await run_tx(app_state(request).engine, lambda s: acknowledge(s, who, alert_id))
