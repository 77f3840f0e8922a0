"""history rollups, retention indexes, denormalised printer status

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00

Readings and counter readings get 64-bit ids (14 million readings a day at 10,000 printers),
a rolled_up flag with a partial index of the rows still waiting for the rollup, and an index on
occurred_at for retention deletes. Hourly and daily rollup tables for both. printers.status
lets the dashboard order and count by attention in SQL. processed_events.processed_at is
indexed for pruning.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _reading_bucket_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("printer_id", sa.String(length=128), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("supply_index", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("percent_count", sa.Integer(), nullable=False),
        sa.Column("sum_percent", sa.Float(), nullable=False),
        sa.Column("min_percent", sa.Float(), nullable=True),
        sa.Column("max_percent", sa.Float(), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_percent", sa.Float(), nullable=True),
        sa.Column("last_level", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["printer_id"], ["printers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("printer_id", "bucket_start", "supply_index"),
    )


def _counter_bucket_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("printer_id", sa.String(length=128), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("min_lifetime_pages", sa.Integer(), nullable=True),
        sa.Column("lifetime_pages", sa.Integer(), nullable=True),
        sa.Column("mono_pages", sa.Integer(), nullable=True),
        sa.Column("colour_pages", sa.Integer(), nullable=True),
        sa.Column("duplex_pages", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["printer_id"], ["printers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("printer_id", "bucket_start"),
    )


def upgrade() -> None:
    for table in ("readings", "counter_readings"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "id",
                existing_type=sa.Integer(),
                type_=_BIG,
                existing_nullable=False,
            )
            batch_op.add_column(
                sa.Column("rolled_up", sa.Boolean(), server_default=sa.false(), nullable=False)
            )
            batch_op.create_index(f"ix_{table}_occurred_at", ["occurred_at"], unique=False)
            batch_op.create_index(
                f"ix_{table}_pending",
                ["id"],
                unique=False,
                postgresql_where=sa.text("NOT rolled_up"),
                sqlite_where=sa.text("NOT rolled_up"),
            )
            batch_op.create_index(
                f"ix_{table}_pending_printer",
                ["printer_id", "occurred_at"],
                unique=False,
                postgresql_where=sa.text("NOT rolled_up"),
                sqlite_where=sa.text("NOT rolled_up"),
            )

    _reading_bucket_table("readings_hourly")
    with op.batch_alter_table("readings_hourly", schema=None) as batch_op:
        batch_op.create_index("ix_readings_hourly_bucket", ["bucket_start"], unique=False)
    _reading_bucket_table("readings_daily")
    _counter_bucket_table("counters_hourly")
    with op.batch_alter_table("counters_hourly", schema=None) as batch_op:
        batch_op.create_index("ix_counters_hourly_bucket", ["bucket_start"], unique=False)
    _counter_bucket_table("counters_daily")

    with op.batch_alter_table("printers", schema=None) as batch_op:
        # Existing printers start "pending"; the api recomputes every status when it starts.
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="pending", nullable=False)
        )
        batch_op.create_index(batch_op.f("ix_printers_status"), ["status"], unique=False)

    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_processed_events_processed_at"), ["processed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processed_events_processed_at"))
    with op.batch_alter_table("printers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_printers_status"))
        batch_op.drop_column("status")
    op.drop_table("counters_daily")
    with op.batch_alter_table("counters_hourly", schema=None) as batch_op:
        batch_op.drop_index("ix_counters_hourly_bucket")
    op.drop_table("counters_hourly")
    op.drop_table("readings_daily")
    with op.batch_alter_table("readings_hourly", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_hourly_bucket")
    op.drop_table("readings_hourly")
    for table in ("readings", "counter_readings"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_pending_printer")
            batch_op.drop_index(f"ix_{table}_pending")
            batch_op.drop_index(f"ix_{table}_occurred_at")
            batch_op.drop_column("rolled_up")
            batch_op.alter_column(
                "id", existing_type=_BIG, type_=sa.Integer(), existing_nullable=False
            )
