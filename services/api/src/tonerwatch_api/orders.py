"""Orders of supplies for printers: the table, REST /orders, OrderChanged events, delivery on replacement.

An order is what an office or managed-print provider asks a supplier for so the right cartridge
arrives in time: it snapshots the printer's supply (description, part number, colour) when placed,
moves requested → ordered → shipped → delivered (or is cancelled; both ends are final), and every
change is audited and announced as OrderChanged, which the syncer forwards upstream. A new
cartridge seen in the printer (SupplyReplaced) is the delivery of the oldest order in transit for
that supply.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Column, Index, Text, case
from sqlmodel import Field as SqlField
from sqlmodel import Session, SQLModel, col, select

from tonerwatch_api import store
from tonerwatch_api.api import ERRORS, publish_outbox
from tonerwatch_api.auth import Operator, Viewer
from tonerwatch_api.db import run_tx
from tonerwatch_api.listing import CURSOR_HELP, Listing, SortField, field
from tonerwatch_api.models import (
    Alert,
    AuditEntry,
    Printer,
    Site,
    SupplyStateRow,
    UTCDateTime,
    utcnow,
)
from tonerwatch_api.params import OrderId
from tonerwatch_api.projections import add_to_outbox, follow_up_id
from tonerwatch_api.schemas import error_response
from tonerwatch_api.state import app_state
from tonerwatch_api.store import Principal
from tonerwatch_shared.events import OrderChanged, OrderStatus, SupplyReplaced

STATUSES: tuple[OrderStatus, ...] = ("requested", "ordered", "shipped", "delivered", "cancelled")
# The way forward; an order may skip steps (ordered → delivered) but never go back.
FLOW: tuple[OrderStatus, ...] = ("requested", "ordered", "shipped", "delivered")
OPEN_STATUSES = frozenset({"requested", "ordered", "shipped"})
FINAL_STATUSES = frozenset({"delivered", "cancelled"})
# What a new cartridge in the printer can be the delivery of: placed with a supplier, not just asked.
IN_TRANSIT: tuple[OrderStatus, ...] = ("ordered", "shipped")
# Quantity and part number are what the supplier ships: fixed once it shipped.
EDITABLE_ITEM = frozenset({"requested", "ordered"})
STATUS_LABEL = {
    "requested": "Requested",
    "ordered": "Ordered",
    "shipped": "Shipped",
    "delivered": "Delivered",
    "cancelled": "Cancelled",
}
ACTION_LABEL = {
    "ordered": "Mark ordered",
    "shipped": "Mark shipped",
    "delivered": "Mark delivered",
    "cancelled": "Cancel",
}


def next_statuses(status: str) -> list[OrderStatus]:
    """Return the statuses an order in status may move to (none once delivered or cancelled)."""
    if status in FINAL_STATUSES or status not in FLOW:
        return []
    later = list(FLOW[FLOW.index(status) + 1 :])
    return [*later, "cancelled"]


def _ts(nullable: bool = True) -> Any:
    return SqlField(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class Order(SQLModel, table=True):
    """Supplies ordered for one supply of one printer, from request to delivery."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_site_created", "site_id", "created_at"),
        Index("ix_orders_status_created", "status", "created_at"),
        # The printer page's orders, and the delivery lookup of a replaced supply.
        Index("ix_orders_printer_supply_status", "printer_id", "supply_index", "status"),
        Index("ix_orders_part_number", "part_number"),
        Index("ix_orders_delivery_event", "delivery_event_id"),
    )
    id: str = SqlField(primary_key=True, max_length=32)
    site_id: str = SqlField(foreign_key="sites.id", max_length=64)
    printer_id: str = SqlField(foreign_key="printers.id", max_length=128)
    supply_index: str = SqlField(max_length=64)
    # Snapshot of the supply when the order was placed (the printer may report it differently later).
    supply_description: str = SqlField(max_length=255)
    part_number: str | None = SqlField(default=None, max_length=100)
    colour: str | None = SqlField(default=None, max_length=64)
    quantity: int = 1
    status: str = SqlField(default="requested", max_length=16)
    supplier: str | None = SqlField(default=None, max_length=200)
    supplier_reference: str | None = SqlField(default=None, max_length=100)
    notes: str | None = SqlField(default=None, sa_column=Column(Text(), nullable=True))
    alert_id: str | None = SqlField(default=None, max_length=255)
    created_by: str | None = SqlField(default=None, max_length=100)
    # The SupplyReplaced that delivered it: a redelivered event finds it here and changes nothing.
    delivery_event_id: str | None = SqlField(default=None, max_length=36)
    created_at: datetime = SqlField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    ordered_at: datetime | None = _ts()
    shipped_at: datetime | None = _ts()
    delivered_at: datetime | None = _ts()
    cancelled_at: datetime | None = _ts()
    updated_at: datetime = SqlField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


