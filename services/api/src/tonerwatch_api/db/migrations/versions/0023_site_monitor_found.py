"""sites.monitor_found: whether printers a sweep finds in the site are monitored at once

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 18:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: the installation's default (TONERWATCH_AUTO_MONITOR_DISCOVERED, off unless set).
    op.add_column("sites", sa.Column("monitor_found", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("sites", "monitor_found")
