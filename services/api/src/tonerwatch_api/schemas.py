"""Request and response bodies of the REST API (credentials go in, never come out)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from tonerwatch_shared.events import SnmpCredentials

SiteIdField = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
_HOST = r"^[A-Za-z0-9.:_\-\[\]%]+$"

# Examples in the OpenAPI document: one fleet (tenant "acme", site "acme-hq") and one printer, an
# HP Color LaserJet Pro M452nw whose cyan runs low, at a documentation address (RFC 5737) so that an
# example pasted into a script or a test never reaches a real host.
EXAMPLE_PRINTER_ID = "p-3f2a9c01de"
_SUPPLY_BLACK: dict[str, Any] = {
    "index": "1",
    "description": "Black Toner CF410A",
    "part_number": "CF410A",
    "kind": "toner",
    "supply_class": "consumed",
    "colour": "black",
    "colour_hex": "#000000",
    "level": 64,
    "max_capacity": 100,
    "percent": 64.0,
    "state": "ok",
    "updated_at": "2025-03-14T08:55:12Z",
}
_SUPPLY_CYAN: dict[str, Any] = {
    "index": "2",
    "description": "Cyan Toner CF411A",
    "part_number": "CF411A",
    "kind": "toner",
    "supply_class": "consumed",
    "colour": "cyan",
    "colour_hex": "#00FFFF",
    "level": 8,
    "max_capacity": 100,
    "percent": 8.0,
    "state": "low",
    "updated_at": "2025-03-14T08:55:12Z",
}
_PRINTER: dict[str, Any] = {
    "id": EXAMPLE_PRINTER_ID,
    "site_id": "acme-hq",
    "name": "Reception colour",
    "address": "192.0.2.31",
    "port": 161,
    "protocol": "snmp",
    "monitored": True,
    "interval_s": 300.0,
    "snmp_version": "2c",
    "location": "HQ, 2nd floor, reception",
    "notes": "Toner is kept in the supply room B2.14",
    "origin": "discovered",
    "vendor": "HP",
    "model": "HP Color LaserJet Pro M452nw",
    "serial": "VNB3R12345",
    "sys_object_id": "1.3.6.1.4.1.11.2.3.9.1",
    "mac_address": "a0:b3:cc:4d:5e:6f",
    "firmware": "2406048_029712",
    "reachable": True,
    "last_seen_at": "2025-03-14T08:55:12Z",
    "last_error": None,
    "device_status": "warning",
    "printer_status": "idle",
    "status_errors": ["low_toner"],
    "lifetime_pages": 48213,
    "last_bytes_sent": 410,
    "last_bytes_received": 2950,
    "status": "attention",
    "open_alerts": 1,
    "supplies": [_SUPPLY_BLACK, _SUPPLY_CYAN],
}
_SITE: dict[str, Any] = {
    "id": "acme-hq",
    "name": "ACME headquarters",
    "tenant_id": "acme",
    "printers": 42,
    "poll_interval_s": 300.0,
}
_TOKEN: dict[str, Any] = {
    "id": 12,
    "name": "nightly fleet export",
    "scopes": ["read"],
    "created_at": "2025-03-14T09:00:00Z",
    "expires_at": "2025-06-12T09:00:00Z",
    "last_used_at": "2025-03-15T02:00:04Z",
    "revoked_at": None,
    "token": None,
}
_USER: dict[str, Any] = {
    "id": 7,
    "username": "jdoe",
    "role": "operator",
    "tenant_id": "acme",
    "disabled": False,
    "created_at": "2025-01-20T10:12:00Z",
}
_ALERT: dict[str, Any] = {
    "id": 1873,
    "alert_id": f"{EXAMPLE_PRINTER_ID}:2:low",
    "printer_id": EXAMPLE_PRINTER_ID,
    "printer_name": "Reception colour",
    "rule": "low",
    "severity": "warning",
    "message": "Toner low: Reception colour (HP Color LaserJet Pro M452nw) — Cyan Toner CF411A 8%",
    "supply_index": "2",
    "supply_description": "Cyan Toner CF411A",
    "part_number": "CF411A",
    "colour": "cyan",
    "percent": 8.0,
    "days_to_empty": 9.4,
    "raised_at": "2025-03-13T16:20:05Z",
    "resolved_at": None,
    "acknowledged_by": "jdoe",
    "acknowledged_at": "2025-03-14T07:41:30Z",
}


_PORT_ERROR: dict[str, Any] = {
    "field": "port",
    "location": "body",
    "message": "Input should be less than or equal to 65535",
}
# The body of every 422, whatever raised it (app.py documents it on every operation that has one).
VALIDATION_ERROR_EXAMPLE: dict[str, Any] = {
    "error": "invalid request: port: Input should be less than or equal to 65535",
    "status": 422,
    "fields": [_PORT_ERROR],
}


class FieldError(BaseModel):
    """One input at fault in a 422 answer."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PORT_ERROR]})
    field: str = Field(description="Dotted name of the field (nested fields: credentials.version)")
    location: str = Field(description="body, query, path, header or form")
    message: str


