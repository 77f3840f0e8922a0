"""printers.trays: the input trays and their paper levels from the newest reading

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 14:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("printers", sa.Column("trays", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("printers", "trays")
