"""The api's core tables: tenants, sites, printers, supplies, readings, alerts, users, tokens, audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps naive UTC, PostgreSQL timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC so string comparison orders correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Return the current time, aware, in UTC."""
    return datetime.now(UTC)


def _ts() -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


def _big_id() -> Any:
    # 10,000 printers x 5 supplies every 5 minutes is 14 million readings a day: int4 would run
    # out within months. SQLite keeps INTEGER, the only type that auto-increments there.
    return Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )


def _big_int() -> Any:
    # What a device counts (Counter32 pages up to 4,294,967,295, levels that large) overflows
    # int4; printer/clamp.py keeps what reaches here within BIGINT. SQLite's INTEGER is 64-bit.
    return Field(default=None, sa_type=BigInteger().with_variant(Integer(), "sqlite"))


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON(), nullable=True))


class Tenant(SQLModel, table=True):
    """An organisation; users of one tenant never see another's sites or printers."""

    __tablename__ = "tenants"
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    # A disabled tenant's users and tokens are refused at once; its data stays.
    disabled: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class Site(SQLModel, table=True):
    """A place printers live; its id is a NATS subject token."""

    __tablename__ = "sites"
    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    name: str = Field(max_length=200)
    poll_interval_s: float | None = Field(
        default=None, description="Overrides the default interval"
    )
    # Ship-to address and billing contact (SiteAccount), sent upstream with each new order.
    account: dict[str, Any] | None = _json()
    monitor_found: bool | None = Field(
        default=None, description="Printers a sweep finds here are monitored at once; None: default"
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class Printer(SQLModel, table=True):
    """One printer: how to reach it (configuration) and what it last said (read model)."""

    __tablename__ = "printers"
    __table_args__ = (
        Index("ix_printers_site_address", "site_id", "address", "port"),
        # Half of each page free on PostgreSQL: a reading's update fits beside the row (HOT,
        # migration 0029); api_metadata's POSTGRESQL_WITH.
    )
    id: str = Field(primary_key=True, max_length=128)
    site_id: str = Field(foreign_key="sites.id", index=True, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    address: str = Field(max_length=255)
    port: int = 161
    protocol: str = Field(default="snmp", max_length=8)
    monitored: bool = True
    # Secrets (community, v3 keys): never returned by the API nor logged.
    credentials: dict[str, Any] | None = _json()
    interval_s: float = 300.0
    # Added without an interval of its own: follows its site's poll_interval_s (or the default).
    interval_follows_site: bool = Field(
        default=False, sa_column_kwargs={"server_default": sa_false()}
    )
    location: str | None = Field(default=None, max_length=255)
    notes: str | None = Field(default=None)
    origin: str = Field(default="manual", max_length=16)
    # A person set this printer's address (added it, or edited address, port or credentials):
    # discovery never moves it; a device elsewhere claiming its serial or MAC is a proposal.
    person_edited: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    # Where a device claiming to be this printer was found, until an operator confirms or
    # dismisses it (POST /printers/{id}/address/confirm, DELETE .../address/proposal).
    proposed_address: str | None = Field(default=None, max_length=255)
    proposed_port: int | None = None
    proposed_at: datetime | None = _ts()
    # Last-writer-wins for configuration: an older PrinterConfigured/Removed never undoes a newer one.
    config_at: datetime | None = _ts()
    # Tombstone: events still in flight for a deleted printer are dropped, not resurrecting it.
    removed_at: datetime | None = _ts()
    vendor: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=200)
    serial: str | None = Field(default=None, max_length=100, index=True)
    sys_object_id: str | None = Field(default=None, max_length=255)
    mac_address: str | None = Field(default=None, max_length=64)
    firmware: str | None = Field(default=None, max_length=200)
    reachable: bool | None = None
    last_seen_at: datetime | None = _ts()
    # Position (tonerwatch_shared.ordering) of the newest reading or (un)reachable applied to the
    # status: seq (None from producers without one) and occurred_at. Older events are stale.
    status_seq: int | None = _big_int()
    status_at: datetime | None = _ts()
    # Start of the current continuous monitoring (no gap between readings over the coverage rule's
    # max_gap_days): service coverage counts from here (tonerwatch_shared.coverage.extend_run).
    monitoring_since: datetime | None = _ts()
    # seq of the newest reading applied (its position, with last_seen_at): what readings say of
    # the printer (trays, counters, device status) is ordered among readings.
    read_seq: int | None = _big_int()
    last_error: str | None = Field(default=None)
    # Why the newest polls failed, as a kind (tonerwatch_shared.failures); None when they answer.
    poll_failure: str | None = Field(default=None, max_length=40)
    device_status: str | None = Field(default=None, max_length=32)
    printer_status: str | None = Field(default=None, max_length=32)
    status_errors: list[str] | None = _json()
    status_text: str | None = Field(default=None)
    # The input trays of the newest reading (Tray.model_dump() each): paper levels for the page.
    trays: list[dict[str, Any]] | None = _json()
    lifetime_pages: int | None = _big_int()
    last_bytes_sent: int | None = _big_int()
    last_bytes_received: int | None = _big_int()
    # Denormalised status.printer_status, kept by the projections: the dashboard orders and counts
    # by it in SQL instead of loading every printer's supplies and alerts.
    status: str = Field(default="pending", max_length=16, index=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class SupplyStateRow(SQLModel, table=True):
    """The current state of one supply of one printer."""

    __tablename__ = "supply_states"
    # Half of each page free on PostgreSQL: a reading's update fits beside the row (HOT,
    # migration 0029); api_metadata's POSTGRESQL_WITH.
    printer_id: str = Field(
        foreign_key="printers.id", primary_key=True, max_length=128, ondelete="CASCADE"
    )
    supply_index: str = Field(primary_key=True, max_length=64)
    description: str = Field(max_length=255)
    part_number: str | None = Field(default=None, max_length=100)
    kind: str = Field(default="other", max_length=32)
    supply_class: str = Field(default="consumed", max_length=16)
    colour: str | None = Field(default=None, max_length=64)
    colour_hex: str | None = Field(default=None, max_length=16)
    level: int | None = _big_int()
    max_capacity: int | None = _big_int()
    percent: float | None = None
    state: str = Field(default="unknown", max_length=32)
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # seq of the reading that set this state (with updated_at, its position): older ones are stale.
    seq: int | None = _big_int()
    # Each new low with when it was first seen, [[unix s, percent], ...] since the last
    # replacement (tonerwatch_shared.forecast), and the forecast it gives (None: too little yet).
    envelope: list[list[float]] | None = _json()
    use_per_day: float | None = None  # percentage points a day
    days_to_empty: float | None = None
    days_to_empty_low: float | None = None
    days_to_empty_high: float | None = None  # None with days_to_empty set: no upper bound


class Reading(SQLModel, table=True):
    """One supply level at one poll (history for charts and forecasts)."""

    __tablename__ = "readings"
    __table_args__ = (
        Index("ix_readings_printer_time", "printer_id", "occurred_at"),
        Index("ix_readings_occurred_at", "occurred_at"),
        # Only rows still waiting for the rollup: small, so finding the next batch is cheap
        # (PostgreSQL's `where`: api_metadata's NOT_ROLLED_UP_INDEXES).
        Index("ix_readings_pending", "id", sqlite_where=text("NOT rolled_up")),
        # History queries add a printer's rows not rolled up yet to its hourly/daily buckets.
        Index(
            "ix_readings_pending_printer",
            "printer_id",
            "occurred_at",
            sqlite_where=text("NOT rolled_up"),
        ),
    )
    id: int | None = _big_id()
    printer_id: str = Field(foreign_key="printers.id", max_length=128, ondelete="CASCADE")
    supply_index: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    percent: float | None = None
    level: int | None = _big_int()
    rolled_up: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class CounterReading(SQLModel, table=True):
    """Page counters at one poll."""

    __tablename__ = "counter_readings"
    __table_args__ = (
        Index("ix_counter_readings_printer_time", "printer_id", "occurred_at"),
        Index("ix_counter_readings_occurred_at", "occurred_at"),
        Index("ix_counter_readings_pending", "id", sqlite_where=text("NOT rolled_up")),
        # History queries add a printer's rows not rolled up yet to its hourly/daily buckets.
        Index(
            "ix_counter_readings_pending_printer",
            "printer_id",
            "occurred_at",
            sqlite_where=text("NOT rolled_up"),
        ),
    )
    id: int | None = _big_id()
    printer_id: str = Field(foreign_key="printers.id", max_length=128, ondelete="CASCADE")
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    lifetime_pages: int | None = _big_int()
    mono_pages: int | None = _big_int()
    colour_pages: int | None = _big_int()
    duplex_pages: int | None = _big_int()
    rolled_up: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class ReadingBucket(SQLModel):
    """Supply levels of one supply over one time bucket (hour or day), merged from raw readings."""

    printer_id: str = Field(
        foreign_key="printers.id", primary_key=True, max_length=128, ondelete="CASCADE"
    )
    bucket_start: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    supply_index: str = Field(primary_key=True, max_length=64)
    count: int = 0  # raw readings merged in
    percent_count: int = 0  # of which had a percent (unknown levels have none)
    sum_percent: float = 0.0
    min_percent: float | None = None
    max_percent: float | None = None
    last_at: datetime = Field(sa_type=UTCDateTime)
    last_percent: float | None = None
    last_level: int | None = _big_int()

    @property
    def avg_percent(self) -> float | None:
        """Return the mean percent over the bucket, None when no reading had one."""
        return self.sum_percent / self.percent_count if self.percent_count else None


class ReadingHourly(ReadingBucket, table=True):
    """Hourly supply levels (kept for hourly_retention_days)."""

    __tablename__ = "readings_hourly"
    __table_args__ = (Index("ix_readings_hourly_bucket", "bucket_start"),)


class ReadingDaily(ReadingBucket, table=True):
    """Daily supply levels (kept forever)."""

    __tablename__ = "readings_daily"


class CounterBucket(SQLModel):
    """Page counters of one printer over one time bucket: the last values seen, and the lowest."""

    printer_id: str = Field(
        foreign_key="printers.id", primary_key=True, max_length=128, ondelete="CASCADE"
    )
    bucket_start: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    count: int = 0
    last_at: datetime = Field(sa_type=UTCDateTime)
    min_lifetime_pages: int | None = _big_int()
    lifetime_pages: int | None = _big_int()
    mono_pages: int | None = _big_int()
    colour_pages: int | None = _big_int()
    duplex_pages: int | None = _big_int()


class CounterHourly(CounterBucket, table=True):
    """Hourly page counters (kept for hourly_retention_days)."""

    __tablename__ = "counters_hourly"
    __table_args__ = (Index("ix_counters_hourly_bucket", "bucket_start"),)


class CounterDaily(CounterBucket, table=True):
    """Daily page counters (kept forever)."""

    __tablename__ = "counters_daily"


class Alert(SQLModel, table=True):
    """One occurrence of an alert condition, from raised to resolved."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_printer_open", "printer_id", "resolved_at"),)
    id: int | None = Field(default=None, primary_key=True)
    alert_id: str = Field(max_length=255, index=True)
    # None for a site-wide alert (a site collector gone silent): then site_id says whose.
    printer_id: str | None = Field(
        default=None, foreign_key="printers.id", max_length=128, ondelete="CASCADE"
    )
    site_id: str | None = Field(
        default=None,
        foreign_key="sites.id",
        max_length=64,
        ondelete="CASCADE",
        index=True,
        description="Site of a site-wide alert (printer_id None); None for a printer's alert",
    )
    rule: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    message: str
    supply_index: str | None = Field(default=None, max_length=64)
    supply_description: str | None = Field(default=None, max_length=255)
    part_number: str | None = Field(default=None, max_length=100)
    colour: str | None = Field(default=None, max_length=64)
    percent: float | None = None
    days_to_empty: float | None = None
    raised_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    resolved_at: datetime | None = _ts()
    acknowledged_by: str | None = Field(default=None, max_length=100)
    acknowledged_at: datetime | None = _ts()
    superseded_by: str | None = Field(
        default=None, max_length=255, description="alert_id of the worse alert that replaced it"
    )
    kind: str | None = Field(
        default=None, max_length=32, index=True, description="Supply kind; None: printer-wide"
    )


class AlertOrder(SQLModel, table=True):
    """The newest crossed/resolved applied (or seen) per alert id: an older one is stale.

    Kept apart from the alert rows, so a "resolved" that arrives before its "crossed" (no open
    alert yet) still stops that late "crossed" from opening one.
    """

    __tablename__ = "alert_order"
    alert_id: str = Field(primary_key=True, max_length=255)
    seq: int | None = _big_int()
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ProcessedEvent(SQLModel, table=True):
    """An event already applied: a redelivery finds it here and changes nothing."""

    __tablename__ = "processed_events"
    event_id: str = Field(primary_key=True, max_length=36)
    consumer: str = Field(max_length=64)
    processed_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )


class OutboxEvent(SQLModel, table=True):
    """An event written with the change that caused it, published after commit (at least once)."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=36, unique=True)
    payload: str
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # Set when NATS refuses the event for good (too large) or it no longer parses: skipped since.
    dead_at: datetime | None = _ts()
    error: str | None = Field(default=None)


class User(SQLModel, table=True):
    """Someone who logs in: argon2 password hash, role, tenant."""

    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    password_hash: str = Field(max_length=255)
    role: str = Field(default="viewer", max_length=16)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    disabled: bool = False
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class ApiToken(SQLModel, table=True):
    """A bearer token or UI session: only its SHA-256 is stored; revocable."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_api_tokens_hash"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(max_length=64)
    kind: str = Field(default="access", max_length=16)
    name: str | None = Field(default=None, max_length=100)
    scopes: str = Field(default="read write", max_length=255)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    expires_at: datetime | None = _ts()
    last_used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()
    # A provider's UI session remembers the customer tenant it switched to (None: its own).
    acting_tenant_id: str | None = Field(default=None, max_length=64)


class AuditEntry(SQLModel, table=True):
    """Who changed what, when (never secrets)."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )
    username: str | None = Field(default=None, max_length=100)
    tenant_id: str | None = Field(default=None, max_length=64)
    # The actor's own tenant when a provider acted in a customer's (tenant_id), else None.
    actor_tenant_id: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=255)
    detail: dict[str, Any] | None = _json()
