"""Orders and events: OrderChanged for each change, delivery when a supply is replaced."""

from __future__ import annotations

from typing import Literal

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import AuditEntry, Site, utcnow
from tonerwatch_api.db.orders import IN_TRANSIT, Order, _status
from tonerwatch_api.projections.outbox import add_to_outbox, follow_up_id
from tonerwatch_shared.events import OrderChanged, SupplyReplaced


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
