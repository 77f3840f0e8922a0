"""customer tenants: disabled flag, the provider role, a session's acting tenant, the actor's tenant

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 03:45:00

tenants.disabled refuses a tenant's users and tokens at once (its data stays);
api_tokens.acting_tenant_id is the customer tenant a provider's UI session switched to;
audit_log.actor_tenant_id is the actor's own tenant when a provider acted in a customer's.

One user becomes provider, so an upgraded single-site installation keeps working with no
surprise: the bootstrap user 'admin' of the default tenant if it is an admin, otherwise the
default tenant's oldest admin. A provider keeps every right an admin has; every other admin
stays admin (a provider can promote them with PATCH /users).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): SQLite would recreate tenants, which users and sites
    # reference, and the foreign keys would refuse dropping the old table.
    op.add_column(
        "tenants", sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("api_tokens", sa.Column("acting_tenant_id", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("actor_tenant_id", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    users = sa.table(
        "users",
        sa.column("id", sa.Integer()),
        sa.column("username", sa.String()),
        sa.column("role", sa.String()),
        sa.column("tenant_id", sa.String()),
    )
    admins = (users.c.tenant_id == "default") & (users.c.role == "admin")
    chosen = conn.execute(sa.select(users.c.id).where(admins, users.c.username == "admin")).scalar()
    if chosen is None:
        chosen = conn.execute(
            sa.select(users.c.id).where(admins).order_by(users.c.id).limit(1)
        ).scalar()
    if chosen is not None:
        conn.execute(sa.update(users).where(users.c.id == chosen).values(role="provider"))


def downgrade() -> None:
    users = sa.table("users", sa.column("role", sa.String()))
    op.get_bind().execute(sa.update(users).where(users.c.role == "provider").values(role="admin"))
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("actor_tenant_id")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("acting_tenant_id")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("disabled")
