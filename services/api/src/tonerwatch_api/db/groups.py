"""Printer group tables: groups and their members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from tonerwatch_api.db.models import UTCDateTime, utcnow

# --- tables --------------------------------------------------------------------------------------


class PrinterGroup(SQLModel, table=True):
    """A tenant's named group of printers (from any of its sites)."""

    __tablename__ = "printer_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_printer_groups_tenant_name"),)
    id: int | None = SQLField(default=None, primary_key=True)
    tenant_id: str = SQLField(foreign_key="tenants.id", index=True, max_length=64)
    name: str = SQLField(max_length=100)
    description: str | None = SQLField(default=None, max_length=500)
    created_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class PrinterGroupMember(SQLModel, table=True):
    """One printer in one group (gone with either)."""

    __tablename__ = "printer_group_members"
    group_id: int = SQLField(foreign_key="printer_groups.id", primary_key=True, ondelete="CASCADE")
    printer_id: str = SQLField(
        foreign_key="printers.id", primary_key=True, max_length=128, index=True, ondelete="CASCADE"
    )


GROUP_TABLES: tuple[type[SQLModel], ...] = (PrinterGroup, PrinterGroupMember)
