"""printers.poll_failure: why the newest polls failed, as a kind (auth_failed, timeout, ...)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 18:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("printers", sa.Column("poll_failure", sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("printers", "poll_failure")