class ErrorOut(BaseModel):
    """Every error answer of the API: a message, the status again and, on 422, the fields at fault."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"error": f"printer {EXAMPLE_PRINTER_ID!r} not found", "status": 404},
                VALIDATION_ERROR_EXAMPLE,
            ]
        }
    )
    error: str = Field(description="What went wrong, for a person (inputs are never echoed)")
    status: int = Field(description="The HTTP status code")
    fields: list[FieldError] | None = Field(default=None, description="On 422: each field at fault")


def error_response(
    status: int, description: str, message: str, fields: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """Return an OpenAPI `responses` entry: the error body's model and an example of it."""
    example: dict[str, Any] = {"error": message, "status": status}
    if fields is not None:
        example["fields"] = fields
    return {
        "model": ErrorOut,
        "description": description,
        "content": {"application/json": {"example": example}},
    }


class TokenForm(BaseModel):
    """OAuth2 password grant (form fields; others, such as grant_type and client_id, are ignored)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "jdoe",
                    "password": "correct horse battery staple",
                    "scope": "read write",
                }
            ]
        }
    )
    username: str = Field(max_length=100)
    password: str = Field(max_length=1000)
    scope: str = Field(default="read write", description="space separated: read write")


class ReadyOut(BaseModel):
    """Readiness: true when every check says ok; each check's state (ok, or what failed)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ready": True, "database": "ok", "nats": "ok"},
                {"ready": False, "database": "ok", "nats": "disconnected"},
            ]
        }
    )
    ready: bool
    database: str = Field(description='"ok" or "failed: <error type>"')
    nats: str = Field(description='"ok" or "disconnected"')


class TokenOut(BaseModel):
    """An OAuth2 bearer token."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "tw_3q2-7wExampleOnlyNotARealToken0000000000000",
                    "token_type": "bearer",
                    "expires_at": "2025-03-15T08:55:12Z",
                }
            ]
        }
    )
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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "jdoe",
                    "role": "operator",
                    "tenant_id": "acme",
                    "scopes": ["read", "write"],
                }
            ]
        }
    )
    username: str
    role: str
    tenant_id: str
    scopes: list[str]


class SiteIn(BaseModel):
    """A new site."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"id": "acme-hq", "name": "ACME headquarters", "poll_interval_s": 300},
                {"id": "acme-warehouse-2"},
            ]
        },
    )
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

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "ACME headquarters, Building A", "poll_interval_s": 600},
                {"poll_interval_s": None},
            ]
        },
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    poll_interval_s: float | None = Field(
        default=None,
        ge=10,
        le=86400,
        description="Poll interval of the site's printers; null: the default",
    )


class SiteOut(BaseModel):
    """A site."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SITE]})
    id: str
    name: str
    tenant_id: str
    printers: int = 0
    poll_interval_s: float | None = None


class SupplyOut(BaseModel):
    """The current state of one supply."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SUPPLY_CYAN]})
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

    model_config = ConfigDict(json_schema_extra={"examples": [_PRINTER]})
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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"items": [_PRINTER], "next_cursor": "eyJzIjoiaWQiLCJ2IjpbInAtM2YyYTljMDFkZSJdfQ"}
            ]
        }
    )
    items: list[PrinterOut]
    next_cursor: str | None


class PrinterIn(BaseModel):
    """A printer to monitor, added by address."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "address": "192.0.2.31",
                    "site_id": "acme-hq",
                    "name": "Reception colour",
                    "location": "HQ, 2nd floor, reception",
                    "interval_s": 300,
                    "community": "public",
                },
                {
                    "address": "printer-finance.acme.example",
                    "site_id": "acme-hq",
                    "protocol": "both",
                    "credentials": {
                        "version": "3",
                        "user": "tonerwatch",
                        "auth_protocol": "SHA256",
                        "auth_key": "example-auth-passphrase",
                        "priv_protocol": "AES",
                        "priv_key": "example-priv-passphrase",
                    },
                },
            ]
        },
    )
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

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "Reception colour (front desk)", "interval_s": 600},
                {"monitored": False, "notes": "Replaced by a new MFP; kept for its history"},
                {"address": "192.0.2.32", "community": "fleet-ro"},
            ]
        },
    )
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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "supply_index": "2",
                    "occurred_at": "2025-03-14T08:55:12Z",
                    "percent": 8.0,
                    "level": 8,
                    "resolution": "raw",
                    "count": 1,
                },
                {
                    "supply_index": "2",
                    "occurred_at": "2025-03-14T08:00:00Z",
                    "percent": 8.5,
                    "level": 8,
                    "resolution": "hourly",
                    "min_percent": 8.0,
                    "max_percent": 9.0,
                    "last_percent": 8.0,
                    "count": 12,
                },
            ]
        }
    )
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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "occurred_at": "2025-03-13T00:00:00Z",
                    "lifetime_pages": 48213,
                    "mono_pages": 30120,
                    "colour_pages": 18093,
                    "duplex_pages": None,
                    "resolution": "daily",
                    "count": 288,
                }
            ]
        }
    )
    occurred_at: datetime
    lifetime_pages: int | None = Field(description="Total pages printed (prtMarkerLifeCount)")
    mono_pages: int | None = Field(default=None, description="Black-and-white pages, if known")
    colour_pages: int | None = Field(default=None, description="Colour pages, if known")
    duplex_pages: int | None = Field(default=None, description="Two-sided sheets, if known")
    resolution: str = Field(default="raw", description="raw, hourly or daily")
    count: int = Field(default=1, description="Raw readings merged into this point")


class AlertOut(BaseModel):
    """One alert occurrence."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ALERT]})
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

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "nightly fleet export", "scopes": ["read"], "expires_in_days": 90}
            ]
        },
    )
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["read", "write"]] = Field(default=["read"], min_length=1)
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


