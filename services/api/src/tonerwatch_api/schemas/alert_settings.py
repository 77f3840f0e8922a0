"""Alert settings bodies: limits per site and printer, a user's mail and responsibility."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tonerwatch_api.schemas.common import EXAMPLE_PRINTER_ID, MailAddress, RowId
from tonerwatch_shared.printer.model import SupplyKind

MAX_RECIPIENTS = 50

# --- request and response bodies -----------------------------------------------------------------

Percent = Annotated[float | None, Field(default=None, ge=0, le=100)]
LeadDays = Annotated[float | None, Field(default=None, gt=0, le=365)]


class LimitsIn(BaseModel):
    """Thresholds of one scope; a field left out (null) uses the layer below (the alerter's defaults)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"low_percent": 30, "critical_percent": 10},
                {"lead_time_days": 14},
            ]
        },
    )
    low_percent: Percent = None
    critical_percent: Percent = None
    lead_time_days: LeadDays = None

    @field_validator("critical_percent")
    @classmethod
    def _critical_below_low(cls, v: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("low_percent")
        if v is not None and low is not None and v > low:
            raise ValueError(f"must not be above low_percent ({low:g})")
        return v


class PrinterLimitsIn(LimitsIn):
    """Thresholds of one printer, with per-supply-kind overrides."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"low_percent": 25, "kinds": {"waste_toner": {"low_percent": 10}}}]
        }
    )
    kinds: dict[SupplyKind, LimitsIn] = Field(default_factory=dict)


class AlertSettingsIn(LimitsIn):
    """A site's alert settings, whole: what is left out goes back to the defaults."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "low_percent": 25,
                    "critical_percent": 5,
                    "lead_time_days": 10,
                    "kinds": {"ink": {"low_percent": 30}},
                    "printers": {"p-3f2a9c01de": {"low_percent": 40}},
                    "recipients": ["facilities@example.org"],
                }
            ]
        },
    )
    kinds: dict[SupplyKind, LimitsIn] = Field(
        default_factory=dict, description="Per supply kind (toner, ink, drum, waste_toner ...)"
    )
    printers: dict[str, PrinterLimitsIn] = Field(
        default_factory=dict, description="Per printer id of this site"
    )
    recipients: list[MailAddress] = Field(
        default_factory=list,
        max_length=MAX_RECIPIENTS,
        description="Addresses mailed about this site's alerts",
    )


class AlertSettingsOut(AlertSettingsIn):
    """A site's alert settings, the revision last announced and everyone who gets its mail."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "site_id": "acme-hq",
                    "revision": 4,
                    "low_percent": 25,
                    "critical_percent": 5,
                    "lead_time_days": 10,
                    "kinds": {"toner": {"low_percent": 15}},
                    "printers": {EXAMPLE_PRINTER_ID: {"low_percent": 40, "kinds": {}}},
                    "recipients": ["facilities@acme.example"],
                    "responsible": ["jdoe@acme.example"],
                    "announced_recipients": ["facilities@acme.example", "jdoe@acme.example"],
                    "printer_recipients": {EXAMPLE_PRINTER_ID: ["finance-lead@acme.example"]},
                    "updated_by": "admin",
                    "updated_at": "2025-03-10T14:02:11Z",
                }
            ]
        },
    )
    site_id: str
    revision: int
    responsible: list[str] = Field(
        default_factory=list, description="Addresses of the users responsible for the site"
    )
    announced_recipients: list[str] = Field(
        default_factory=list, description="The site's addresses and the responsible users', once"
    )
    printer_recipients: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per printer: users answering for one of its groups (not for the site)",
    )
    updated_by: str | None = None
    updated_at: datetime | None = None


class UserAlertingIn(BaseModel):
    """A user's mail address for alerts, the sites and printer groups they answer for (both []: all)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"email": "jdoe@acme.example", "responsible_sites": ["acme-hq"]},
                {"email": "finance-lead@acme.example", "responsible_groups": [3]},
                {"email": "fleet-desk@acme.example", "responsible_sites": []},
            ]
        },
    )
    email: MailAddress | None = None
    responsible_sites: list[str] = Field(default_factory=list, max_length=500)
    responsible_groups: list[RowId] = Field(
        default_factory=list,
        max_length=500,
        description="Printer groups (GET /groups): mailed about their printers only",
    )


class UserAlertingOut(UserAlertingIn):
    """A user's alerting profile."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "user_id": 7,
                    "username": "jdoe",
                    "email": "jdoe@acme.example",
                    "responsible_sites": ["acme-hq"],
                    "responsible_groups": [3],
                }
            ]
        },
    )
    user_id: int
    username: str
