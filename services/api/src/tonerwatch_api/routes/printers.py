"""REST /printers: the fleet, each printer, its readings and counters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlmodel import Session

from tonerwatch_api.db.tx import run_read_tx
from tonerwatch_api.deps import (
    CONFLICT,
    ERRORS,
    Operator,
    PointsAsked,
    PrinterId,
    ResolutionAsked,
    SearchAsked,
    SitesAsked,
    UntilAsked,
    Viewer,
    app_state,
    change,
    history_window,
    page_of,
)
from tonerwatch_api.domain import printers as printer_rules
from tonerwatch_api.domain.history import counter_history
from tonerwatch_api.domain.history_pages import HistoryCursor, HistorySort, history_page
from tonerwatch_api.domain.printers import (
    PRINTERS,
    patch_printer,
    printers_out,
    printers_query,
    readings,
)
from tonerwatch_api.listing import CURSOR_HELP, Page
from tonerwatch_api.schemas.common import RowId
from tonerwatch_api.schemas.history import CounterPage, ReadingPage
from tonerwatch_api.schemas.printers import (
    CounterOut,
    PollRequestOut,
    PrinterIn,
    PrinterOut,
    PrinterPage,
    PrinterPatch,
    ReadingOut,
)

router = APIRouter(prefix="/api/v1")
PrintersAsked = Annotated[Page, page_of(PRINTERS, "Printers", limit=100, most=500)]
PrinterStatus = Literal["critical", "offline", "attention", "pending", "ok", "paused"]


@router.get("/printers", response_model=PrinterPage, tags=["printers"], responses=ERRORS)
async def list_printers(
    request: Request,
    who: Viewer,
    page: PrintersAsked,
    site: SitesAsked = None,
    q: SearchAsked = None,
    status: Annotated[
        list[PrinterStatus] | None,
        Query(description="Only these statuses (repeat the parameter for several)"),
    ] = None,
    monitored: Annotated[bool | None, Query(description="Only (un)monitored printers")] = None,
    group: Annotated[
        list[RowId] | None,
        Query(description="Only printers of these groups (GET /groups; repeat for several)"),
    ] = None,
) -> PrinterPage:
    """Return the tenant's printers with supplies, sorted and filtered, a page at a time."""

    def work(s: Session) -> PrinterPage:
        base = printers_query(
            who.tenant_id,
            site_ids=site,
            search=q,
            statuses=status or (),
            monitored=monitored,
            group_ids=group,
        )
        rows, nxt = PRINTERS.fetch(s, base, page.order, page.cursor, page.limit)
        return PrinterPage(items=printers_out(s, rows), next_cursor=nxt)

    return await run_read_tx(app_state(request).engine, work)


@router.post(
    "/printers",
    response_model=PrinterOut,
    status_code=201,
    tags=["printers"],
    responses={**ERRORS, **CONFLICT},
)
async def add_printer(request: Request, body: PrinterIn, who: Operator) -> PrinterOut:
    """Add a printer by address; the poller is told (PrinterConfigured) and starts polling it."""
    st = app_state(request)

    def work(s: Session) -> PrinterOut:
        printer = printer_rules.add_printer(
            s, who, body, st.settings.default_site, st.source, st.settings.default_interval_s
        )
        return printers_out(s, [printer])[0]

    return await change(st, work)


@router.get(
    "/printers/{printer_id}", response_model=PrinterOut, tags=["printers"], responses=ERRORS
)
async def get_printer(request: Request, printer_id: PrinterId, who: Viewer) -> PrinterOut:
    """Return one printer with its supplies."""

    def work(s: Session) -> PrinterOut:
        return printers_out(s, [printer_rules.get_printer(s, who.tenant_id, printer_id)])[0]

    return await run_read_tx(app_state(request).engine, work)


@router.patch(
    "/printers/{printer_id}", response_model=PrinterOut, tags=["printers"], responses=ERRORS
)
async def update_printer(
    request: Request, printer_id: PrinterId, body: PrinterPatch, who: Operator
) -> PrinterOut:
    """Change a printer; the poller is told (PrinterConfigured, or PrinterRemoved when unmonitored)."""
    st = app_state(request)

    def work(s: Session) -> PrinterOut:
        printer = patch_printer(s, who, printer_id, body, st.source)
        return printers_out(s, [printer])[0]

    return await change(st, work)


