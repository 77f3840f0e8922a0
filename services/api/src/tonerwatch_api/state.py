"""What every request handler reaches through app.state: database, bus, settings, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.engine import Engine

from tonerwatch_api.live import LiveAlerts
from tonerwatch_api.login_limits import LoginLimiter
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections import Outbox
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus


@dataclass
class AppState:
    """Shared by the REST API, the UI and the background loops of one process."""

    engine: Engine
    bus: Bus
    settings: Settings
    secret: str
    metrics: Metrics
    outbox: Outbox
    live: LiveAlerts
    login_limiter: LoginLimiter
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def source(self) -> str:
        """Return the source name put in events this process publishes."""
        return f"api/{self.settings.instance}"


def app_state(request: Request) -> AppState:
    """Return the AppState of the app serving request."""
    st = request.app.state.tw
    assert isinstance(st, AppState)
    return st
