"""per-site poll interval, and which printers follow it

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 12:30:00

sites.poll_interval_s overrides the default interval for the site's printers that were added
without one of their own (printers.interval_follows_site). Existing printers keep the interval
they have.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("poll_interval_s", sa.Float(), nullable=True))
    with op.batch_alter_table("printers") as batch:
        batch.add_column(
            sa.Column(
                "interval_follows_site", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("printers") as batch:
        batch.drop_column("interval_follows_site")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("poll_interval_s")
