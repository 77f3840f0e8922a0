"""Site collectors as the hub last heard them (CollectorStatus) and judged them (SiteOffline/Online)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
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


COLLECTOR_TABLES: tuple[type[SQLModel], ...] = (CollectorRow,)
