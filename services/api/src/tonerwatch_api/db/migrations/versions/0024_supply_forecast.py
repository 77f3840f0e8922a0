"""supply_states: the envelope of lows and the forecast (days to empty and its band) of each supply

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("use_per_day", "days_to_empty", "days_to_empty_low", "days_to_empty_high")


def upgrade() -> None:
    op.add_column("supply_states", sa.Column("envelope", sa.JSON(), nullable=True))
    for name in COLUMNS:
        op.add_column("supply_states", sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    for name in (*COLUMNS, "envelope"):
        op.drop_column("supply_states", name)
