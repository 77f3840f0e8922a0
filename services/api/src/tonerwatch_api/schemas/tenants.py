"""Customer tenants as the provider manages them: create (with a first site and admin), list, change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tonerwatch_api.schemas.common import MailAddress, SiteIn, SiteOut, UserOut

_TENANT: dict[str, Any] = {
    "id": "acme",
    "name": "ACME Corporation",
    "disabled": False,
    "provider": False,
    "sites": 3,
    "users": 12,
    "created_at": "2025-01-20T10:12:00Z",
}


class FirstAdminIn(BaseModel):
    """The customer's first admin (no password: one is generated and returned once)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"username": "it@acme", "email": "it@acme.example"},
                {"username": "it@acme", "password": "correct horse battery staple"},
            ]
        },
    )
    username: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")
    password: str | None = Field(
        default=None, min_length=10, max_length=1000, description="Unset: generated, shown once"
    )
    email: MailAddress | None = Field(default=None, description="Where their alerts go")


class TenantIn(BaseModel):
    """A new customer tenant, optionally with its first site and its first admin."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "acme",
                    "name": "ACME Corporation",
                    "site": {"id": "acme-hq", "name": "ACME headquarters"},
                    "admin": {"username": "it@acme", "email": "it@acme.example"},
                },
                {"id": "globex", "name": "Globex"},
            ]
        },
    )
    id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Short, lower-case, unique; never changes",
    )
    name: str = Field(min_length=1, max_length=200)
    site: SiteIn | None = Field(default=None, description="Its first site")
    admin: FirstAdminIn | None = Field(default=None, description="Its first admin")


class TenantPatch(BaseModel):
    """Changes to a tenant: its name, disabled (its users and tokens are refused at once)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "ACME Corp."}, {"disabled": True}, {"disabled": False}]
        },
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    disabled: bool | None = None


class TenantOut(BaseModel):
    """A tenant with how many sites and users it has."""

    model_config = ConfigDict(json_schema_extra={"examples": [_TENANT]})
    id: str
    name: str
    disabled: bool
    provider: bool = Field(description="The provider's own tenant (never disabled nor deleted)")
    sites: int
    users: int
    created_at: datetime


class TenantCreated(BaseModel):
    """The new tenant, its first site and admin, and the admin's generated password (shown once)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant": {**_TENANT, "sites": 1, "users": 1},
                    "site": {
                        "id": "acme-hq",
                        "name": "ACME headquarters",
                        "tenant_id": "acme",
                        "poll_interval_s": None,
                    },
                    "admin": {
                        "id": 31,
                        "username": "it@acme",
                        "role": "admin",
                        "tenant_id": "acme",
                        "disabled": False,
                        "created_at": "2025-01-20T10:12:00Z",
                    },
                    "admin_password": "Xq7mK2pR9sT4vW8yZ3aB",
                }
            ]
        }
    )
    tenant: TenantOut
    site: SiteOut | None
    admin: UserOut | None
    admin_password: str | None = Field(
        description="Only when generated: give it to the customer; it is not stored in clear"
    )


class TenantPage(BaseModel):
    """One page of tenants; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_TENANT], "next_cursor": "eyJzIjoiaWQiLCJ2IjpbImFjbWUiXX0"}]
        }
    )
    items: list[TenantOut]
    next_cursor: str | None


class SwitchIn(BaseModel):
    """The tenant the caller's session acts in from now on (their own: back home)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tenant": "acme"}]})
    tenant: str = Field(min_length=1, max_length=64)