class ApiTokenOut(BaseModel):
    """An API token (the secret only once, at creation)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 12,
                    "name": "nightly fleet export",
                    "scopes": ["read"],
                    "created_at": "2025-03-14T09:00:00Z",
                    "expires_at": "2025-06-12T09:00:00Z",
                    "last_used_at": None,
                    "revoked_at": None,
                    "token": "tw_9vQ-ExampleOnlyNotARealToken1111111111111111",
                },
                _TOKEN,
            ]
        }
    )
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

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "username": "jdoe",
                    "password": "correct horse battery staple",
                    "role": "operator",
                    "email": "jdoe@acme.example",
                    "responsible_sites": ["acme-hq"],
                }
            ]
        },
    )
    username: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")
    password: str = Field(min_length=10, max_length=1000)
    role: Literal["admin", "operator", "viewer"] = "viewer"
    email: MailAddress | None = Field(default=None, description="Where their sites' alerts go")
    responsible_sites: list[str] = Field(
        default_factory=list, max_length=500, description="Sites they answer for ([]: all)"
    )
    responsible_groups: list[int] = Field(
        default_factory=list,
        max_length=500,
        description="Printer groups they answer for (with no sites: only those printers)",
    )


class UserOut(BaseModel):
    """A user (never the hash)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_USER]})
    id: int
    username: str
    role: str
    tenant_id: str
    disabled: bool
    created_at: datetime


class UserPatch(BaseModel):
    """Changes to a user: role, password, disabled (a disabled user's sessions and tokens stop)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"role": "admin"},
                {"disabled": True},
                {"password": "a new long passphrase 2025"},
            ]
        },
    )
    role: Literal["admin", "operator", "viewer"] | None = None
    password: str | None = Field(default=None, min_length=10, max_length=1000)
    disabled: bool | None = None


class AuditOut(BaseModel):
    """One change: who did what to which thing, when (never secrets)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 5120,
                    "at": "2025-03-14T09:12:44Z",
                    "username": "jdoe",
                    "action": "printer.update",
                    "target": EXAMPLE_PRINTER_ID,
                    "detail": {"fields": ["interval_s", "name"]},
                },
                {
                    "id": 5121,
                    "at": "2025-03-14T09:15:02Z",
                    "username": "admin",
                    "action": "token.revoke",
                    "target": "12",
                    "detail": None,
                },
            ]
        }
    )
    id: int
    at: datetime
    username: str | None
    action: str
    target: str | None
    detail: dict[str, Any] | None


class SitePage(BaseModel):
    """One page of sites; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_SITE], "next_cursor": "eyJzIjoiaWQiLCJ2IjpbImFjbWUtaHEiXX0"}]
        }
    )
    items: list[SiteOut]
    next_cursor: str | None


class AlertPage(BaseModel):
    """One page of alerts; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_ALERT], "next_cursor": None}]}
    )
    items: list[AlertOut]
    next_cursor: str | None


class ApiTokenPage(BaseModel):
    """One page of API tokens; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_TOKEN], "next_cursor": None}]}
    )
    items: list[ApiTokenOut]
    next_cursor: str | None


class UserPage(BaseModel):
    """One page of users; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"items": [_USER], "next_cursor": "eyJzIjoidXNlcm5hbWUiLCJ2IjpbImpkb2UiLDddfQ"}
            ]
        }
    )
    items: list[UserOut]
    next_cursor: str | None


class AuditPage(BaseModel):
    """One page of the audit log; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 5120,
                            "at": "2025-03-14T09:12:44Z",
                            "username": "jdoe",
                            "action": "printer.update",
                            "target": EXAMPLE_PRINTER_ID,
                            "detail": {"fields": ["interval_s", "name"]},
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )
    items: list[AuditOut]
    next_cursor: str | None
