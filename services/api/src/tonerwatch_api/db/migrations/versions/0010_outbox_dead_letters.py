"""outbox rows that can never be published are set aside, not blocking the rest

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 14:40:00

An outbox row whose payload NATS refuses for good (larger than the server's max_payload) or that
no longer reads as an event gets dead_at and error; the outbox skips it and publishes the rest.
Rows are kept for an operator to inspect (GET /metrics counts them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("error", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("error")
        batch.drop_column("dead_at")
