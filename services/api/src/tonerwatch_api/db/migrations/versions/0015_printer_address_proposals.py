"""printer address proposals: a device claiming a known printer's serial elsewhere waits for a person

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("printers") as batch:
        batch.add_column(
            sa.Column("person_edited", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("proposed_address", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("proposed_port", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=True))
    # Printers a person added were always theirs; discovered ones stay movable until edited.
    op.execute("UPDATE printers SET person_edited = (origin = 'manual')")


def downgrade() -> None:
    with op.batch_alter_table("printers") as batch:
        batch.drop_column("proposed_at")
        batch.drop_column("proposed_port")
        batch.drop_column("proposed_address")
        batch.drop_column("person_edited")
