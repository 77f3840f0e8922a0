"""Orders and events: OrderChanged for each change, delivery when a supply is replaced."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import AuditEntry, Site, utcnow
from tonerwatch_api.db.orders import FLOW, IN_TRANSIT, OPEN_STATUSES, Order, _status
from tonerwatch_api.projections.outbox import add_to_outbox, follow_up_id
from tonerwatch_shared.events import OrderChanged, OrderStatus, SupplyReplaced, UpstreamOrderUpdate

# Namespace of the created event's id: derived from the order id, so however often the order's
# creation is published or forwarded, the portal sees one id (its Idempotency-Key) for it.
_CREATED_NS = uuid.UUID("3c8e1f0a-6d2b-4a97-b5e4-0f9c7d1a2e63")


def created_event_id(order_id: str) -> uuid.UUID:
    """Return the event id of an order's created event (the upstream's Idempotency-Key)."""
    return uuid.uuid5(_CREATED_NS, order_id)


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
        event_id=created_event_id(order.id) if change == "created" else uuid.uuid4(),
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
        batch_id=order.batch_id,
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


# What each portal item moves an order to; a message moves nothing (it is only recorded).
UPSTREAM_STATUS: dict[str, OrderStatus] = {
    "order_confirmed": "ordered",
    "order_shipped": "shipped",
    "order_cancelled": "cancelled",
}


def _moves_forward(current: str, target: OrderStatus) -> bool:
    """Return whether target is ahead of current (cancel: only while the order is still open)."""
    if target == "cancelled":
        return current in OPEN_STATUSES
    if current not in FLOW:
        return False
    return FLOW.index(target) > FLOW.index(_status(current))


def apply_upstream_update(session: Session, event: UpstreamOrderUpdate, source: str) -> str:
    """Apply the portal's word on an order (audited) and announce the change; return the outcome.

    An order is only ever moved forward (a late "confirmed" after "shipped" changes nothing), and
    only an order of the event's site: a portal speaks for the sites it serves. The event's id
    (derived from the portal's item id) makes a repeat a duplicate before this runs.
    """
    site = session.get(Site, event.site_id)
    tenant = site.tenant_id if site else None
    order = session.get(Order, event.order_id, with_for_update=True) if event.order_id else None
    detail = {
        k: v
        for k, v in event.model_dump(
            mode="json",
            include={
                "item_id",
                "kind",
                "supplier_reference",
                "carrier",
                "tracking_number",
                "tracking_url",
                "reason",
                "text",
            },
        ).items()
        if v is not None
    }
    target = UPSTREAM_STATUS.get(event.kind)
    if order is None or order.site_id != event.site_id or target is None:
        # A message, or an order we do not have for that site: recorded, nothing moves.
        session.add(
            AuditEntry(
                at=event.at,
                username=None,
                tenant_id=tenant,
                action="upstream.message" if target is None else "upstream.unknown_order",
                target=event.order_id or event.item_id,
                detail=detail,
            )
        )
        return "applied" if target is None else "ignored"
    before = order.status
    if not _moves_forward(before, target):
        return "ignored"
    order.status = target
    order.supplier_reference = event.supplier_reference or order.supplier_reference
    if target == "ordered":
        order.ordered_at = order.ordered_at or event.at
    elif target == "shipped":
        order.shipped_at = event.at
        tracking = " ".join(
            x for x in (event.carrier, event.tracking_number, event.tracking_url) if x
        )
        if tracking:
            line = f"Shipped: {tracking}"
            order.notes = f"{order.notes}\n{line}" if order.notes else line
    else:
        order.cancelled_at = event.at
        if event.reason:
            line = f"Cancelled by the supplier: {event.reason}"
            order.notes = f"{order.notes}\n{line}" if order.notes else line
    order.updated_at = utcnow()
    session.add(order)
    session.add(
        AuditEntry(
            at=event.at,
            username=None,
            tenant_id=tenant,
            action=f"order.{target}",
            target=order.id,
            detail={"previous_status": before, "by": "upstream", **detail},
        )
    )
    changed = order_event(
        order, "status", source=source, previous_status=before, changed_by="upstream"
    )
    add_to_outbox(
        session, changed.model_copy(update={"event_id": follow_up_id(event, "order-upstream")})
    )
    return "applied"
