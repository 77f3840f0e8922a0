"""Discovery job tables: sweeps and the printers they found."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field as SqlField
from sqlmodel import SQLModel

from tonerwatch_api.db.models import UTCDateTime, utcnow

# States a job passes through; the last four are how DiscoveryFinished says it ended.
RUNNING_STATES = frozenset({"requested", "running"})
FINISHED_STATES = frozenset({"completed", "time_limit", "cancelled", "failed"})


def _ts(nullable: bool = True) -> Any:
    return SqlField(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class DiscoveryJob(SQLModel, table=True):
    """One sweep: what was asked, how far it got (DiscoveryProgress), how it ended (Finished)."""

    __tablename__ = "discovery_jobs"
    __table_args__ = (Index("ix_discovery_jobs_site_requested", "site_id", "requested_at"),)
    id: str = SqlField(primary_key=True, max_length=128)
    site_id: str = SqlField(foreign_key="sites.id", max_length=64)
    targets: list[str] | None = SqlField(default=None, sa_column=Column(JSON(), nullable=True))
    # How many credential sets were tried; the sets themselves are secrets and not kept here.
    credential_sets: int = 1
    port: int = 161
    rate_pps: float = 200.0
    time_limit_s: float | None = None
    requested_by: str | None = SqlField(default=None, max_length=100)
    requested_at: datetime = SqlField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    state: str = SqlField(default="requested", max_length=16)
    probed: int = 0
    total: int = 0
    live: int = 0
    printers_found: int = 0
    non_printers: int | None = None
    elapsed_s: float = 0.0
    remaining_s: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    error: str | None = None
    progress_at: datetime | None = _ts()
    cancel_requested_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class DiscoveryFound(SQLModel, table=True):
    """A printer a job found (from PrinterFound with its job_id), as the event described it."""

    __tablename__ = "discovery_found"
    job_id: str = SqlField(primary_key=True, max_length=128)
    address: str = SqlField(primary_key=True, max_length=255)
    port: int = SqlField(primary_key=True)
    vendor: str | None = SqlField(default=None, max_length=100)
    model: str | None = SqlField(default=None, max_length=200)
    serial: str | None = SqlField(default=None, max_length=100)
    sys_name: str | None = SqlField(default=None, max_length=200)
    credentials_name: str | None = SqlField(default=None, max_length=100)
    found_at: datetime = SqlField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


JOB_TABLES: tuple[type[SQLModel], ...] = (DiscoveryJob, DiscoveryFound)
