"""alerts.site_id: site-wide alerts (a site collector gone silent), with no printer

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 18:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("site_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_alerts_site_id", ["site_id"])
        batch_op.create_foreign_key(
            "fk_alerts_site_id_sites", "sites", ["site_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.alter_column("printer_id", existing_type=sa.String(length=128), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM alerts WHERE printer_id IS NULL")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("printer_id", existing_type=sa.String(length=128), nullable=False)
        batch_op.drop_constraint("fk_alerts_site_id_sites", type_="foreignkey")
        batch_op.drop_index("ix_alerts_site_id")
        batch_op.drop_column("site_id")
