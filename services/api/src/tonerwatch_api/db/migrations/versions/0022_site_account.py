"""sites.account: ship-to address and billing contact, sent upstream with orders

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 19:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sites", sa.Column("account", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("sites", "account")
