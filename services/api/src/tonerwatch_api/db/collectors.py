"""Site collectors as the hub last heard them (CollectorStatus) and judged them, and their enrolment tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field as SqlField
from sqlmodel import SQLModel

from tonerwatch_api.db.models import UTCDateTime


class CollectorRow(SQLModel, table=True):
    """One site collector: its newest status, and since when the alerter calls it offline."""

    __tablename__ = "collectors"
    id: str = SqlField(primary_key=True, max_length=128)
    site_id: str = SqlField(foreign_key="sites.id", max_length=64, index=True)
    version: str = SqlField(max_length=64)
    printers: int = 0
    queue_depth: int | None = None
    started_at: datetime = SqlField(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen: datetime = SqlField(sa_column=Column(UTCDateTime(), nullable=False))
    offline_since: datetime | None = SqlField(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class SiteEnrolment(SQLModel, table=True):
    """A one-time, expiring token a site's collector trades for its credentials (SHA-256 kept)."""

    __tablename__ = "site_enrolments"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_site_enrolments_hash"),)
    id: int | None = SqlField(default=None, primary_key=True)
    site_id: str = SqlField(foreign_key="sites.id", max_length=64, index=True)
    token_hash: str = SqlField(max_length=64)
    created_by: str | None = SqlField(default=None, max_length=100)
    created_at: datetime = SqlField(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = SqlField(sa_column=Column(UTCDateTime(), nullable=False))
    # Set once: when the token was traded, or voided (the site revoked before it was used).
    used_at: datetime | None = SqlField(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


COLLECTOR_TABLES: tuple[type[SQLModel], ...] = (CollectorRow, SiteEnrolment)
