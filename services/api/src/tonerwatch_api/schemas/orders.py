"""Order bodies: what REST /orders takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tonerwatch_shared.events import OrderStatus

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
    intended: bool = Field(
        default=False,
        description="Order although the supply already has an open order (else 409 naming it)",
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
    "batch_id": None,
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
    batch_id: str | None = Field(
        default=None, description="Orders placed together from one suggestion share it"
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


# --- suggestions ---------------------------------------------------------------------------------


_EXAMPLE_SUGGESTION: dict[str, Any] = {
    "key": "hq/W2030A",
    "site_id": "hq",
    "part_number": "W2030A",
    "page_yield": 2400,
    "from_catalogue": False,
    "quantity": 2,
    "most_urgent": "low",
    "days_to_empty": 4.5,
    "supplies": [
        {
            "printer_id": "p-3fa2c91b0d",
            "printer_name": "Finance HP",
            "supply_index": "1",
            "supply_description": "Black Cartridge HP W2030A",
            "colour": "black",
            "percent": 8.0,
            "rule": "low",
            "alert_id": "p-3fa2c91b0d:1:low",
            "days_to_empty": None,
        },
        {
            "printer_id": "p-77c0e1a2b3",
            "printer_name": "Reception HP",
            "supply_index": "1",
            "supply_description": "Black Cartridge HP W2030A",
            "colour": "black",
            "percent": 21.0,
            "rule": "forecast",
            "alert_id": "p-77c0e1a2b3:1:forecast",
            "days_to_empty": 4.5,
        },
    ],
}


class SuggestedSupply(BaseModel):
    """One supply of a suggestion line: which printer, how low, why now."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_SUGGESTION["supplies"][0]]})
    printer_id: str
    printer_name: str | None
    supply_index: str
    supply_description: str
    colour: str | None
    percent: float | None
    rule: str = Field(description="Why now: empty, critical, low, or forecast (within lead time)")
    alert_id: str | None = Field(
        description="The open alert it answers; null when only the api's forecast says so"
    )
    days_to_empty: float | None = Field(
        description="The forecast's days to empty (the alert's, else the api's for the supply)"
    )


class SuggestionOut(BaseModel):
    """What to order now for one site and part number: every supply of the site that needs it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_SUGGESTION]})
    key: str = Field(description="POST it to /orders/suggestions/order to order the line")
    site_id: str
    part_number: str | None = Field(description="None: neither the printer nor the catalogue knows")
    page_yield: int | None = Field(description="Pages per part, from the catalogue")
    from_catalogue: bool = Field(description="The printer reports no part number; the catalogue's")
    quantity: int = Field(description="How many to order: one per supply of the line")
    most_urgent: str = Field(description="The worst reason among its supplies")
    days_to_empty: float | None = Field(description="The soonest forecast among its supplies")
    supplies: list[SuggestedSupply]


class SuggestionList(BaseModel):
    """What to order now, most urgent first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_EXAMPLE_SUGGESTION]}]})
    items: list[SuggestionOut]


class SuggestionOrderIn(BaseModel):
    """Turn one suggestion line into orders (one per supply, one batch)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"key": "hq/W2030A"}]}
    )
    key: str = Field(min_length=1, max_length=300, description="The suggestion's key")


class BatchOut(BaseModel):
    """The orders one suggestion placed."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"batch_id": "b-1c2d3e4f5a6b", "items": [_EXAMPLE_OUT]}]}
    )
    batch_id: str | None
    items: list[OrderOut]
