"""Orders of supplies for printers: placed, moved requested → ordered → shipped → delivered (or cancelled), audited, announced."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import case
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Alert, Printer, Site, SupplyStateRow, utcnow
from tonerwatch_api.db.orders import (
    EDITABLE_ITEM,
    FINAL_STATUSES,
    FLOW,
    OPEN_STATUSES,
    STATUSES,
    Order,
    _status,
)
from tonerwatch_api.domain.access import Principal, Scope, audit, in_scope
from tonerwatch_api.domain.errors import Conflict, Invalid, NotFound
from tonerwatch_api.domain.printers import get_printer, printer_name
from tonerwatch_api.domain.tenancy import get_site
from tonerwatch_api.listing import Listing, Sort, SortField, field
from tonerwatch_api.projections.orders import order_event
from tonerwatch_api.projections.outbox import add_to_outbox
from tonerwatch_api.schemas.orders import OrderIn, OrderOut, OrderPatch
from tonerwatch_shared.events import OrderStatus, SiteAccount
from tonerwatch_shared.printer.catalogue import find_part

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
        batch_id=order.batch_id,
        created_at=order.created_at,
        ordered_at=order.ordered_at,
        shipped_at=order.shipped_at,
        delivered_at=order.delivered_at,
        cancelled_at=order.cancelled_at,
        updated_at=order.updated_at,
    )


# --- changes -------------------------------------------------------------------------------------


def new_order_id() -> str:
    """Return a fresh order id (a safe NATS subject token, no count of other tenants' orders)."""
    return "o-" + secrets.token_hex(6)


def _invalid(name: str, message: str) -> Invalid:
    """Return a 422 naming the body field."""
    return Invalid((name,), message)


def catalogue_number(printer: Printer, supply: SupplyStateRow) -> str | None:
    """Return the catalogue's part number for a supply whose printer reports none (or None)."""
    part = find_part(printer.vendor, printer.model, supply.kind, supply.colour)
    return part.part_number if part is not None else None


def find_by_key(session: Session, tenant_id: str, key: str) -> Order | None:
    """Return the tenant's order placed with Idempotency-Key key, if any."""
    return session.exec(
        select(Order)
        .join(Site, col(Site.id) == col(Order.site_id))
        .where(Site.tenant_id == tenant_id, Order.idempotency_key == key)
    ).first()


def open_order_for(session: Session, printer_id: str, supply_index: str) -> Order | None:
    """Return the oldest open order (requested, ordered or shipped) of a printer's supply, if any."""
    return session.exec(
        select(Order)
        .where(
            Order.printer_id == printer_id,
            Order.supply_index == supply_index,
            col(Order.status).in_(sorted(OPEN_STATUSES)),
        )
        .order_by(col(Order.created_at), col(Order.id))
    ).first()


def duplicate_refusal(existing: Order) -> Conflict:
    """Return the 409 refusing a second open order of a supply, naming the open one."""
    return Conflict(
        f"printer {existing.printer_id!r} supply {existing.supply_index!r} already has open order "
        f"{existing.id!r} ({existing.status}, quantity {existing.quantity}); "
        "send intended: true to order again anyway"
    )


def place_order(
    session: Session,
    who: Principal,
    body: OrderIn,
    source: str,
    idempotency_key: str | None = None,
    *,
    batch_id: str | None = None,
) -> tuple[Order, bool]:
    """Store a new order for a supply of one of the tenant's printers, queue OrderChanged.

    Return (order, True) when placed now; (the earlier order, False) when idempotency_key was
    already used for the same printer supply (a retried submit: nothing new stored or sent).
    Raise Conflict when the supply already has an open order and body.intended is false, and
    when idempotency_key was used for another supply.
    """
    printer = get_printer(session, who.tenant_id, body.printer_id)
    if idempotency_key is not None:
        earlier = find_by_key(session, who.tenant_id, idempotency_key)
        if earlier is not None:
            if (earlier.printer_id, earlier.supply_index) != (printer.id, body.supply_index):
                raise Conflict(
                    f"Idempotency-Key {idempotency_key!r} was used for order {earlier.id!r} "
                    f"(printer {earlier.printer_id!r} supply {earlier.supply_index!r}); "
                    "use a new key for a new order"
                )
            return earlier, False
    # Locked: two submits for one supply at once are taken one after the other, so the second
    # sees the first's open order (PostgreSQL; SQLite has one writer at a time anyway).
    supply = session.get(SupplyStateRow, (printer.id, body.supply_index), with_for_update=True)
    if supply is None:
        have = session.exec(
            select(SupplyStateRow.supply_index).where(SupplyStateRow.printer_id == printer.id)
        ).all()
        known = ", ".join(sorted(have)) or "none reported yet"
        raise _invalid(
            "supply_index",
            f"printer {printer.id!r} has no supply {body.supply_index!r} (it has: {known})",
        )
    if idempotency_key is not None:
        # A retry racing its first attempt waited on the lock above: look again.
        earlier = find_by_key(session, who.tenant_id, idempotency_key)
        if earlier is not None:
            return earlier, False
    if not body.intended:
        existing = open_order_for(session, printer.id, supply.supply_index)
        if existing is not None:
            raise duplicate_refusal(existing)
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
        part_number=body.part_number or supply.part_number or catalogue_number(printer, supply),
        colour=supply.colour,
        quantity=body.quantity,
        status=body.status,
        supplier=body.supplier,
        supplier_reference=body.supplier_reference,
        notes=body.notes,
        alert_id=body.alert_id,
        created_by=who.username,
        idempotency_key=idempotency_key,
        batch_id=batch_id,
        created_at=now,
        ordered_at=now if body.status == "ordered" else None,
        updated_at=now,
    )
    session.add(order)
    session.flush()
    created = order_event(order, "created", source=source, changed_by=who.username)
    site = session.get(Site, printer.site_id)
    if site is not None and site.account:
        created = created.model_copy(update={"account": SiteAccount.model_validate(site.account)})
    add_to_outbox(session, created)
    audit(
        session,
        who,
        "order.create",
        order.id,
        printer_id=printer.id,
        supply_index=order.supply_index,
        part_number=order.part_number,
        quantity=order.quantity,
        status=order.status,
        intended=body.intended,
    )
    return order, True


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
        raise Conflict(f"order {order.id!r} is {before}: only its notes can change")
    item = sorted(set(edits) & {"quantity", "part_number"})
    if item and before not in EDITABLE_ITEM:
        raise Conflict(
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
            raise Conflict(f"order {order.id!r} cannot go from {before} to {target}: {why}")
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
        audit(session, who, "order.update", order.id, fields=sorted(edits))
    if moved:
        audit(session, who, f"order.{target}", order.id, previous_status=before)
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
        raise Conflict(
            f"order {order.id!r} is {order.status}: only requested orders can be deleted; "
            "cancel it instead (PATCH status=cancelled)"
        )
    event = order_event(
        order, "deleted", source=source, previous_status=order.status, changed_by=who.username
    )
    session.delete(order)
    add_to_outbox(session, event)
    audit(
        session, who, "order.delete", order.id, printer_id=order.printer_id, quantity=order.quantity
    )


# --- reading -------------------------------------------------------------------------------------


def get_order(session: Session, tenant_id: str, order_id: str, lock: bool = False) -> Order:
    """Return the tenant's order, or raise NotFound (another tenant's is not found either)."""
    order = session.get(Order, order_id, with_for_update=lock)
    site = session.get(Site, order.site_id) if order is not None else None
    if order is None or site is None or site.tenant_id != tenant_id:
        raise NotFound(f"order {order_id!r} not found")
    return order


def one_out(session: Session, order: Order) -> OrderOut:
    """Return the API view of one order (with its printer's name)."""
    return order_out(order, printer_name(session, order.printer_id))


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
    scope: Scope | None = None,
    order: Sort | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[OrderOut], str | None]:
    """Return one page of the tenant's orders matching the filters, and the next page's cursor."""
    parsed = order or ORDERS.parse_sort(None)
    if site_id:
        get_site(session, tenant_id, site_id)  # another tenant's site: 404
    q = (
        select(Order, Printer.name)
        .join(Site, col(Site.id) == col(Order.site_id))
        .outerjoin(Printer, col(Printer.id) == col(Order.printer_id))
        .where(Site.tenant_id == tenant_id)
    )
    if site_id:
        q = q.where(Order.site_id == site_id)
    if scope is not None:  # a user's sites and printer groups
        q = q.where(in_scope(scope, Order.site_id, Order.printer_id))
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
        session,
        tenant_id,
        printer_id=printer_id,
        order=ORDERS.parse_sort("status,-created_at"),
        limit=limit,
    )
    return items
