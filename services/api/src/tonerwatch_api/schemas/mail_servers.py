"""Mail server bodies: SMTP servers set in the web UI; the password is write-only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from tonerwatch_api.schemas.common import MailAddress
from tonerwatch_shared.checks import check_host
from tonerwatch_shared.sealing import is_sealed

Security = Literal["starttls", "tls", "none"]
_HOST_HELP = "IP address or DNS name of the SMTP server (checked by shape, never looked up)"


def _password(value: str | None) -> str | None:
    if value is not None and is_sealed(value):
        raise ValueError("a password cannot start with 'tw-sealed:' (give the password itself)")
    return value


Password = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Write-only: stored sealed, never returned (has_password says whether one is set)",
    ),
    AfterValidator(_password),
]

_EXAMPLE: dict[str, Any] = {
    "name": "office-relay",
    "priority": 100,
    "host": "smtp.example.org",
    "port": 587,
    "security": "starttls",
    "username": "tonerwatch@example.org",
    "sender": "tonerwatch@example.org",
    "validate_certs": True,
}


class MailServerIn(BaseModel):
    """An SMTP server the alerter sends the web UI's recipients their alert mail through."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{**_EXAMPLE, "password": "app-password"}]}
    )
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    priority: int = Field(
        default=100, ge=0, le=1000, description="Lower first; the next one when a server is down"
    )
    host: str = Field(min_length=1, max_length=253, description=_HOST_HELP)
    port: int = Field(default=587, gt=0, lt=65536)
    security: Security = Field(
        default="starttls", description="starttls (587), tls (465, TLS from the start) or none"
    )
    username: str | None = Field(default=None, min_length=1, max_length=254)
    password: Password = None
    sender: MailAddress = Field(description="From address of the alert mail")
    validate_certs: bool = True

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)


class MailServerPatch(BaseModel):
    """Fields to change; the password: left out keeps it, null removes it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"port": 465}]})
    name: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$"
    )
    priority: int | None = Field(default=None, ge=0, le=1000)
    host: str | None = Field(default=None, min_length=1, max_length=253, description=_HOST_HELP)
    port: int | None = Field(default=None, gt=0, lt=65536)
    security: Security | None = None
    username: str | None = Field(default=None, max_length=254)
    password: Password = None
    sender: MailAddress | None = None
    validate_certs: bool | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return check_host(value) if value is not None else None


class MailServerOut(BaseModel):
    """An SMTP server as set; never its password."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_EXAMPLE,
                    "id": 1,
                    "has_password": True,
                    "updated_by": "admin",
                    "updated_at": "2026-12-06T21:30:00Z",
                }
            ]
        }
    )
    id: int
    name: str
    priority: int
    host: str
    port: int
    security: Security
    username: str | None
    has_password: bool
    sender: str
    validate_certs: bool
    updated_by: str | None
    updated_at: datetime


class MailServerPage(BaseModel):
    """One page of mail servers; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            **_EXAMPLE,
                            "id": 1,
                            "has_password": True,
                            "updated_by": "admin",
                            "updated_at": "2026-12-06T21:30:00Z",
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )

    items: list[MailServerOut]
    next_cursor: str | None