ORDER_TABLES: tuple[type[SQLModel], ...] = (Order,)


# --- REST bodies ---------------------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    """Return value stripped, None when empty; refuse control characters (one-line fields)."""
    if value is None:
        return None
    value = value.strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must be one line of printable text")
    return value or None


def _clean_notes(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127 for ch in value):
        raise ValueError("must be printable text")
    return value or None


_EXAMPLE_IN: dict[str, Any] = {
    "printer_id": "p-3fa2c91b0d",
    "supply_index": "1",
    "quantity": 2,
    "part_number": "W2030X",
    "supplier": "Office Supplies Ltd",
    "notes": "Deliver to reception, 2nd floor",
    "alert_id": "p-3fa2c91b0d:1:low",
}


class OrderIn(BaseModel):
    """An order to place for one supply of a printer (its description and colour are copied)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE_IN]})
    printer_id: str = Field(min_length=1, max_length=128)
    supply_index: str = Field(
        min_length=1, max_length=64, description="The supply's index, as in the printer's supplies"
    )
    quantity: int = Field(default=1, ge=1, le=999)
    part_number: str | None = Field(
        default=None, max_length=100, description="Default: the part number the supply reports"
    )
    status: Literal["requested", "ordered"] = Field(
        default="requested", description="'ordered' when it was already placed with the supplier"
    )
    supplier: str | None = Field(default=None, max_length=200)
    supplier_reference: str | None = Field(
        default=None, max_length=100, description="PO or the supplier's order number"
    )
    notes: str | None = Field(default=None, max_length=2000)
    alert_id: str | None = Field(
        default=None, max_length=255, description="The printer's alert (alert_id) it answers"
    )

    @field_validator("part_number", "supplier", "supplier_reference", "alert_id")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _clean(value)

    @field_validator("notes")
    @classmethod
    def _notes(cls, value: str | None) -> str | None:
        return _clean_notes(value)


class OrderPatch(BaseModel):
    """Changes to an order: move its status on, or edit it (null clears supplier, reference, notes)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "ordered", "supplier_reference": "PO-2026-0412"},
                {"status": "cancelled", "notes": "Printer replaced by a new model"},
            ]
        },
    )
    status: OrderStatus | None = Field(
        default=None, description="Forward only: requested → ordered → shipped → delivered; cancel"
    )
    quantity: int | None = Field(default=None, ge=1, le=999, description="Until shipped")
    part_number: str | None = Field(default=None, max_length=100, description="Until shipped")
    supplier: str | None = Field(default=None, max_length=200)
    supplier_reference: str | None = Field(default=None, max_length=100)
    notes: str | None = Field(default=None, max_length=2000)

    @field_validator("part_number", "supplier", "supplier_reference")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _clean(value)

    @field_validator("notes")
    @classmethod
    def _notes(cls, value: str | None) -> str | None:
        return _clean_notes(value)


_EXAMPLE_OUT: dict[str, Any] = {
    "id": "o-5c1e9a7b3d20",
    "site_id": "hq",
    "printer_id": "p-3fa2c91b0d",
    "printer_name": "Finance HP",
    "supply_index": "1",
    "supply_description": "Black Cartridge HP W2030A",
    "part_number": "W2030X",
    "colour": "black",
    "quantity": 2,
    "status": "ordered",
    "open": True,
    "next_statuses": ["shipped", "delivered", "cancelled"],
    "supplier": "Office Supplies Ltd",
    "supplier_reference": "PO-2026-0412",
    "notes": "Deliver to reception, 2nd floor",
    "alert_id": "p-3fa2c91b0d:1:low",
    "created_by": "alice",
    "delivery_event_id": None,
    "created_at": "2026-11-27T09:12:00Z",
    "ordered_at": "2026-11-27T09:30:00Z",
    "shipped_at": None,
    "delivered_at": None,
    "cancelled_at": None,
    "updated_at": "2026-11-27T09:30:00Z",
}


