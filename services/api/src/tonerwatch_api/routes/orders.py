"""REST /orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import utcnow
from tonerwatch_api.db.orders import Order
from tonerwatch_api.db.tx import run_read_tx
from tonerwatch_api.deps import (
    ERRORS,
    Operator,
    OrderId,
    PrinterId,
    Viewer,
    app_state,
    change,
    page_of,
)
from tonerwatch_api.domain.coverage import printer_coverage
from tonerwatch_api.domain.orders import (
    ORDERS,
    delete_order,
    find_orders,
    get_order,
    one_out,
    place_order,
    update_order,
)
from tonerwatch_api.domain.suggestions import order_suggestion, suggestions
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.common import error_response
from tonerwatch_api.schemas.orders import (
    BatchOut,
    OrderIn,
    OrderOut,
    OrderPage,
    OrderPatch,
    SuggestionList,
    SuggestionOrderIn,
)
from tonerwatch_shared.coverage import Coverage
from tonerwatch_shared.events import OrderStatus

router = APIRouter(prefix="/api/v1")
OrdersAsked = Annotated[
    Page, page_of(ORDERS, "Orders", limit=50, most=500, sort_chars=200, cursor_chars=400)
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="A key of the caller's choosing: the same key again answers the order it "
        "placed (200) instead of placing another",
    ),
]
WRITE_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    409: error_response(
        409,
        "The order's status does not allow this change",
        "order 'o-8c1d2e3f4a5b' is delivered: only its notes can change",
    ),
    422: error_response(
        422,
        "Invalid input; the error names the field",
        "invalid request: alert_id: printer 'p-3f2a9c01de' has no alert 'p-3f2a9c01de:2:low'",
        [
            {
                "field": "alert_id",
                "location": "body",
                "message": "printer 'p-3f2a9c01de' has no alert 'p-3f2a9c01de:2:low'",
            }
        ],
    ),
}


@router.get("/orders", response_model=OrderPage, tags=["orders"], responses=ERRORS)
async def list_orders(
    request: Request,
    who: Viewer,
    page: OrdersAsked,
    site: Annotated[str | None, Query(max_length=64, description="Only this site")] = None,
    printer_id: Annotated[
        str | None, Query(max_length=128, description="Only this printer")
    ] = None,
    status: Annotated[
        list[OrderStatus] | None, Query(description="Only these statuses (repeat the parameter)")
    ] = None,
    part_number: Annotated[str | None, Query(max_length=100, description="Exact match")] = None,
    open: Annotated[
        bool | None,
        Query(description="true: requested, ordered or shipped; false: delivered or cancelled"),
    ] = None,
) -> OrderPage:
    """Return the tenant's orders, newest first unless sorted otherwise, a page at a time."""

    def work(s: Session) -> OrderPage:
        items, next_cursor = find_orders(
            s,
            who.tenant_id,
            site_id=site,
            printer_id=printer_id,
            statuses=status or (),
            part_number=part_number,
            open_only=open,
            order=page.order,
            cursor=page.cursor,
            limit=page.limit,
        )
        return OrderPage(items=items, next_cursor=next_cursor)

    return await run_read_tx(app_state(request).engine, work)


CREATE_ERRORS: dict[int | str, dict[str, object]] = {
    **WRITE_ERRORS,
    200: {"description": "A retry: the order this Idempotency-Key placed before (nothing new)"},
    409: error_response(
        409,
        "The supply already has an open order (send intended: true to order anyway), or the "
        "Idempotency-Key placed an order for another supply",
        "printer 'p-3fa2c91b0d' supply '1' already has open order 'o-5c1e9a7b3d20' "
        "(ordered, quantity 2); send intended: true to order again anyway",
    ),
}


@router.post(
    "/orders", response_model=OrderOut, status_code=201, tags=["orders"], responses=CREATE_ERRORS
)
async def create_order(
    request: Request,
    response: Response,
    body: OrderIn,
    who: Operator,
    idempotency_key: IdempotencyKey = None,
) -> OrderOut:
    """Order supplies for a printer's supply (OrderChanged goes upstream through the syncer).

    A second open order for the same supply is refused (409 naming the open one) unless
    `intended` is true. Send `Idempotency-Key` to make retries safe: the same key again answers
    the first order (200, `Idempotent-Replayed: true`) and nothing more goes upstream.
    """
    st = app_state(request)

    def work(s: Session) -> tuple[OrderOut, bool]:
        order, placed = place_order(s, who, body, st.source, idempotency_key)
        return one_out(s, order), placed

    out, placed = await change(st, work)
    if not placed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return out


