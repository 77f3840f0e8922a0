"""Structured logging: JSON lines when not on a terminal, with service and site in every line."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

current_site: contextvars.ContextVar[str | None] = contextvars.ContextVar("tw_site", default=None)
current_service: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tw_service", default=None
)

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.default_service = service

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "service"):
            record.service = current_service.get() or self.default_service
        if not hasattr(record, "site"):
            record.site = current_site.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, service, site, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": getattr(record, "service", None),
            "site": getattr(record, "site", None),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in out:
                out[key] = (
                    value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
                )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-7s %(service)s%(site_s)s %(name)s: %(message)s", "%H:%M:%S"
        )

    def format(self, record: logging.LogRecord) -> str:
        site = getattr(record, "site", None)
        record.site_s = f"[{site}]" if site else ""
        return super().format(record)


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Send all logging to stderr as JSON lines (or text on a terminal), tagged with service and site."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter stays at WARNING unless we debug.
    for noisy in ("nats", "asyncio", "uvicorn.access", "pysnmp", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "DEBUG" else logging.DEBUG)