class OrderOut(BaseModel):
    """An order, its state and when it reached each one."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_OUT]})
    id: str
    site_id: str
    printer_id: str
    printer_name: str | None
    supply_index: str
    supply_description: str
    part_number: str | None
    colour: str | None
    quantity: int
    status: OrderStatus
    open: bool = Field(description="Not delivered nor cancelled yet")
    next_statuses: list[OrderStatus] = Field(description="What PATCH status may move it to")
    supplier: str | None
    supplier_reference: str | None
    notes: str | None
    alert_id: str | None
    created_by: str | None
    delivery_event_id: str | None = Field(
        description="The SupplyReplaced event that marked it delivered (None: by hand, or not yet)"
    )
    created_at: datetime
    ordered_at: datetime | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    updated_at: datetime


class OrderPage(BaseModel):
    """One page of orders; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_EXAMPLE_OUT], "next_cursor": None}]}
    )
    items: list[OrderOut]
    next_cursor: str | None


def order_out(order: Order, printer_name: str | None) -> OrderOut:
    """Return the API view of an order."""
    return OrderOut(
        id=order.id,
        site_id=order.site_id,
        printer_id=order.printer_id,
        printer_name=printer_name,
        supply_index=order.supply_index,
        supply_description=order.supply_description,
        part_number=order.part_number,
        colour=order.colour,
        quantity=order.quantity,
        status=_status(order.status),
        open=order.status in OPEN_STATUSES,
        next_statuses=next_statuses(order.status),
        supplier=order.supplier,
        supplier_reference=order.supplier_reference,
        notes=order.notes,
        alert_id=order.alert_id,
        created_by=order.created_by,
        delivery_event_id=order.delivery_event_id,
        created_at=order.created_at,
        ordered_at=order.ordered_at,
        shipped_at=order.shipped_at,
        delivered_at=order.delivered_at,
        cancelled_at=order.cancelled_at,
        updated_at=order.updated_at,
    )


def _status(value: str) -> OrderStatus:
    for s in STATUSES:
        if s == value:
            return s
    raise ValueError(f"unknown order status {value!r}")


# --- changes -------------------------------------------------------------------------------------


def new_order_id() -> str:
    """Return a fresh order id (a safe NATS subject token, no count of other tenants' orders)."""
    return "o-" + secrets.token_hex(6)


def _invalid(name: str, message: str) -> RequestValidationError:
    """Return a 422 naming the body field, shaped like FastAPI's own validation errors."""
    return RequestValidationError([{"loc": ("body", name), "msg": message, "type": "value_error"}])


def order_event(
    order: Order,
    change: Literal["created", "status", "updated", "deleted"],
    *,
    source: str,
    previous_status: str | None = None,
    changed_by: str | None = None,
) -> OrderChanged:
    """Return the OrderChanged announcing the order as it is now."""
    return OrderChanged(
        source=source,
        site_id=order.site_id,
        printer_id=order.printer_id,
        order_id=order.id,
        change=change,
        status=_status(order.status),
        previous_status=_status(previous_status) if previous_status else None,
        supply_index=order.supply_index,
        supply_description=order.supply_description,
        part_number=order.part_number,
        colour=order.colour,
        quantity=order.quantity,
        supplier=order.supplier,
        supplier_reference=order.supplier_reference,
        notes=order.notes,
        alert_id=order.alert_id,
        changed_by=changed_by,
        created_at=order.created_at,
        ordered_at=order.ordered_at,
        shipped_at=order.shipped_at,
        delivered_at=order.delivered_at,
        cancelled_at=order.cancelled_at,
    )


