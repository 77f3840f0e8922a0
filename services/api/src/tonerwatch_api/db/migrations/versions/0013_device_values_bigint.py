"""device values as BIGINT: page counters, levels and capacities up to what a Counter32 holds and more

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 14:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One Counter32 page count above 2,147,483,647 made every reading of its printer fail on
# PostgreSQL ("integer out of range"). SQLite's INTEGER is 64-bit already: nothing to do there.
COLUMNS: dict[str, tuple[str, ...]] = {
    "printers": ("lifetime_pages", "last_bytes_sent", "last_bytes_received"),
    "supply_states": ("level", "max_capacity"),
    "readings": ("level",),
    "counter_readings": ("lifetime_pages", "mono_pages", "colour_pages", "duplex_pages"),
    "readings_hourly": ("last_level",),
    "readings_daily": ("last_level",),
    "counters_hourly": (
        "min_lifetime_pages",
        "lifetime_pages",
        "mono_pages",
        "colour_pages",
        "duplex_pages",
    ),
    "counters_daily": (
        "min_lifetime_pages",
        "lifetime_pages",
        "mono_pages",
        "colour_pages",
        "duplex_pages",
    ),
}


def _alter(to: sa.types.TypeEngine[int], was: sa.types.TypeEngine[int]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=to, existing_type=was, existing_nullable=True)


def upgrade() -> None:
    _alter(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _alter(sa.Integer(), sa.BigInteger())
