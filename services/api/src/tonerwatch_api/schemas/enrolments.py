"""Site enrolment and collector revocation bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EnrolmentIn(BaseModel):
    """How long the enrolment token may wait to be used."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ttl_min": 60}]})
    ttl_min: float = Field(
        default=60.0, gt=0, le=7 * 24 * 60, description="Minutes until the token expires"
    )


class EnrolmentOut(BaseModel):
    """A one-time enrolment token for a site's collector (the token is shown once)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "site_id": "acme-hq",
                    "token": "twe_3q2-Xv...",
                    "expires_at": "2025-03-14T10:30:00+00:00",
                    "command": "tonerwatch collector --enrol https://hub.example --token twe_3q2-Xv...",
                }
            ]
        }
    )
    site_id: str
    token: str = Field(description="Trade it once at POST /api/v1/enrol; not shown again")
    expires_at: datetime
    command: str = Field(description="What to run at the site")


class EnrolIn(BaseModel):
    """The enrolment token a collector trades."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"token": "twe_3q2-Xv8bQk..."}]}
    )
    token: str = Field(min_length=8, max_length=128)


class SiteBundle(BaseModel):
    """A site's collector credentials: what `tonerwatch collector --enrol` writes to disk."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "site": "acme-hq",
                    "hub_url": "tls://hub.example:7422",
                    "credentials": {
                        "site": "acme-hq",
                        "user": "site-acme-hq",
                        "password": "7Jm...",
                        "tls": {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"},
                        "subject_root": "tw",
                        "stream_prefix": "TW",
                    },
                    "files": {
                        "ca.pem": "-----BEGIN CERTIFICATE-----...",
                        "cert.pem": "-----BEGIN CERTIFICATE-----...",
                        "key.pem": "-----BEGIN PRIVATE KEY-----...",
                    },
                }
            ]
        }
    )

    site: str
    hub_url: str | None = Field(description="The hub's leaf-node URL (tls://host:7422), if set")
    credentials: dict[str, Any] = Field(description="The credentials file (JSON)")
    files: dict[str, str] = Field(description="ca.pem, cert.pem and key.pem (PEM text)")


class RevokeOut(BaseModel):
    """What revoking a site's collector did."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"site_id": "acme-hq", "changed": True, "kicked": 1, "voided_enrolments": 0}
            ]
        }
    )

    site_id: str
    changed: bool = Field(
        description="False: the site was already revoked in the hub config (or the hub's bucket)"
    )
    kicked: int | None = Field(
        description="Live leaf connections dropped; null when each hub server's hub-sync drops "
        "them (TONERWATCH_HUB_SYNC)"
    )
    voided_enrolments: int = Field(description="Unused enrolment tokens made void")