def place_order(session: Session, who: Principal, body: OrderIn, source: str) -> Order:
    """Store a new order for a supply of one of the tenant's printers, queue OrderChanged; return it."""
    printer = store.get_printer(session, who.tenant_id, body.printer_id)
    supply = session.get(SupplyStateRow, (printer.id, body.supply_index))
    if supply is None:
        have = session.exec(
            select(SupplyStateRow.supply_index).where(SupplyStateRow.printer_id == printer.id)
        ).all()
        known = ", ".join(sorted(have)) or "none reported yet"
        raise _invalid(
            "supply_index",
            f"printer {printer.id!r} has no supply {body.supply_index!r} (it has: {known})",
        )
    if body.alert_id is not None:
        alert = session.exec(
            select(Alert.id).where(Alert.alert_id == body.alert_id, Alert.printer_id == printer.id)
        ).first()
        if alert is None:
            raise _invalid("alert_id", f"printer {printer.id!r} has no alert {body.alert_id!r}")
    now = utcnow()
    order = Order(
        id=new_order_id(),
        site_id=printer.site_id,
        printer_id=printer.id,
        supply_index=supply.supply_index,
        supply_description=supply.description,
        part_number=body.part_number or supply.part_number,
        colour=supply.colour,
        quantity=body.quantity,
        status=body.status,
        supplier=body.supplier,
        supplier_reference=body.supplier_reference,
        notes=body.notes,
        alert_id=body.alert_id,
        created_by=who.username,
        created_at=now,
        ordered_at=now if body.status == "ordered" else None,
        updated_at=now,
    )
    session.add(order)
    session.flush()
    add_to_outbox(session, order_event(order, "created", source=source, changed_by=who.username))
    store.audit(
        session,
        who,
        "order.create",
        order.id,
        printer_id=printer.id,
        supply_index=order.supply_index,
        part_number=order.part_number,
        quantity=order.quantity,
        status=order.status,
    )
    return order


def update_order(
    session: Session, who: Principal, order_id: str, body: OrderPatch, source: str
) -> Order:
    """Apply a PATCH: edits first (against the status it had), then the status move; return it.

    Raise Conflict for a move backwards or out of a final status, and for edits the order's
    status no longer allows (item after shipping, anything but notes once final).
    """
    order = get_order(session, who.tenant_id, order_id, lock=True)
    before = order.status
    given = body.model_dump(exclude_unset=True)
    edits: dict[str, Any] = {}
    for name in ("quantity", "part_number", "supplier", "supplier_reference", "notes"):
        if name not in given:
            continue
        value = given[name]
        if name == "quantity" and value is None:
            continue  # null quantity: unchanged (it cannot be cleared)
        if value != getattr(order, name):
            edits[name] = value
    if before in FINAL_STATUSES and set(edits) - {"notes"}:
        raise store.Conflict(f"order {order.id!r} is {before}: only its notes can change")
    item = sorted(set(edits) & {"quantity", "part_number"})
    if item and before not in EDITABLE_ITEM:
        raise store.Conflict(
            f"order {order.id!r} is {before}: {' and '.join(item)} can change only until shipped"
        )
    target = body.status
    moved = target is not None and target != before
    if moved:
        assert target is not None
        allowed = next_statuses(before)
        if target not in allowed:
            why = (
                f"it is {before}, which is final"
                if not allowed
                else f"it can go to: {', '.join(allowed)}"
            )
            raise store.Conflict(f"order {order.id!r} cannot go from {before} to {target}: {why}")
    if not edits and not moved:
        return order
    now = utcnow()
    for name, value in edits.items():
        setattr(order, name, value)
    if moved:
        assert target is not None
        order.status = target
        setattr(order, f"{target}_at", now)
    order.updated_at = now
    session.add(order)
    if edits:
        # Which fields, not the values: notes are free text.
        store.audit(session, who, "order.update", order.id, fields=sorted(edits))
    if moved:
        store.audit(session, who, f"order.{target}", order.id, previous_status=before)
    event = order_event(
        order,
        "status" if moved else "updated",
        source=source,
        previous_status=before,
        changed_by=who.username,
    )
    add_to_outbox(session, event)
    return order


