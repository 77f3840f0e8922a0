"""Shared bodies: errors, auth, sites, tokens, users, audit."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SiteIdField = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")

# Examples in the OpenAPI document: one fleet (tenant "acme", site "acme-hq") and one printer, an
# HP Color LaserJet Pro M452nw whose cyan runs low, at a documentation address (RFC 5737) so that an
# example pasted into a script or a test never reaches a real host.
EXAMPLE_PRINTER_ID = "p-3f2a9c01de"
_SITE: dict[str, Any] = {
    "id": "acme-hq",
    "name": "ACME headquarters",
    "tenant_id": "acme",
    "printers": 42,
    "poll_interval_s": 300.0,
    "monitor_found": False,
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


# The 401 answer of every route behind a login: one text, so the API's documentation agrees with itself.
NOT_AUTHENTICATED_MESSAGE = (
    "not authenticated: send 'Authorization: Bearer <token>' (get one from "
    "POST /api/v1/auth/token) — a token may also be expired or revoked"
)


def not_authenticated(description: str = "Not authenticated") -> dict[str, Any]:
    """Return the OpenAPI `responses` entry of a 401 (no, expired or revoked token)."""
    return error_response(401, description, NOT_AUTHENTICATED_MESSAGE)


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
                {"ready": False, "database": "migrations pending: 0010", "nats": "ok"},
            ]
        }
    )
    ready: bool
    database: str = Field(
        description='"ok", "unreachable (<error type>)" (the api waits for it, at start too), '
        '"failed: <error type>", or "migrations pending: <revisions>" '
        "(the schema is behind: run `tonerwatch migrate`)"
    )
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


# Control characters (C0, DEL, C1) are refused too: one in a recipient stops a site's mail.
_ADDRESS = re.compile(
    r"^[^@\s,;<>\x00-\x1f\x7f-\x9f]+@[^@\s,;<>\x00-\x1f\x7f-\x9f]+\.[^@\s,;<>\x00-\x1f\x7f-\x9f]+$"
)


def _mail_address(value: str) -> str:
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise ValueError("an e-mail address cannot hold control characters (line breaks, tabs)")
    value = value.strip()
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError("not an e-mail address (name@example.org)")
    return value


# The shape AlertSettingsConfigured accepts (minus control characters), with a message a person
# understands.
MailAddress = Annotated[str, AfterValidator(_mail_address)]

ROW_ID_MAX = (1 << 31) - 1
"""The largest id of the rows named by id (users, groups, tokens, alerts: INTEGER columns on
PostgreSQL): a larger one, 2^63 included, is refused (422), never a database 500."""

RowId = Annotated[int, Field(ge=1, le=ROW_ID_MAX)]
"""A row id in a body or query (users, groups, tokens, alert rows): 1 .. 2^31-1."""


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
                    "acting_from": None,
                },
                {
                    "username": "admin",
                    "role": "provider",
                    "tenant_id": "acme",
                    "scopes": ["read", "write"],
                    "acting_from": "default",
                },
            ]
        }
    )
    username: str
    role: str
    tenant_id: str = Field(description="The tenant the caller acts in")
    scopes: list[str]
    acting_from: str | None = Field(
        default=None, description="A provider acting in a customer's tenant: their own tenant"
    )


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
    monitor_found: bool | None = Field(
        default=None,
        description="Printers a discovery sweep finds here are monitored at once (true) or wait "
        "for a person to pick them (false); null: the installation's default "
        "(TONERWATCH_AUTO_MONITOR_DISCOVERED, false unless set)",
    )


class SitePatch(BaseModel):
    """Changes to a site."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "ACME headquarters, Building A", "poll_interval_s": 600},
                {"poll_interval_s": None},
                {"monitor_found": True},
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
    monitor_found: bool | None = Field(
        default=None,
        description="Printers a discovery sweep finds here are monitored at once (true) or wait "
        "for a person to pick them (false); null: the installation's default "
        "(TONERWATCH_AUTO_MONITOR_DISCOVERED, false unless set)",
    )


class SiteOut(BaseModel):
    """A site."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SITE]})
    id: str
    name: str
    tenant_id: str
    printers: int = 0
    poll_interval_s: float | None = None
    monitor_found: bool | None = Field(
        default=None,
        description="Printers a discovery sweep finds here are monitored at once (true) or wait "
        "for a person to pick them (false); null: the installation's default "
        "(TONERWATCH_AUTO_MONITOR_DISCOVERED, false unless set)",
    )


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
    responsible_groups: list[RowId] = Field(
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
    acting_from: str | None = Field(
        default=None, description="The actor's own tenant when a provider acted in this one"
    )
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
