"""Alerting tables: per-site limits and recipients, per-user mail and responsibility."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from tonerwatch_api.db.models import UTCDateTime, utcnow

# --- tables --------------------------------------------------------------------------------------


class SiteAlertSettings(SQLModel, table=True):
    """A site's alert settings as last saved, and the revision last announced."""

    __tablename__ = "site_alert_settings"
    site_id: str = SQLField(
        foreign_key="sites.id", primary_key=True, max_length=64, ondelete="CASCADE"
    )
    revision: int = 0
    low_percent: float | None = None
    critical_percent: float | None = None
    lead_time_days: float | None = None
    kinds: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON(), nullable=True))
    printers: dict[str, Any] | None = SQLField(
        default=None, sa_column=Column(JSON(), nullable=True)
    )
    recipients: list[str] | None = SQLField(default=None, sa_column=Column(JSON(), nullable=True))
    updated_by: str | None = SQLField(default=None, max_length=100)
    updated_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class UserAlerting(SQLModel, table=True):
    """A user's mail address for alerts, the sites and printer groups they answer for (none: all)."""

    __tablename__ = "user_alerting"
    user_id: int = SQLField(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    email: str | None = SQLField(default=None, max_length=254)
    sites: list[str] | None = SQLField(default=None, sa_column=Column(JSON(), nullable=True))
    groups: list[int] | None = SQLField(default=None, sa_column=Column(JSON(), nullable=True))


class MailServer(SQLModel, table=True):
    """An SMTP server set in the web UI; its password sealed at rest, never shown back."""

    __tablename__ = "mail_servers"
    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(max_length=100, unique=True)
    priority: int = 100
    host: str = SQLField(max_length=253)
    port: int = 587
    security: str = SQLField(default="starttls", max_length=16)
    username: str | None = SQLField(default=None, max_length=254)
    password: str | None = SQLField(default=None, max_length=1000)
    sender: str = SQLField(max_length=254)
    validate_certs: bool = True
    revision: int = 0
    updated_by: str | None = SQLField(default=None, max_length=100)
    updated_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


ALERT_SETTINGS_TABLES: tuple[type[SQLModel], ...] = (SiteAlertSettings, UserAlerting, MailServer)
