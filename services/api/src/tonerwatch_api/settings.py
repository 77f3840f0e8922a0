"""The api service's own settings (env TONERWATCH_<FIELD>) on top of the common ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from tonerwatch_shared.settings import CommonSettings


class Settings(CommonSettings):
    """Where the api listens, how it logs people in, and how projections behave."""

    host: str = Field(default="127.0.0.1", description="Listen address")
    port: int = Field(default=8080, ge=0, le=65535)
    admin_password: str | None = Field(
        default=None, repr=False, description="Password of 'admin' at first start; else generated"
    )
    session_secret: str | None = Field(
        default=None,
        repr=False,
        description="Key for CSRF tokens; set the same on every replica (random per process if unset)",
    )
    cookie_secure: bool | None = Field(
        default=None, description="Secure cookies: true, false, or auto (when served over https)"
    )
    public_url: str | None = Field(
        default=None, description="External URL, e.g. https://tw.example.com"
    )
    session_ttl_h: float = Field(default=12.0, gt=0, description="UI session lifetime")
    collector_offline_after_s: float = Field(
        default=200.0,
        gt=0,
        description="A site collector silent this long is shown stale (the alerter's limit too)",
    )
    hub_dir: Path | None = Field(
        default=None,
        description="The hub folder `tonerwatch hub-config` wrote: enables collector enrolment and revocation",
    )
    hub_sync: bool = Field(
        default=False,
        description="The hub's nats-servers follow `tonerwatch hub-sync` (a sidecar beside each): "
        "enrolment and revocation are recorded in the NATS bucket <prefix>_HUB_SITES, and the hub "
        "folder is only read (a read-only mount, e.g. a Kubernetes Secret)",
    )
    hub_leaf_url: str | None = Field(
        default=None,
        description="The hub's leaf-node URL collectors dial (tls://hub.example:7422), given at enrolment",
    )
    token_ttl_h: float = Field(default=24.0, gt=0, description="Lifetime of password-flow tokens")
    # The alerter's own defaults (the same variables): what the printer page shows as in force
    # where no site, kind or printer setting says otherwise.
    low_percent: float = Field(default=20.0, ge=0, le=100, description="Low threshold, percent")
    critical_percent: float = Field(default=5.0, ge=0, le=100, description="Critical threshold")
    lead_time_days: float = Field(default=7.0, gt=0, description="Reorder lead time, days")
    alert_rules: dict[str, Any] = Field(
        default_factory=dict,
        description="The alerter's overrides (TONERWATCH_ALERT_RULES, JSON: defaults, sites, "
        "printers, each with kinds), read to show the thresholds in force",
    )
    auto_monitor_discovered: bool = Field(
        default=False,
        description="Start polling printers discovery finds in sites that chose nothing "
        "(off: they wait for a person to pick them)",
    )
    default_interval_s: float = Field(
        default=300.0, ge=10, description="Poll interval of new printers"
    )
    raw_retention_days: float = Field(
        default=30.0, gt=0, description="Raw readings kept this long, then only hourly/daily"
    )
    hourly_retention_days: float = Field(
        default=365.0, gt=0, description="Hourly history kept this long; daily is kept forever"
    )
    history_upkeep_interval_s: float = Field(
        default=60.0, gt=0, description="How often readings are rolled up and old rows pruned"
    )
    coverage_announce_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often printers' service coverage is looked at and a change announced "
        "on the bus (the syncer's daily snapshot sends the api's figure)",
    )
    coverage_reannounce_s: float = Field(
        default=86_400.0,
        gt=0,
        description="Every printer's coverage is announced again this often (and at start): "
        "a syncer started after the events stream aged the last one out still learns it",
    )
    history_batch: int = Field(
        default=5000, ge=100, description="Rows per rollup/prune transaction (bounds lock time)"
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="Failed logins of one username from one address within login_window_s, then 429",
    )
    login_max_failures_per_ip: int = Field(
        default=20, ge=1, description="Failed logins per client address within login_window_s"
    )
    login_window_s: float = Field(
        default=900.0, gt=0, description="Window in which failed logins are counted"
    )
    login_backoff_s: float = Field(
        default=1.0,
        ge=0,
        description="Wait after the 2nd failed login of a user at an address, doubled per failure after",
    )
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest request body taken, else 413"
    )
    migrate_on_start: bool = Field(
        default=True,
        description="Migrate the schema at start (false: wait, not ready, until `tonerwatch migrate` ran)",
    )
    migrate_lock_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest wait for another process's migration lock (PostgreSQL), then exit 2",
    )
    schema_check_interval_s: float = Field(
        default=5.0, gt=0, description="How often a not-migrated schema is checked again"
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1", description="Proxies whose X-Forwarded-* headers are trusted"
    )

    @field_validator("cookie_secure", mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("auto", ""):
            return None
        return value
