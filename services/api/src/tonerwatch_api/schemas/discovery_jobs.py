"""Discovery job bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tonerwatch_api.schemas.printers import CheckedCredentials
from tonerwatch_shared.checks import check_sweep_targets
from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.targets import DEFAULT_MAX_ADDRESSES

# --- REST bodies ---------------------------------------------------------------------------------


class DiscoveryJobIn(BaseModel):
    """A sweep to start: what to probe, with which SNMP credentials, how fast, for how long."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "targets": ["192.0.2.0/24", "printer7.example.com"],
                    "communities": ["public"],
                    "rate_pps": 100,
                    "time_limit_s": 300,
                }
            ]
        },
    )
    site_id: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Default site if unset",
    )
    targets: list[str] = Field(
        min_length=1,
        max_length=64,
        description="CIDR blocks, ranges (a-b), IPv4 addresses, DNS names (not looked up here); "
        f"at most {DEFAULT_MAX_ADDRESSES} addresses in all (a /12): /33 and 0.0.0.0/0 are refused",
    )
    communities: list[str] = Field(
        default_factory=list, max_length=8, description="SNMPv2c communities to try, in order"
    )
    credentials: list[CheckedCredentials] = Field(
        default_factory=list, max_length=8, description="Full credential sets (e.g. SNMPv3)"
    )
    port: int = Field(default=161, ge=1, le=65535)
    rate_pps: float = Field(default=200.0, gt=0, le=5000, description="Probes per second")
    time_limit_s: float | None = Field(default=None, gt=0, le=86400, description="Stop after")
    timeout_s: float = Field(default=1.0, gt=0, le=30, description="Per-probe answer timeout")

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        return check_sweep_targets(value)

    @field_validator("communities")
    @classmethod
    def _communities(cls, value: list[str]) -> list[str]:
        out = [c for c in value if c]
        if any(len(c) > 64 for c in out):
            raise ValueError("a community is at most 64 characters")
        return out

    def credential_sets(self) -> tuple[SnmpCredentials, ...]:
        """Return the credential sets to try: full sets first, then communities, else 'public'."""
        sets = list(self.credentials) + [SnmpCredentials(community=c) for c in self.communities]
        return tuple(sets) or (SnmpCredentials(),)


# Examples in the OpenAPI document: a finished sweep of one /24 that found one printer.
_FOUND: dict[str, Any] = {
    "address": "192.0.2.31",
    "port": 161,
    "vendor": "HP",
    "model": "HP Color LaserJet Pro M452nw",
    "serial": "VNB3R12345",
    "name": "NPI4D5E6F",
    "printer_id": "p-3f2a9c01de",
    "monitored": True,
    "found_at": "2025-03-14T09:30:02Z",
}
_JOB: dict[str, Any] = {
    "id": "j-5e0c1a7b9d24",
    "site_id": "acme-hq",
    "state": "completed",
    "running": False,
    "targets": ["192.0.2.0/24"],
    "credential_sets": 1,
    "rate_pps": 200.0,
    "time_limit_s": 300.0,
    "requested_by": "jdoe",
    "requested_at": "2025-03-14T09:30:00Z",
    "probed": 254,
    "total": 254,
    "percent": 100.0,
    "live": 3,
    "printers_found": 1,
    "non_printers": 2,
    "elapsed_s": 2.4,
    "remaining_s": None,
    "bytes_sent": 10496,
    "bytes_received": 1590,
    "error": None,
    "cancel_requested_at": None,
    "finished_at": "2025-03-14T09:30:03Z",
    "found": [_FOUND],
}


class FoundOut(BaseModel):
    """A printer a job found, and what became of it (printer id, monitored)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_FOUND]})
    address: str
    port: int
    vendor: str | None
    model: str | None
    serial: str | None
    name: str | None
    printer_id: str | None = Field(description="The printer it became (None until stored)")
    monitored: bool | None
    found_at: datetime


class DiscoveryJobOut(BaseModel):
    """A sweep and its progress (no credentials)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_JOB]})
    id: str
    site_id: str
    state: str
    running: bool
    targets: list[str]
    credential_sets: int
    rate_pps: float
    time_limit_s: float | None
    requested_by: str | None
    requested_at: datetime
    probed: int
    total: int
    percent: float = Field(description="probed / total, 0..100")
    live: int
    printers_found: int
    non_printers: int | None
    elapsed_s: float
    remaining_s: float | None
    bytes_sent: int
    bytes_received: int
    error: str | None
    cancel_requested_at: datetime | None
    finished_at: datetime | None
    found: list[FoundOut] = Field(default_factory=list)


class DiscoveryJobPage(BaseModel):
    """One page of sweeps; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    # Lists leave out what each sweep found (GET /discovery/jobs/{id} has it).
                    "items": [{**_JOB, "found": []}],
                    "next_cursor": "eyJzIjoiLXJlcXVlc3RlZF9hdCIsInYiOlsiMjAyNS0wMy0xNFQwOTozMDowMCswMDowMCIsImotNWUwYzFhN2I5ZDI0Il19",
                }
            ]
        }
    )
    items: list[DiscoveryJobOut]
    next_cursor: str | None