def delete_order(session: Session, who: Principal, order_id: str, source: str) -> None:
    """Delete an order still only requested (placed ones are cancelled instead); queue OrderChanged."""
    order = get_order(session, who.tenant_id, order_id, lock=True)
    if order.status != "requested":
        raise store.Conflict(
            f"order {order.id!r} is {order.status}: only requested orders can be deleted; "
            "cancel it instead (PATCH status=cancelled)"
        )
    event = order_event(
        order, "deleted", source=source, previous_status=order.status, changed_by=who.username
    )
    session.delete(order)
    add_to_outbox(session, event)
    store.audit(
        session, who, "order.delete", order.id, printer_id=order.printer_id, quantity=order.quantity
    )


def deliver_on_replacement(session: Session, event: SupplyReplaced, source: str) -> Order | None:
    """Mark delivered the order a new cartridge answers; return it (None: no order in transit).

    The oldest order ordered or shipped for that printer and supply before the replacement is
    the one delivered. Idempotent: the event's id is kept on the order, so seeing the same event
    again changes nothing.
    """
    key = str(event.event_id)
    if session.exec(select(Order.id).where(Order.delivery_event_id == key)).first() is not None:
        return None
    candidates = session.exec(
        select(Order)
        .where(
            Order.printer_id == event.printer_id,
            Order.supply_index == event.supply_index,
            col(Order.status).in_(IN_TRANSIT),
        )
        .with_for_update()
    ).all()
    # Placed after the cartridge went in: not what was put in.
    placed = [
        (o.ordered_at or o.shipped_at or o.created_at, o.created_at, o.id, o) for o in candidates
    ]
    in_time = sorted((p for p in placed if p[0] <= event.occurred_at), key=lambda p: p[:3])
    if not in_time:
        return None
    order = in_time[0][3]
    before = order.status
    order.status = "delivered"
    order.delivered_at = event.occurred_at
    order.delivery_event_id = key
    order.updated_at = utcnow()
    session.add(order)
    site = session.get(Site, order.site_id)
    session.add(
        AuditEntry(
            at=event.occurred_at,
            username=None,
            tenant_id=site.tenant_id if site else None,
            action="order.delivered",
            target=order.id,
            detail={"previous_status": before, "supply_replaced": key},
        )
    )
    changed = order_event(order, "status", source=source, previous_status=before)
    # Derived from the cause: a replica applying the same event publishes the same id (deduped).
    add_to_outbox(
        session, changed.model_copy(update={"event_id": follow_up_id(event, "order-delivered")})
    )
    return order


# --- reading -------------------------------------------------------------------------------------


def get_order(session: Session, tenant_id: str, order_id: str, lock: bool = False) -> Order:
    """Return the tenant's order, or raise NotFound (another tenant's is not found either)."""
    order = session.get(Order, order_id, with_for_update=lock)
    site = session.get(Site, order.site_id) if order is not None else None
    if order is None or site is None or site.tenant_id != tenant_id:
        raise store.NotFound(f"order {order_id!r} not found")
    return order


def one_out(session: Session, order: Order) -> OrderOut:
    """Return the API view of one order (with its printer's name)."""
    return order_out(order, store.printer_name(session, order.printer_id))


_STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}
ORDERS = Listing(
    fields={
        "id": field(col(Order.id), "str"),
        "created_at": field(col(Order.created_at), "datetime"),
        "updated_at": field(col(Order.updated_at), "datetime"),
        "ordered_at": field(col(Order.ordered_at), "datetime"),
        "shipped_at": field(col(Order.shipped_at), "datetime"),
        "delivered_at": field(col(Order.delivered_at), "datetime"),
        # Lifecycle order (requested first, cancelled last), not the alphabet.
        "status": SortField(
            expr=case(
                *((col(Order.status) == s, r) for s, r in _STATUS_RANK.items()),
                else_=len(STATUSES),
            ),
            kind="int",
            value=lambda row: _STATUS_RANK.get(row.status, len(STATUSES)),
        ),
        "part_number": field(col(Order.part_number), "str"),
        "quantity": field(col(Order.quantity), "int"),
        "printer_id": field(col(Order.printer_id), "str"),
        "site_id": field(col(Order.site_id), "str"),
    },
    default="-created_at",
)


