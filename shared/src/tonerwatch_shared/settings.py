"""Settings from the environment (prefix TONERWATCH_), a .env file and secret files, validated at start."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tonerwatch_shared.coverage import CoverageRule

ENV_PREFIX = "TONERWATCH_"
# Sizing rule (docs/sizing.md): ~3 KiB per reading x printers x polls a day x days kept.
# 2 GiB keeps 7 days of 5-minute polls of ~275 printers and fits a 5 GiB volume with room for
# the rest; larger fleets set TONERWATCH_EVENTS_MAX_BYTES (JetStream reserves it at creation).
DEFAULT_EVENTS_MAX_BYTES = 2 * 1024**3
DEFAULT_POLLJOBS_MAX_BYTES = 64 * 1024**2
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable and what to do."""


class CommonSettings(BaseSettings):
    """Settings every service shares: where the bus and the database are, and how to log."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    nats_url: str | None = Field(
        default=None,
        description="NATS server(s), comma separated; unset means embedded (tonerwatch up)",
    )
    nats_user: str | None = Field(
        default=None, description="NATS user name of this service (each service its own)"
    )
    nats_creds: Path | None = Field(
        default=None, description="NATS credentials file (JWT + nkey), instead of user/password"
    )
    nats_password: str | None = Field(
        default=None,
        repr=False,
        validate_default=True,
        description="NATS password of nats_user (secret: env or file)",
    )
    nats_connect_timeout_s: float = Field(default=5.0, gt=0)
    nats_connect_attempts: int = Field(
        default=30, ge=1, description="Connect retries with back-off"
    )
    secret_key: str | None = Field(
        default=None,
        repr=False,
        min_length=32,
        description="Key sealing secrets at rest and in events (SNMP communities and keys): any "
        "random string of 32+ characters, the same for the api, pollers and discovery (secret)",
    )
    previous_secret_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="Keys TONERWATCH_SECRET_KEY replaced, comma separated: values sealed with "
        "them still open until the api seals them again with the current key (secret)",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means SQLite in the data dir"
    )
    data_dir: Path | None = Field(
        default=None, description="Where embedded NATS and SQLite keep data"
    )
    subject_root: str = Field(default="tw", description="First token of every NATS subject")
    stream_prefix: str = Field(default="TW", description="Prefix of JetStream stream/bucket names")
    event_max_age_days: float = Field(
        default=7.0, gt=0, description="How long events stay in JetStream"
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Replicas of every stream and KV bucket TonerWatch creates (3 in a NATS cluster); "
        "never lowers what an operator set",
    )
    events_max_bytes: int = Field(
        default=DEFAULT_EVENTS_MAX_BYTES,
        ge=1024 * 1024,
        description="Byte limit of the events stream (sizing rule: docs/sizing.md); when full, new "
        "events are refused, not old ones dropped",
    )
    events_max_age_s: float | None = Field(
        default=None,
        gt=0,
        description="Age limit of the events stream; unset: TONERWATCH_EVENT_MAX_AGE_DAYS",
    )
    polljobs_max_bytes: int = Field(
        default=DEFAULT_POLLJOBS_MAX_BYTES,
        ge=1024 * 1024,
        description="Byte limit of the poll-jobs stream (one ~200-byte job per monitored printer)",
    )
    coverage_rules: dict[str, CoverageRule] = Field(
        default_factory=dict,
        description="Service coverage rule per vendor (JSON; '*' for the rest); default "
        "eConcierge's (the api shows coverage, the syncer sends it in the daily snapshot)",
    )
    retry_base_s: float = Field(
        default=1.0,
        gt=0,
        description="First wait before a failed event is retried (doubles each time)",
    )
    retry_cap_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait between retries of an event and between "
        "checks of a dependency that is down (consumers retry for as long as the stream keeps events)",
    )
    poison_after: int = Field(
        default=20,
        ge=1,
        description="Failures of an event for its own reasons (dependencies up) before it is set "
        "aside in the dead-letter stream <prefix>_DEAD",
    )
    ack_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a consumer may take over one event before NATS redelivers it",
    )
    default_site: str = Field(default="default", description="Site id used when none is given")
    sites: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Sites whose poll jobs and discovery requests this service takes, comma "
        "separated (a collector: its own site; the hub: the sites it reaches itself); "
        "empty: every site",
    )
    log_level: str = Field(default="INFO")
    log_format: Literal["auto", "json", "text"] = "auto"
    ops_host: str = Field(default="127.0.0.1", description="Address of /healthz, /readyz, /metrics")
    ops_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of the ops endpoints; unset: not served"
    )
    instance: str = Field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")

    @field_validator("subject_root", "stream_prefix", "default_site")
    @classmethod
    def _subject_token(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError(
                "use letters, digits, '_' or '-' only (it becomes part of NATS subjects)"
            )
        return value

    @field_validator("sites", mode="before")
    @classmethod
    def _site_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for site in value:
                if not isinstance(site, str) or not _TOKEN.match(site):
                    raise ValueError(f"site {site!r}: use letters, digits, '_' or '-' only")
        return value

    @field_validator("previous_secret_keys", mode="before")
    @classmethod
    def _key_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and any(len(str(k)) < 32 for k in value):
            raise ValueError("each key needs at least 32 characters")
        return value

    @field_validator("nats_password")
    @classmethod
    def _password_with_user(cls, value: str | None, info: ValidationInfo) -> str | None:
        # An empty password is one anyone can guess: refuse to start rather than connect with it.
        if info.data.get("nats_user") and not info.data.get("nats_creds") and not value:
            raise ValueError("set it (non-empty) when TONERWATCH_NATS_USER is set")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    @property
    def events_max_age(self) -> float:
        """Return the events stream's age limit in seconds."""
        return self.events_max_age_s or self.event_max_age_days * 86400

    def require_nats_url(self) -> str:
        """Return the NATS URL or raise SettingsError saying how to set it."""
        if not self.nats_url:
            raise SettingsError(
                f"{ENV_PREFIX}NATS_URL is not set: point it at a NATS server with JetStream "
                "(e.g. nats://127.0.0.1:4222), or run 'tonerwatch up' for the embedded default"
            )
        return self.nats_url

    def require_database_url(self) -> str:
        """Return the database URL or raise SettingsError saying how to set it."""
        if not self.database_url:
            raise SettingsError(
                f"{ENV_PREFIX}DATABASE_URL is not set: e.g. postgresql://user@host/db or "
                "sqlite:////var/lib/tonerwatch/tonerwatch.db"
            )
        return self.database_url


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], *, secrets_dir: str | Path | None = None, **overrides: Any) -> S:
    """Return validated settings of type cls, or raise SettingsError naming the bad variable."""
    secrets = secrets_dir or os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
    try:
        if secrets:
            return cls(_secrets_dir=str(secrets), **overrides)
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """Return one line per bad field, named as its environment variable."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "?"
        env = ENV_PREFIX + field.upper()
        secret = any(w in field for w in ("password", "key", "secret", "community", "token"))
        got = "" if secret else f" (got {err.get('input')!r})"
        lines.append(f"{env}: {err['msg']}{got}")
    return "invalid settings: " + "; ".join(lines)
