"""discovery jobs, what they found, network usage per day

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:00:00

discovery_jobs is the read model of DiscoveryRequested/Progress/Finished (never credentials),
discovery_found the printers a job's PrinterFound events named, network_usage_daily the bytes
polling (SupplyReading) and discovery (DiscoveryFinished) put on the wire per UTC day, site and
printer.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "discovery_jobs",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=True),
        sa.Column("credential_sets", sa.Integer(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("rate_pps", sa.Float(), nullable=False),
        sa.Column("time_limit_s", sa.Float(), nullable=True),
        sa.Column("requested_by", sa.String(length=100), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("probed", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("live", sa.Integer(), nullable=False),
        sa.Column("printers_found", sa.Integer(), nullable=False),
        sa.Column("non_printers", sa.Integer(), nullable=True),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.Column("remaining_s", sa.Float(), nullable=True),
        sa.Column("bytes_sent", sa.Integer(), nullable=False),
        sa.Column("bytes_received", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("discovery_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_discovery_jobs_site_requested", ["site_id", "requested_at"], unique=False
        )

    op.create_table(
        "discovery_found",
        sa.Column("job_id", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("vendor", sa.String(length=100), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("serial", sa.String(length=100), nullable=True),
        sa.Column("sys_name", sa.String(length=200), nullable=True),
        sa.Column("credentials_name", sa.String(length=100), nullable=True),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "address", "port"),
    )

    op.create_table(
        "network_usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("printer_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("bytes_sent", sa.BigInteger(), nullable=False),
        sa.Column("bytes_received", sa.BigInteger(), nullable=False),
        sa.Column("operations", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "site_id", "printer_id", "kind"),
    )


def downgrade() -> None:
    op.drop_table("network_usage_daily")
    op.drop_table("discovery_found")
    with op.batch_alter_table("discovery_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_discovery_jobs_site_requested")
    op.drop_table("discovery_jobs")
