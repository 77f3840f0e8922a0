"""printers.read_seq: the seq of the newest reading applied (with last_seen_at, its position)

Readings and (un)reachable reach the api through different consumers: what a reading says of the
printer (trays, counters, device status) is ordered among readings, its reachability among every
status event (status_seq/status_at, migration 0026).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06 21:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("printers") as batch:
        batch.add_column(
            sa.Column(
                "read_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("printers") as batch:
        batch.drop_column("read_seq")
