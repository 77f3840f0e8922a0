"""orders.batch_id: orders placed together from one suggestion line

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("batch_id", sa.String(length=32), nullable=True))
    op.create_index("ix_orders_batch_id", "orders", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_batch_id", table_name="orders")
    op.drop_column("orders", "batch_id")
