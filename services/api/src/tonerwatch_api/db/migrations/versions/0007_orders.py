"""orders of supplies for printers

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 15:00:00

orders holds what was ordered for one supply of one printer (a snapshot of the supply's
description, part number and colour), its status (requested, ordered, shipped, delivered,
cancelled) with the time it reached each, the supplier and their reference, and the
SupplyReplaced event that delivered it. Indexes serve the list filters (site, status, printer,
part number) and the delivery lookup of a replaced supply.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("printer_id", sa.String(length=128), nullable=False),
        sa.Column("supply_index", sa.String(length=64), nullable=False),
        sa.Column("supply_description", sa.String(length=255), nullable=False),
        sa.Column("part_number", sa.String(length=100), nullable=True),
        sa.Column("colour", sa.String(length=64), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("supplier", sa.String(length=200), nullable=True),
        sa.Column("supplier_reference", sa.String(length=100), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("alert_id", sa.String(length=255), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("delivery_event_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"]),
        sa.ForeignKeyConstraint(["printer_id"], ["printers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_site_created", ["site_id", "created_at"], unique=False)
        batch_op.create_index("ix_orders_status_created", ["status", "created_at"], unique=False)
        batch_op.create_index(
            "ix_orders_printer_supply_status",
            ["printer_id", "supply_index", "status"],
            unique=False,
        )
        batch_op.create_index("ix_orders_part_number", ["part_number"], unique=False)
        batch_op.create_index("ix_orders_delivery_event", ["delivery_event_id"], unique=False)


def downgrade() -> None:
    op.drop_table("orders")
