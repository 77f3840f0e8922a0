"""Per-printer order (issue 16): the position (seq, time) of what each read model last applied

printers.status_seq/status_at: the newest reading or (un)reachable applied to the printer's status;
supply_states.seq: the reading that set each supply's current state (with its updated_at);
alert_order: the newest crossed/resolved applied or seen per alert id. Older events are stale.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 21:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("printers") as batch:
        batch.add_column(sa.Column("status_seq", _big(), nullable=True))
        batch.add_column(sa.Column("status_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("supply_states") as batch:
        batch.add_column(sa.Column("seq", _big(), nullable=True))
    op.create_table(
        "alert_order",
        sa.Column("alert_id", sa.String(length=255), nullable=False),
        sa.Column("seq", _big(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("alert_id"),
    )


def downgrade() -> None:
    op.drop_table("alert_order")
    with op.batch_alter_table("supply_states") as batch:
        batch.drop_column("seq")
    with op.batch_alter_table("printers") as batch:
        batch.drop_column("status_at")
        batch.drop_column("status_seq")
