"""Printer, reading and alert bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from tonerwatch_api.schemas.common import EXAMPLE_PRINTER_ID
from tonerwatch_shared.checks import MIN_SNMP_KEY, check_credentials, check_host
from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.sealing import is_sealed

_HOST = r"^[A-Za-z0-9.:_\-\[\]%]+$"
_HOST_HELP = "IP address or DNS host name (checked by shape, never looked up: 999.1.1.1 is refused)"
CheckedCredentials = Annotated[SnmpCredentials, AfterValidator(check_credentials)]
"""SNMP credentials as accepted from a person: SNMPv3 needs a user, keys of at least 8 characters."""
_CREDS_HELP = f"SNMPv3 auth_key/priv_key at least {MIN_SNMP_KEY} characters"
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
    "use_per_day": 0.85,
    "days_to_empty": 9.4,
    "days_to_empty_low": 7.1,
    "days_to_empty_high": 13.0,
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
    "poll_failure": None,
    "poll_failure_text": None,
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
    "kind": "toner",
    "superseded_by": None,
}


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
    use_per_day: float | None = Field(
        default=None, description="Percentage points used a day (robust fit of recent lows)"
    )
    days_to_empty: float | None = Field(
        default=None,
        description="Days until empty (a waste bin: full) at that rate, as of updated_at; "
        "None: too little history yet (3 drops over 2 days), or not being used",
    )
    days_to_empty_low: float | None = Field(
        default=None, description="The band's early end (90 %): it may run out this soon"
    )
    days_to_empty_high: float | None = Field(
        default=None,
        description="The band's late end (90 %); None with days_to_empty set: no upper bound",
    )


class TrayOut(BaseModel):
    """One input tray and its paper as of the newest reading."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "index": "2",
                    "name": "Tray 2",
                    "level": 120,
                    "max_capacity": 250,
                    "percent": 48.0,
                    "media": "A4",
                }
            ]
        }
    )

    index: str
    name: str
    level: int | None = Field(default=None, description="Sheets (or the device's unit); -3: some")
    max_capacity: int | None = None
    percent: float | None = None
    media: str | None = None


class SnmpAccessOut(BaseModel):
    """What kind of SNMP access is set for a printer: never the community or keys themselves."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": "3",
                    "security": "authPriv",
                    "user": "tonerwatch",
                    "auth_protocol": "SHA256",
                    "priv_protocol": "AES",
                    "from_discovery": False,
                }
            ]
        }
    )

    version: Literal["1", "2c", "3"]
    security: Literal[
        "default_community", "community", "noAuthNoPriv", "authNoPriv", "authPriv"
    ] = Field(description="v1/v2c: the well-known 'public' or a community of your own; v3: level")
    user: str | None = Field(default=None, description="SNMPv3 user name")
    auth_protocol: str | None = None
    priv_protocol: str | None = None
    from_discovery: bool = Field(
        default=False, description="Set by the discovery sweep that found it, not by a person"
    )


class AlertLimitInForce(BaseModel):
    """One threshold as it applies to a supply, and the layer it comes from."""

    value: float
    source: Literal["default", "environment", "site", "site_kind", "printer", "printer_kind"]


class SupplyLimitsOut(BaseModel):
    """The thresholds in force for one supply of a printer."""

    supply_index: str
    kind: str
    low_percent: AlertLimitInForce
    critical_percent: AlertLimitInForce
    lead_time_days: AlertLimitInForce


class PollRequestOut(BaseModel):
    """A poll asked for: the poller polls the printer within seconds (watch last_seen_at)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "printer_id": EXAMPLE_PRINTER_ID,
                    "event_id": "0b7f6a52-3c1e-4f0a-9d7e-2a4c8e1f5b63",
                    "requested_at": "2025-03-14T09:02:41Z",
                }
            ]
        }
    )

    printer_id: str
    event_id: str = Field(description="Id of the PollRequested event")
    requested_at: datetime


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
    snmp_access: SnmpAccessOut | None = Field(
        default=None, description="What kind of SNMP access is set (write-only: no secrets)"
    )
    location: str | None
    notes: str | None
    origin: str
    proposed_address: str | None = Field(
        default=None,
        description="Where a device claiming this printer's serial or MAC was found: not polled "
        "until an operator confirms (POST .../address/confirm) or dismisses it",
    )
    proposed_port: int | None = None
    proposed_at: datetime | None = None
    vendor: str | None
    model: str | None
    serial: str | None
    sys_object_id: str | None
    mac_address: str | None
    firmware: str | None
    reachable: bool | None
    last_seen_at: datetime | None
    last_error: str | None
    poll_failure: str | None = Field(
        default=None,
        description="Why the newest polls fail, as a kind: auth_failed, unknown_user, priv_failed, "
        "unknown_engine_id, bad_credentials, bad_address, timeout, refused, unresolvable, ... "
        "(last_error says it in words); None while polls succeed",
    )
    poll_failure_text: str | None = Field(
        default=None, description="What poll_failure means, for people (None when unknown)"
    )
    device_status: str | None
    printer_status: str | None
    status_errors: list[str]
    lifetime_pages: int | None
    last_bytes_sent: int | None
    last_bytes_received: int | None
    trays: list[TrayOut] = Field(default_factory=list, description="Input trays, newest reading")
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


