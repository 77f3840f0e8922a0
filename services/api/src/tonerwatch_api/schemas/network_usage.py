"""Network usage answer."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from tonerwatch_api.db.usage import DISCOVERY, POLLING, SYNC

# Examples in the OpenAPI document: one day of one site with one printer polled every 5 minutes.
_POLLING: dict[str, Any] = {
    "kind": POLLING,
    "bytes_sent": 118080,
    "bytes_received": 849600,
    "operations": 288,
    "total": 967680,
}
_DISCOVERY: dict[str, Any] = {
    "kind": DISCOVERY,
    "bytes_sent": 10496,
    "bytes_received": 1590,
    "operations": 1,
    "total": 12086,
}
_SYNC: dict[str, Any] = {
    "kind": SYNC,
    "bytes_sent": 1710,
    "bytes_received": 498,
    "operations": 2,
    "total": 2208,
}
_KINDS: dict[str, Any] = {POLLING: _POLLING, DISCOVERY: _DISCOVERY, SYNC: _SYNC}
_PRINTER: dict[str, Any] = {
    "printer_id": "p-3f2a9c01de",
    "site_id": "acme-hq",
    "name": "Reception colour",
    "address": "192.0.2.31",
    "polling": _POLLING,
    "bytes_per_poll": 3360.0,
    "sync": _SYNC,
}


class UsageTotals(BaseModel):
    """Bytes for one kind of work."""

    model_config = ConfigDict(json_schema_extra={"examples": [_POLLING]})
    kind: str
    bytes_sent: int = 0
    bytes_received: int = 0
    operations: int = Field(
        default=0, description="Polls, discovery sweeps, or events delivered upstream"
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        """Return bytes both ways."""
        return self.bytes_sent + self.bytes_received


class UsageDay(BaseModel):
    """One day, per kind of work."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"day": "2025-03-14", "kinds": _KINDS}]}
    )
    day: date
    kinds: dict[str, UsageTotals]


class UsageSite(BaseModel):
    """One site over the period, per kind of work."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"site_id": "acme-hq", "name": "ACME headquarters", "kinds": _KINDS}]
        }
    )
    site_id: str
    name: str
    kinds: dict[str, UsageTotals]


class UsagePrinter(BaseModel):
    """One printer's polling and upstream sync over the period."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PRINTER]})
    printer_id: str
    site_id: str
    name: str | None
    address: str | None
    polling: UsageTotals
    bytes_per_poll: float
    sync: UsageTotals = Field(
        default_factory=lambda: UsageTotals(kind=SYNC),
        description="Its alerts and replacements delivered upstream",
    )


class UsageOut(BaseModel):
    """Network impact of TonerWatch over a period, measured on the wire."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "since": "2025-03-14",
                    "until": "2025-03-14",
                    "days": [{"day": "2025-03-14", "kinds": _KINDS}],
                    "sites": [{"site_id": "acme-hq", "name": "ACME headquarters", "kinds": _KINDS}],
                    "printers": [_PRINTER],
                    "totals": _KINDS,
                }
            ]
        }
    )
    since: date
    until: date
    days: list[UsageDay]
    sites: list[UsageSite]
    printers: list[UsagePrinter]
    totals: dict[str, UsageTotals]
