"""The services the command runs, loaded by name: the CLI's only way into a service package."""

from __future__ import annotations

import importlib
from typing import Any

SERVICES = ("api", "poller", "alerter", "discovery", "syncer")


class CliError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


def service_module(name: str) -> Any:
    """Return the service's `service` module (Settings and run; discovery also sweep_once)."""
    if name not in SERVICES:
        raise CliError(f"no service {name!r}; one of {', '.join(SERVICES)}")
    return importlib.import_module(f"tonerwatch_{name}.service")
