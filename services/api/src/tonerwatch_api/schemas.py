"""Request and response bodies of the REST API (credentials go in, never come out)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from tonerwatch_shared.events import SnmpCredentials

SiteIdField = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
_HOST = r"^[A-Za-z0-9.:_\-\[\]%]+$"


class TokenOut(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime | None = None


_ADDRESS = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")


def _mail_address(value: str) -> str:
    value = value.strip()
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError("not an e-mail address (name@example.org)")
    return value


# The same shape AlertSettingsConfigured accepts, with a message a person understands.
MailAddress = Annotated[str, AfterValidator(_mail_address)]


class MeOut(BaseModel):
    """Who the caller is."""

    username: str
    role: str
    tenant_id: str
    scopes: list[str]


class SiteIn(BaseModel):
    """A new site."""

    model_config = ConfigDict(extra="forbid")
    id: str = SiteIdField
    name: str | None = Field(default=None, max_length=200)
    poll_interval_s: float | None = Field(
        default=None,
        ge=10,
        le=86400,
        description="Poll interval of the site's printers (unset: the default)",
    )


class SitePatch(BaseModel):
    """Changes to a site."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    poll_interval_s: float | None = Field(
        default=None,
        ge=10,
        le=86400,
        description="Poll interval of the site's printers; null: the default",
    )


class SiteOut(BaseModel):
    """A site."""

    id: str
    name: str
    tenant_id: str
    printers: int = 0
    poll_interval_s: float | None = None


class SupplyOut(BaseModel):
    """The current state of one supply."""

    index: str
    description: str
    part_number: str | None
    kind: str
    supply_class: str
    colour: str | None
    colour_hex: str | None
    level: int | None
    max_capacity: int | None
    percent: float | None
    state: str
    updated_at: datetime


class PrinterOut(BaseModel):
    """A printer as the API shows it: configuration (without secrets), identity, state, supplies."""

    id: str
    site_id: str
    name: str | None
    address: str
    port: int
    protocol: str
    monitored: bool
    interval_s: float
    snmp_version: str | None = Field(description="SNMP version in use; the secrets are never shown")
    location: str | None
    notes: str | None
    origin: str
    vendor: str | None
    model: str | None
    serial: str | None
    sys_object_id: str | None
    mac_address: str | None
    firmware: str | None
    reachable: bool | None
    last_seen_at: datetime | None
    last_error: str | None
    device_status: str | None
    printer_status: str | None
    status_errors: list[str]
    lifetime_pages: int | None
    last_bytes_sent: int | None
    last_bytes_received: int | None
    status: str = Field(description="offline, critical, attention, pending, ok or paused")
    open_alerts: int
    supplies: list[SupplyOut]


class PrinterPage(BaseModel):
    """One page of printers; pass next_cursor as cursor for the next."""

    items: list[PrinterOut]
    next_cursor: str | None


class PrinterIn(BaseModel):
    """A printer to monitor, added by address."""

    model_config = ConfigDict(extra="forbid")
    address: str = Field(min_length=1, max_length=255, pattern=_HOST, description="IP or host name")
    port: int = Field(default=161, ge=1, le=65535)
    site_id: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"
    )
    name: str | None = Field(default=None, max_length=200)
    location: str | None = Field(default=None, max_length=255)
    notes: str | None = Field(default=None, max_length=4000)
    protocol: Literal["snmp", "ipp", "both"] = "snmp"
    interval_s: float | None = Field(
        default=None,
        ge=10,
        le=86400,
        description="Poll interval; unset: the site's, else the default",
    )
    monitored: bool = True
    community: str | None = Field(
        default=None, min_length=1, max_length=255, description="SNMP v1/v2c community (write-only)"
    )
    credentials: SnmpCredentials | None = Field(
        default=None, description="Full SNMP credentials (write-only)"
    )

    @field_validator("address")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def snmp_credentials(self) -> SnmpCredentials:
        """Return the credentials to store (community shortcut over the default)."""
        creds = self.credentials or SnmpCredentials()
        if self.community is not None:
            creds = creds.model_copy(update={"community": self.community})
        return creds


class PrinterPatch(BaseModel):
    """Changes to a printer; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    location: str | None = Field(default=None, max_length=255)
    notes: str | None = Field(default=None, max_length=4000)
    monitored: bool | None = None
    interval_s: float | None = Field(default=None, ge=10, le=86400)
    address: str | None = Field(default=None, min_length=1, max_length=255, pattern=_HOST)
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["snmp", "ipp", "both"] | None = None
    community: str | None = Field(default=None, min_length=1, max_length=255)
    credentials: SnmpCredentials | None = None


class ReadingOut(BaseModel):
    """One supply level at one time (raw), or over one hour or day starting at occurred_at."""

    supply_index: str
    occurred_at: datetime
    percent: float | None = Field(description="The reading, or the bucket's mean")
    level: int | None = Field(description="The reading, or the bucket's last")
    resolution: str = Field(default="raw", description="raw, hourly or daily")
    min_percent: float | None = Field(default=None, description="Bucket minimum (rollups)")
    max_percent: float | None = Field(default=None, description="Bucket maximum (rollups)")
    last_percent: float | None = Field(default=None, description="Bucket's last (rollups)")
    count: int = Field(default=1, description="Raw readings merged into this point")


class CounterOut(BaseModel):
    """Page counters at one time (raw), or at the end of the hour or day starting at occurred_at."""

    occurred_at: datetime
    lifetime_pages: int | None = Field(description="Total pages printed (prtMarkerLifeCount)")
    mono_pages: int | None = Field(default=None, description="Black-and-white pages, if known")
    colour_pages: int | None = Field(default=None, description="Colour pages, if known")
    duplex_pages: int | None = Field(default=None, description="Two-sided sheets, if known")
    resolution: str = Field(default="raw", description="raw, hourly or daily")
    count: int = Field(default=1, description="Raw readings merged into this point")


class AlertOut(BaseModel):
    """One alert occurrence."""

    id: int
    alert_id: str
    printer_id: str
    printer_name: str | None
    rule: str
    severity: str
    message: str
    supply_index: str | None
    supply_description: str | None
    part_number: str | None
    colour: str | None
    percent: float | None
    days_to_empty: float | None
    raised_at: datetime
    resolved_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None


class ApiTokenIn(BaseModel):
    """A long-lived API token to create."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["read", "write"]] = Field(default=["read"], min_length=1)
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


class ApiTokenOut(BaseModel):
    """An API token (the secret only once, at creation)."""

    id: int
    name: str | None
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    token: str | None = None


class UserIn(BaseModel):
    """A user to create in the caller's tenant."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")
    password: str = Field(min_length=10, max_length=1000)
    role: Literal["admin", "operator", "viewer"] = "viewer"
    email: MailAddress | None = Field(default=None, description="Where their sites' alerts go")
    responsible_sites: list[str] = Field(
        default_factory=list, max_length=500, description="Sites they answer for ([]: all)"
    )


class UserOut(BaseModel):
    """A user (never the hash)."""

    id: int
    username: str
    role: str
    tenant_id: str
    disabled: bool
    created_at: datetime
