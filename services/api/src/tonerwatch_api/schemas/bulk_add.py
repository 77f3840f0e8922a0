"""Bulk add: many printers from a CSV or a plain list of addresses, with a result per line."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tonerwatch_shared.events import SnmpCredentials

BULK_MAX_LINES = 1000
BULK_MAX_CHARS = 200_000
BULK_COLUMNS = ("address", "name", "location", "port", "site_id", "notes", "interval_s")


class BulkAddIn(BaseModel):
    """Printers to add: a CSV with a header row, or one address per line.

    A CSV's header names its columns: `address` (required), and any of `name`, `location`,
    `port`, `site_id` (or `site`), `notes`, `interval_s`. A plain list has one IP address or host
    name per line. Blank lines and lines starting with `#` are skipped. The other fields are the
    defaults of every line (a CSV column wins over them).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "192.0.2.31\n192.0.2.32\nprinter-finance.acme.example\n"},
                {
                    "text": "address,name,location\n"
                    "192.0.2.31,Reception colour,HQ 2nd floor\n"
                    "192.0.2.40,Warehouse mono,Dock 3\n",
                    "site_id": "acme-hq",
                    "community": "fleet-ro",
                    "monitored": True,
                },
            ]
        },
    )
    text: str = Field(
        min_length=1,
        max_length=BULK_MAX_CHARS,
        description=f"CSV with a header row, or one address per line (at most {BULK_MAX_LINES} lines)",
    )
    site_id: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"
    )
    protocol: Literal["snmp", "ipp", "both"] = "snmp"
    interval_s: float | None = Field(default=None, ge=10, le=86400)
    monitored: bool = True
    community: str | None = Field(
        default=None, min_length=1, max_length=255, description="SNMP v1/v2c community (write-only)"
    )
    credentials: SnmpCredentials | None = Field(
        default=None, description="Full SNMP credentials (write-only)"
    )


class BulkLineOut(BaseModel):
    """What became of one line."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "line": 2,
                    "text": "192.0.2.32,Warehouse mono",
                    "address": "192.0.2.32",
                    "outcome": "known",
                    "reason": "already in site 'acme-hq' as Warehouse mono",
                    "printer_id": "p-1b2c3d4e5f6a",
                }
            ]
        }
    )

    line: int = Field(description="Line number in the text, from 1")
    text: str = Field(description="The line as given (at most 200 characters)")
    address: str | None = None
    outcome: Literal["added", "known", "invalid"]
    reason: str | None = Field(default=None, description="Why a line is known or invalid")
    printer_id: str | None = Field(
        default=None, description="The printer added, or the one that already has the address"
    )


class BulkAddOut(BaseModel):
    """The result of a bulk add: counts, and one entry per line that was not blank."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "added": 1,
                    "known": 1,
                    "invalid": 1,
                    "lines": [
                        {
                            "line": 1,
                            "text": "192.0.2.31",
                            "address": "192.0.2.31",
                            "outcome": "added",
                            "reason": None,
                            "printer_id": "p-7f3a9c2e5b1d",
                        },
                        {
                            "line": 2,
                            "text": "192.0.2.32",
                            "address": "192.0.2.32",
                            "outcome": "known",
                            "reason": "already in site 'acme-hq' as Warehouse mono",
                            "printer_id": "p-1b2c3d4e5f6a",
                        },
                        {
                            "line": 3,
                            "text": "printer finance",
                            "address": "printer finance",
                            "outcome": "invalid",
                            "reason": "address: not an IP address or host name",
                            "printer_id": None,
                        },
                    ],
                }
            ]
        }
    )
    added: int
    known: int
    invalid: int
    lines: list[BulkLineOut]
