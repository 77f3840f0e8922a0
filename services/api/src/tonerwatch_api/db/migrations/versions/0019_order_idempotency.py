"""orders.idempotency_key: a retried POST /orders (same Idempotency-Key) is the same order

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 18:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("idempotency_key", sa.String(length=128), nullable=True))
    op.create_index(
        "ux_orders_site_idempotency", "orders", ["site_id", "idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_orders_site_idempotency", table_name="orders")
    op.drop_column("orders", "idempotency_key")
