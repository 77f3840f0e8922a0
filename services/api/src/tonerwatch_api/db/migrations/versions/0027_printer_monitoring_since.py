"""printers.monitoring_since: the start of the printer's continuous monitoring (service coverage)

Kept by the reading projections (tonerwatch_shared.coverage.extend_run): raw readings are pruned
after TONERWATCH_RAW_RETENTION_DAYS, so "the first reading" cannot be asked of them later.
Existing printers start from their oldest daily bucket, else oldest raw reading, else last seen.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 21:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "printers", sa.Column("monitoring_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE printers SET monitoring_since = COALESCE("
        "(SELECT MIN(d.bucket_start) FROM readings_daily d WHERE d.printer_id = printers.id), "
        "(SELECT MIN(r.occurred_at) FROM readings r WHERE r.printer_id = printers.id), "
        "last_seen_at)"
    )


def downgrade() -> None:
    op.drop_column("printers", "monitoring_since")