@router.get("/orders/suggestions", response_model=SuggestionList, tags=["orders"], responses=ERRORS)
async def list_suggestions(
    request: Request,
    who: Viewer,
    site: Annotated[str | None, Query(max_length=64, description="Only this site")] = None,
) -> SuggestionList:
    """What to order now: one line per site and part number, every supply of the site that will
    run low within its lead time (an open low/critical/empty or forecast alert, or the api's own
    forecast, `days_to_empty`, within the lead time in force) and has no open order; most urgent
    first."""

    lead = app_state(request).settings.lead_time_days

    def work(s: Session) -> SuggestionList:
        return SuggestionList(items=suggestions(s, who.tenant_id, site, lead_time_days=lead))

    return await run_read_tx(app_state(request).engine, work)


@router.post(
    "/orders/suggestions/order",
    response_model=BatchOut,
    status_code=201,
    tags=["orders"],
    responses={
        **CREATE_ERRORS,
        200: {"description": "A retry: the orders this Idempotency-Key placed before"},
    },
)
async def order_suggested(
    request: Request,
    response: Response,
    body: SuggestionOrderIn,
    who: Operator,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=120,
            pattern=r"^[\x21-\x7e]+$",
            description="The same key again answers the orders it placed (200)",
        ),
    ] = None,
) -> BatchOut:
    """Turn one suggestion line into orders: one per supply, placed together (one batch_id); 404
    when the line is no longer suggested (ordered meanwhile, or nothing runs low)."""
    st = app_state(request)

    def work(s: Session) -> tuple[BatchOut, bool]:
        before = None
        if idempotency_key is not None:
            before = s.exec(
                select(Order.id).where(col(Order.idempotency_key).startswith(idempotency_key + "#"))
            ).first()
        orders = order_suggestion(
            s,
            who,
            body.key,
            st.source,
            idempotency_key,
            lead_time_days=st.settings.lead_time_days,
        )
        items = [one_out(s, o) for o in orders]
        return BatchOut(batch_id=orders[0].batch_id if orders else None, items=items), (
            before is None
        )

    out, placed = await change(st, work)
    if not placed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return out


@router.get(
    "/printers/{printer_id}/coverage", response_model=Coverage, tags=["orders"], responses=ERRORS
)
async def get_coverage(request: Request, printer_id: PrinterId, who: Viewer) -> Coverage:
    """The printer's service coverage (TONERWATCH_COVERAGE_RULES per vendor, default eConcierge's:
    30 days monitored since its first reading, then the second order placed through TonerWatch;
    lapses without orders for lapse_days)."""
    st = app_state(request)
    return await run_read_tx(
        st.engine,
        lambda s: printer_coverage(
            s, who.tenant_id, printer_id, st.settings.coverage_rules, utcnow()
        ),
    )


@router.get("/orders/{order_id}", response_model=OrderOut, tags=["orders"], responses=ERRORS)
async def get_order_view(request: Request, order_id: OrderId, who: Viewer) -> OrderOut:
    """Return one order."""

    def work(s: Session) -> OrderOut:
        return one_out(s, get_order(s, who.tenant_id, order_id))

    return await run_read_tx(app_state(request).engine, work)


@router.patch(
    "/orders/{order_id}", response_model=OrderOut, tags=["orders"], responses=WRITE_ERRORS
)
async def patch_order(
    request: Request, order_id: OrderId, body: OrderPatch, who: Operator
) -> OrderOut:
    """Move an order on (ordered, shipped, delivered, cancelled) or edit it; 409 when not allowed."""
    st = app_state(request)

    def work(s: Session) -> OrderOut:
        return one_out(s, update_order(s, who, order_id, body, st.source))

    return await change(st, work)


@router.delete("/orders/{order_id}", status_code=204, tags=["orders"], responses=WRITE_ERRORS)
async def remove_order(request: Request, order_id: OrderId, who: Operator) -> Response:
    """Delete an order while it is only requested; once placed, cancel it instead (409)."""
    st = app_state(request)
    await change(st, lambda s: delete_order(s, who, order_id, st.source))
    return Response(status_code=204)
