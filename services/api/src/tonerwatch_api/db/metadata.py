"""Which tables are the api's (for alembic), and which indexes only migrations make."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlmodel import SQLModel

from tonerwatch_api.db.alerting import ALERT_SETTINGS_TABLES
from tonerwatch_api.db.collectors import COLLECTOR_TABLES
from tonerwatch_api.db.discovery import JOB_TABLES
from tonerwatch_api.db.groups import GROUP_TABLES
from tonerwatch_api.db.logins import LOGIN_LIMIT_TABLES
from tonerwatch_api.db.models import (
    Alert,
    AlertOrder,
    ApiToken,
    AuditEntry,
    CounterDaily,
    CounterHourly,
    CounterReading,
    OutboxEvent,
    Printer,
    ProcessedEvent,
    Reading,
    ReadingDaily,
    ReadingHourly,
    Site,
    SupplyStateRow,
    Tenant,
    User,
    with_postgresql_where,
)
from tonerwatch_api.db.orders import ORDER_TABLES
from tonerwatch_api.db.usage import USAGE_TABLES

API_TABLES: tuple[type[SQLModel], ...] = (
    Tenant,
    Site,
    Printer,
    SupplyStateRow,
    Reading,
    CounterReading,
    ReadingHourly,
    ReadingDaily,
    CounterHourly,
    CounterDaily,
    Alert,
    AlertOrder,
    ProcessedEvent,
    OutboxEvent,
    User,
    ApiToken,
    AuditEntry,
)
# Own Alembic version table: other services may migrate the same database with their own scripts.
VERSION_TABLE = "alembic_version_api"
# Indexes only some databases get (migration 0006: pg_trgm on PostgreSQL, where it can be had),
# so not in the models: comparing the models with a database leaves them alone.
MIGRATION_ONLY_INDEXES = frozenset({"ix_printers_search"})


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Return whether Alembic compares this object with the models (not migration-only indexes)."""
    return not (type_ == "index" and name in MIGRATION_ONLY_INDEXES)


def api_metadata() -> MetaData:
    """Return metadata holding only the api's tables (others may share SQLModel.metadata)."""

    with_postgresql_where()  # before the copies: each index keeps its arguments
    md = MetaData()
    tables = (
        API_TABLES
        + JOB_TABLES
        + USAGE_TABLES
        + ALERT_SETTINGS_TABLES
        + ORDER_TABLES
        + LOGIN_LIMIT_TABLES
        + GROUP_TABLES
        + COLLECTOR_TABLES
    )
    for model in tables:
        model.__table__.to_metadata(md)  # type: ignore[attr-defined]
    return md
