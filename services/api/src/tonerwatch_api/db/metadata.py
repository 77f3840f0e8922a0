"""Which tables are the api's (for alembic), and which indexes only migrations make."""

from __future__ import annotations

from sqlalchemy import MetaData, text
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


# PostgreSQL's own options of the api's tables, given to the copies api_metadata makes (which the
# migrations and their checks use), not to the models: a postgresql_* argument makes SQLAlchemy
# import its whole PostgreSQL dialect to validate it, ~2.4 MB of `tonerwatch up` on SQLite that
# only PostgreSQL's DDL needs (issue 15).
# Free room on each page, so that a reading's update fits beside its row (HOT, migration 0029).
POSTGRESQL_WITH: dict[str, dict[str, int]] = {
    "printers": {"fillfactor": 50},
    "supply_states": {"fillfactor": 50},
    "network_usage_daily": {"fillfactor": 70},
}
# Partial indexes of the rows still waiting for the rollup (SQLite's `where` is in the models).
NOT_ROLLED_UP_INDEXES = frozenset(
    {
        "ix_readings_pending",
        "ix_readings_pending_printer",
        "ix_counter_readings_pending",
        "ix_counter_readings_pending_printer",
    }
)


def api_metadata() -> MetaData:
    """Return metadata holding only the api's tables (others may share SQLModel.metadata)."""

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
    for name, options in POSTGRESQL_WITH.items():
        md.tables[name].dialect_kwargs["postgresql_with"] = options
    for table in md.tables.values():
        for index in table.indexes:
            if index.name in NOT_ROLLED_UP_INDEXES:
                index.dialect_kwargs["postgresql_where"] = text("NOT rolled_up")
    return md