def _no_sealed_secret(value: object) -> object:
    """Refuse a secret a person typed that looks sealed: it would be stored as it is, in the clear,
    and every poll would fail to open it."""
    secrets = (
        [value.community, value.auth_key, value.priv_key]
        if isinstance(value, SnmpCredentials)
        else [value]
    )
    if any(is_sealed(s) for s in secrets):
        raise ValueError("a secret cannot start with 'tw-sealed:' (give the secret itself)")
    return value


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
    address: str = Field(min_length=1, max_length=255, pattern=_HOST, description=_HOST_HELP)
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
    credentials: CheckedCredentials | None = Field(
        default=None, description=f"Full SNMP credentials (write-only; {_CREDS_HELP})"
    )

    @field_validator("address")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    _secrets = field_validator("community", "credentials")(_no_sealed_secret)

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
                {
                    "snmp": {
                        "version": "3",
                        "user": "tonerwatch",
                        "auth_protocol": "SHA256",
                        "auth_key": "example-auth-passphrase",
                        "priv_protocol": "AES",
                        "priv_key": "example-priv-passphrase",
                    }
                },
            ]
        },
    )
    name: str | None = Field(default=None, max_length=200)
    location: str | None = Field(default=None, max_length=255)
    notes: str | None = Field(default=None, max_length=4000)
    monitored: bool | None = None
    interval_s: float | None = Field(default=None, ge=10, le=86400)
    address: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=_HOST, description=_HOST_HELP
    )
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["snmp", "ipp", "both"] | None = None
    community: str | None = Field(default=None, min_length=1, max_length=255)
    credentials: CheckedCredentials | None = Field(default=None, description="Same as snmp")
    snmp: CheckedCredentials | None = Field(
        default=None,
        description=f"New SNMP access, whole (write-only: never shown back; {_CREDS_HELP})",
    )

    _secrets = field_validator("community", "credentials", "snmp")(_no_sealed_secret)

    @field_validator("address")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return None if value is None else check_host(value)

    def new_credentials(self) -> SnmpCredentials | None:
        """Return the SNMP access this patch sets (snmp over credentials), or None."""
        return self.snmp or self.credentials


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
    printer_id: str | None = Field(
        description="The printer; None for a site-wide alert (rule site_offline: see site_id)"
    )
    printer_name: str | None
    site_id: str | None = Field(
        default=None, description="Set for a site-wide alert only: the site it is about"
    )
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
    kind: str | None = Field(
        default=None,
        description="Supply kind (toner, ink, drum, waste_toner, ...); None: printer-wide",
    )
    superseded_by: str | None = Field(
        default=None,
        description="Resolved because a worse alert of the same supply took its place (its alert_id)",
    )


class AlertsAcknowledge(BaseModel):
    """Alerts to acknowledge at once (row ids as listed)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ids": [1873, 1874]}]}
    )
    ids: list[int] = Field(min_length=1, max_length=500, description="Alert row ids (`id`)")


class AlertsAcknowledged(BaseModel):
    """What a bulk acknowledgement did."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"acknowledged": [_ALERT], "not_found": [1874]}]}
    )
    acknowledged: list[AlertOut] = Field(description="Now acknowledged (by the caller or before)")
    not_found: list[int] = Field(description="Ids that are not alerts of the caller's tenant")


class AlertPage(BaseModel):
    """One page of alerts; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_ALERT], "next_cursor": None}]}
    )
    items: list[AlertOut]
    next_cursor: str | None
