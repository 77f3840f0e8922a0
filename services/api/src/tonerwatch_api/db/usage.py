"""Network usage table: measured bytes per day, site, printer and kind."""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Column, Date
from sqlmodel import Field as SqlField
from sqlmodel import SQLModel

POLLING = "polling"
DISCOVERY = "discovery"
SYNC = "sync"
KINDS = (POLLING, DISCOVERY, SYNC)


class NetworkUsageDay(SQLModel, table=True):
    """Bytes on the wire for one kind of work, one site (and printer, '' if none), one UTC day."""

    __tablename__ = "network_usage_daily"
    # Room on PostgreSQL for today's rows' updates on their page (HOT, migration 0029);
    # api_metadata's POSTGRESQL_WITH.
    day: date = SqlField(sa_column=Column(Date(), primary_key=True))
    site_id: str = SqlField(primary_key=True, max_length=64)
    printer_id: str = SqlField(primary_key=True, max_length=128, default="")
    kind: str = SqlField(primary_key=True, max_length=16)
    # BigInteger: 10,000 printers polled every 5 minutes move gigabytes a day.
    bytes_sent: int = SqlField(default=0, sa_column=Column(BigInteger(), nullable=False))
    bytes_received: int = SqlField(default=0, sa_column=Column(BigInteger(), nullable=False))
    operations: int = SqlField(default=0, sa_column=Column(BigInteger(), nullable=False))


USAGE_TABLES: tuple[type[SQLModel], ...] = (NetworkUsageDay,)
