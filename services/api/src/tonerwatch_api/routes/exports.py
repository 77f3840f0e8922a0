"""REST /export: the fleet and its page counters as CSV."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlmodel import Session

from tonerwatch_api.db.models import Printer
from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import (
    ERRORS,
    AppState,
    GroupsAsked,
    SearchAsked,
    SitesAsked,
    UntilAsked,
    Viewer,
    app_state,
    time_window,
)
from tonerwatch_api.domain.access import responsibility_of
from tonerwatch_api.domain.meters import (
    PRINTERS_PER_QUERY,
    MeterResolution,
    csv_cell,
    daily_rows,
    meter_csv,
    month_end_rows,
    raw_rows,
)
from tonerwatch_api.domain.printers import find_printers, printers_out
from tonerwatch_api.domain.tenancy import get_site
from tonerwatch_api.schemas.printers import PrinterOut

router = APIRouter(prefix="/api/v1")


CSV_COLUMNS = (
    "printer_id",
    "site_id",
    "name",
    "address",
    "vendor",
    "model",
    "serial",
    "location",
    "status",
    "reachable",
    "last_seen_at",
    "lifetime_pages",
    "supply",
    "part_number",
    "colour",
    "percent",
    "supply_state",
)


def fleet_csv(printers: list[PrinterOut]) -> str:
    """Return the fleet as CSV, one row per supply (a printer without supplies gets one row)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for p in printers:
        base = [
            p.id,
            p.site_id,
            p.name,
            p.address,
            p.vendor,
            p.model,
            p.serial,
            p.location,
            p.status,
            p.reachable,
            p.last_seen_at.isoformat() if p.last_seen_at else None,
            p.lifetime_pages,
        ]
        rows = [[s.description, s.part_number, s.colour, s.percent, s.state] for s in p.supplies]
        for extra in rows or [[None] * 5]:
            w.writerow([csv_cell(v) for v in base + extra])
    return buf.getvalue()


FLEET_CSV_RESPONSE: dict[str, object] = {
    "description": "CSV (UTF-8, header row), one row per supply; sent as an attachment",
    "content": {
        "text/csv": {
            "schema": {"type": "string"},
            "example": ",".join(CSV_COLUMNS)
            + "\r\np-3f2a9c01de,acme-hq,Reception colour,192.0.2.31,HP,"
            'HP Color LaserJet Pro M452nw,VNB3R12345,"HQ, 2nd floor, reception",attention,'
            "True,2025-03-14T08:55:12+00:00,48213,Cyan Toner CF411A,CF411A,cyan,8.0,low\r\n",
        }
    },
}


@router.get(
    "/export/printers.csv",
    tags=["export"],
    responses={200: FLEET_CSV_RESPONSE, **ERRORS},
    response_class=Response,
)
async def export_printers(
    request: Request,
    who: Viewer,
    site: SitesAsked = None,
    q: SearchAsked = None,
    group: GroupsAsked = None,
    scope: Annotated[
        Literal["mine"] | None,
        Query(description="mine: only what the caller answers for (their sites and groups)"),
    ] = None,
) -> Response:
    """Return the fleet (printers and supplies) as CSV."""

    def work(s: Session) -> str:
        mine = responsibility_of(s, who) if scope == "mine" else None
        fleet = find_printers(
            s, who.tenant_id, site_ids=site, search=q, group_ids=group, scope=mine
        )
        return fleet_csv(printers_out(s, fleet))

    body = await run_tx(app_state(request).engine, work)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="tonerwatch-fleet-{stamp}.csv"'},
    )


METER_CSV_RESPONSE: dict[str, object] = {
    "description": "CSV (UTF-8, header row): one row per printer and UTC day (raw: per poll, "
    "read_at instead of date); sent as an attachment",
    "content": {
        "text/csv": {
            "schema": {"type": "string"},
            "example": "printer_id,name,site_id,serial,model,date,lifetime_pages,mono_pages,"
            "colour_pages,duplex_pages\r\np-3f2a9c01de,Reception colour,acme-hq,VNB3R12345,"
            "HP Color LaserJet Pro M452nw,2025-03-13,48213,30120,18093,\r\n",
        }
    },
}
METER_RAW_MAX_SPAN = timedelta(days=7)  # every poll of a fleet: ~2,000 rows per printer a week
METER_MAX_SPAN = timedelta(days=3660)


@router.get(
    "/export/meters.csv",
    tags=["export"],
    responses={200: METER_CSV_RESPONSE, **ERRORS},
    response_class=StreamingResponse,
)
async def export_meters(
    request: Request,
    who: Viewer,
    since: Annotated[datetime | None, Query(description="ISO 8601; default 30 days ago")] = None,
    until: UntilAsked = None,
    site: SitesAsked = None,
    resolution: Annotated[
        Literal["daily", "raw", "month_end"],
        Query(
            description="daily: one row per printer per UTC day; raw: every poll (7 days max); "
            "month_end: one row per printer per UTC month, its meters at the month's end (billing)"
        ),
    ] = "daily",
    scope: Annotated[
        Literal["mine"] | None,
        Query(description="mine: only what the caller answers for (their sites and groups)"),
    ] = None,
) -> StreamingResponse:
    """Return page counter (meter) readings as CSV: printer, site, serial, model, date, pages."""
    st = app_state(request)
    start, end = time_window(since, until, default_days=30)
    max_span = METER_RAW_MAX_SPAN if resolution == "raw" else METER_MAX_SPAN
    if end - start > max_span:
        raise HTTPException(422, f"since: {resolution} export spans at most {max_span.days} days")

    def printers(s: Session) -> list[Printer]:
        for one in site or ():
            get_site(s, who.tenant_id, one)  # another tenant's site: 404
        mine = responsibility_of(s, who) if scope == "mine" else None
        return find_printers(s, who.tenant_id, site_ids=site, scope=mine)

    fleet = await run_tx(st.engine, printers)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        meter_chunks(st, fleet, start, end, resolution),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="tonerwatch-meters-{stamp}.csv"'},
    )


async def meter_chunks(
    st: AppState,
    fleet: list[Printer],
    start: datetime,
    end: datetime,
    resolution: MeterResolution,
) -> AsyncIterator[str]:
    """Yield the meter CSV a few hundred printers at a time, so memory stays bounded."""
    rows_of = {"daily": daily_rows, "raw": raw_rows, "month_end": month_end_rows}[resolution]
    yield meter_csv([], [], resolution, header=True)
    for i in range(0, len(fleet), PRINTERS_PER_QUERY):
        chunk = fleet[i : i + PRINTERS_PER_QUERY]
        ids = [p.id for p in chunk]
        rows = await run_tx(
            st.engine, functools.partial(rows_of, printer_ids=ids, since=start, until=end)
        )
        yield meter_csv(chunk, rows, resolution, header=False)