def find_orders(
    session: Session,
    tenant_id: str,
    *,
    site_id: str | None = None,
    printer_id: str | None = None,
    statuses: Sequence[str] = (),
    part_number: str | None = None,
    open_only: bool | None = None,
    scope: store.Scope | None = None,
    sort: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[OrderOut], str | None]:
    """Return one page of the tenant's orders matching the filters, and the next page's cursor."""
    parsed = ORDERS.parse_sort(sort)
    if site_id:
        store.get_site(session, tenant_id, site_id)  # another tenant's site: 404
    q = (
        select(Order, Printer.name)
        .join(Site, col(Site.id) == col(Order.site_id))
        .outerjoin(Printer, col(Printer.id) == col(Order.printer_id))
        .where(Site.tenant_id == tenant_id)
    )
    if site_id:
        q = q.where(Order.site_id == site_id)
    if scope is not None:  # a user's sites and printer groups
        q = q.where(store.in_scope(scope, Order.site_id, Order.printer_id))
    if printer_id:
        q = q.where(Order.printer_id == printer_id)
    if statuses:
        q = q.where(col(Order.status).in_(list(statuses)))
    if part_number:
        q = q.where(Order.part_number == part_number.strip())
    if open_only is True:
        q = q.where(col(Order.status).in_(sorted(OPEN_STATUSES)))
    elif open_only is False:
        q = q.where(col(Order.status).in_(sorted(FINAL_STATUSES)))
    kept, next_cursor = ORDERS.fetch(session, q, parsed, cursor, limit, row_of=lambda r: r[0])
    return [order_out(o, name) for o, name in kept], next_cursor


def printer_orders(
    session: Session, tenant_id: str, printer_id: str, limit: int = 50
) -> list[OrderOut]:
    """Return a printer's orders: open ones first (requested, ordered, shipped), newest first."""
    items, _ = find_orders(
        session, tenant_id, printer_id=printer_id, sort="status,-created_at", limit=limit
    )
    return items


# --- REST ----------------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1")
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
    sort: Annotated[str | None, Query(max_length=200, description=ORDERS.describe())] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Orders per page")] = 50,
    cursor: Annotated[str | None, Query(max_length=400, description=CURSOR_HELP)] = None,
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
            sort=sort,
            cursor=cursor,
            limit=limit,
        )
        return OrderPage(items=items, next_cursor=next_cursor)

    return await run_tx(app_state(request).engine, work)


@router.post(
    "/orders", response_model=OrderOut, status_code=201, tags=["orders"], responses=WRITE_ERRORS
)
async def create_order(request: Request, body: OrderIn, who: Operator) -> OrderOut:
    """Order supplies for a printer's supply (OrderChanged goes upstream through the syncer)."""
    st = app_state(request)

    def work(s: Session) -> OrderOut:
        return one_out(s, place_order(s, who, body, st.source))

    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


@router.get("/orders/{order_id}", response_model=OrderOut, tags=["orders"], responses=ERRORS)
async def get_order_view(request: Request, order_id: OrderId, who: Viewer) -> OrderOut:
    """Return one order."""

    def work(s: Session) -> OrderOut:
        return one_out(s, get_order(s, who.tenant_id, order_id))

    return await run_tx(app_state(request).engine, work)


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

    out = await run_tx(st.engine, work)
    await publish_outbox(st)
    return out


@router.delete("/orders/{order_id}", status_code=204, tags=["orders"], responses=WRITE_ERRORS)
async def remove_order(request: Request, order_id: OrderId, who: Operator) -> Response:
    """Delete an order while it is only requested; once placed, cancel it instead (409)."""
    st = app_state(request)
    await run_tx(st.engine, lambda s: delete_order(s, who, order_id, st.source))
    await publish_outbox(st)
    return Response(status_code=204)


__all__ = [
    "ORDERS",
    "ORDER_TABLES",
    "Order",
    "OrderIn",
    "OrderOut",
    "OrderPage",
    "OrderPatch",
    "deliver_on_replacement",
    "find_orders",
    "get_order",
    "next_statuses",
    "order_event",
    "place_order",
    "printer_orders",
    "router",
    "update_order",
]
