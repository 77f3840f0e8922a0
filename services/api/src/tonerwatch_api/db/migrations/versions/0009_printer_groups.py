"""printer groups, their members, and the groups a user answers for

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:00:00

printer_groups holds a tenant's named groups of printers (names unique per tenant);
printer_group_members which printers are in which group (a row goes with its group or its
printer); user_alerting.groups the groups a user is responsible for, beside their sites.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "printer_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_printer_groups_tenant_name"),
    )
    op.create_index("ix_printer_groups_tenant_id", "printer_groups", ["tenant_id"])
    op.create_table(
        "printer_group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("printer_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["printer_groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["printer_id"], ["printers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "printer_id"),
    )
    op.create_index("ix_printer_group_members_printer_id", "printer_group_members", ["printer_id"])
    with op.batch_alter_table("user_alerting", schema=None) as batch_op:
        batch_op.add_column(sa.Column("groups", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_alerting", schema=None) as batch_op:
        batch_op.drop_column("groups")
    op.drop_index("ix_printer_group_members_printer_id", table_name="printer_group_members")
    op.drop_table("printer_group_members")
    op.drop_index("ix_printer_groups_tenant_id", table_name="printer_groups")
    op.drop_table("printer_groups")