@router.post(
    "/printers/{printer_id}/poll",
    response_model=PollRequestOut,
    status_code=202,
    tags=["printers"],
    responses={**ERRORS, **CONFLICT},
)
async def poll_printer(request: Request, printer_id: PrinterId, who: Operator) -> PollRequestOut:
    """Ask the poller to poll a monitored printer now (PollRequested); 409 when unmonitored."""
    st = app_state(request)

    def work(s: Session) -> PollRequestOut:
        event = printer_rules.request_poll(s, who, printer_id, st.source)
        return PollRequestOut(
            printer_id=event.printer_id,
            event_id=str(event.event_id),
            requested_at=event.occurred_at,
        )

    return await change(st, work)


@router.delete("/printers/{printer_id}", status_code=204, tags=["printers"], responses=ERRORS)
async def delete_printer(request: Request, printer_id: PrinterId, who: Operator) -> Response:
    """Stop monitoring and remove a printer (PrinterRemoved); its history is kept."""
    st = app_state(request)
    await change(st, lambda s: printer_rules.delete_printer(s, who, printer_id, st.source))
    return Response(status_code=204)


HistorySortAsked = Annotated[
    HistorySort,
    Query(description="occurred_at: oldest first; -occurred_at: newest first"),
]
HistoryCursorAsked = Annotated[str | None, Query(max_length=1000, description=CURSOR_HELP)]


def _cursor(cursor: str | None, sort: HistorySort) -> HistoryCursor | None:
    return HistoryCursor.decode(cursor, sort) if cursor else None


@router.get(
    "/printers/{printer_id}/readings",
    response_model=ReadingPage,
    tags=["printers"],
    responses=ERRORS,
)
async def printer_readings(
    request: Request,
    printer_id: PrinterId,
    who: Viewer,
    since: Annotated[datetime | None, Query(description="ISO 8601; default 7 days ago")] = None,
    until: UntilAsked = None,
    limit: PointsAsked = 10000,
    resolution: ResolutionAsked = "auto",
    sort: HistorySortAsked = "occurred_at",
    cursor: HistoryCursorAsked = None,
) -> ReadingPage:
    """Return supply levels over time, a page at a time (oldest first unless sort=-occurred_at):
    raw readings, or hourly/daily buckets. A page ends between two readings, never amid the
    supplies of one."""
    st = app_state(request)
    after = _cursor(cursor, sort)
    start, end, res = history_window(st, since, until, resolution, default_days=7)
    res = after.resolution if after else res

    def work(s: Session) -> ReadingPage:
        def fetch(a: datetime, b: datetime, n: int) -> list[ReadingOut]:
            return readings(
                s, who.tenant_id, printer_id, a, b, n, res, newest_first=sort == "-occurred_at"
            )

        items, nxt = history_page(
            fetch, lambda r: r.occurred_at, start, end, limit, sort, res, after
        )
        return ReadingPage(items=items, next_cursor=nxt)

    return await run_read_tx(st.engine, work)


@router.get(
    "/printers/{printer_id}/counters",
    response_model=CounterPage,
    tags=["printers"],
    responses=ERRORS,
)
async def printer_counters(
    request: Request,
    printer_id: PrinterId,
    who: Viewer,
    since: Annotated[datetime | None, Query(description="ISO 8601; default 30 days ago")] = None,
    until: UntilAsked = None,
    limit: PointsAsked = 10000,
    resolution: ResolutionAsked = "auto",
    sort: HistorySortAsked = "occurred_at",
    cursor: HistoryCursorAsked = None,
) -> CounterPage:
    """Return page counters over time, a page at a time (oldest first unless
    sort=-occurred_at): raw readings, or the last of each hour/day."""
    st = app_state(request)
    after = _cursor(cursor, sort)
    start, end, res = history_window(st, since, until, resolution, default_days=30)
    res = after.resolution if after else res

    def work(s: Session) -> CounterPage:
        printer = printer_rules.get_printer(s, who.tenant_id, printer_id)

        def fetch(a: datetime, b: datetime, n: int) -> list[CounterOut]:
            return [
                CounterOut(
                    occurred_at=p.at,
                    lifetime_pages=p.lifetime_pages,
                    mono_pages=p.mono_pages,
                    colour_pages=p.colour_pages,
                    duplex_pages=p.duplex_pages,
                    resolution=res,
                    count=p.count,
                )
                for p in counter_history(
                    s, printer.id, a, b, res, n, newest_first=sort == "-occurred_at"
                )
            ]

        items, nxt = history_page(
            fetch, lambda c: c.occurred_at, start, end, limit, sort, res, after
        )
        return CounterPage(items=items, next_cursor=nxt)

    return await run_read_tx(st.engine, work)
