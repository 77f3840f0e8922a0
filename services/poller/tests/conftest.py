"""Fixtures of the poller's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tonerwatch_poller.service import Poller, Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.snmp.client import SnmpClient


@pytest.fixture
async def poller(bus: Bus, nats_url: str) -> AsyncIterator[Poller]:
    """Return a poller replica on the test's bus, its KV mirrors started (not running its loops)."""
    settings = Settings(nats_url=nats_url, poll_timeout_s=1.0, poll_retries=0)
    p = Poller(
        settings=settings,
        bus=bus,
        client=SnmpClient(),
        printers=await bus.key_value("POLLER_PRINTERS"),
        health=await bus.key_value("POLLER_HEALTH"),
    )
    await p.ensure_jobs_stream()
    await p.start_mirrors()
    yield p
    await p.stop_mirrors()
    await p.client.close()
