"""Alembic environment: runs on the connection tonerwatch_shared.storage.migrate hands over."""

from __future__ import annotations

from alembic import context

from tonerwatch_api.db.metadata import VERSION_TABLE, api_metadata, include_object

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through tonerwatch_shared.storage.migrate (needs a connection)"
    )

context.configure(
    connection=connection,
    target_metadata=api_metadata(),
    version_table=VERSION_TABLE,
    # SQLite cannot ALTER most things: batch mode recreates tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
