"""The orders table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text
from sqlmodel import Field as SqlField
from sqlmodel import SQLModel

from tonerwatch_api.db.models import UTCDateTime, utcnow
from tonerwatch_shared.events import OrderStatus


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
        # A retried POST /orders carries the same Idempotency-Key: one order, never two.
        Index("ux_orders_site_idempotency", "site_id", "idempotency_key", unique=True),
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
    # The caller's Idempotency-Key of the POST that placed it (None: given none).
    idempotency_key: str | None = SqlField(default=None, max_length=128)
    # Orders placed together from one suggestion line (the same part for several supplies of a site).
    batch_id: str | None = SqlField(default=None, max_length=32, index=True)
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

STATUSES: tuple[OrderStatus, ...] = ("requested", "ordered", "shipped", "delivered", "cancelled")
# The way forward; an order may skip steps (ordered → delivered) but never go back.
FLOW: tuple[OrderStatus, ...] = ("requested", "ordered", "shipped", "delivered")
OPEN_STATUSES = frozenset({"requested", "ordered", "shipped"})
FINAL_STATUSES = frozenset({"delivered", "cancelled"})
# What a new cartridge in the printer can be the delivery of: placed with a supplier, not just asked.
IN_TRANSIT: tuple[OrderStatus, ...] = ("ordered", "shipped")
# Quantity and part number are what the supplier ships: fixed once it shipped.
EDITABLE_ITEM = frozenset({"requested", "ordered"})


def _status(value: str) -> OrderStatus:
    for s in STATUSES:
        if s == value:
            return s
    raise ValueError(f"unknown order status {value!r}")
