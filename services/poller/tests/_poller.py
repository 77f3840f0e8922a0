"""What the poller's tests share: a replica run in this process, and printers' configurations.

Imported relatively (`from ._poller import ...`), as the other services' tests share theirs
(pytest runs in importlib mode: test modules are no package to import from by name).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tonerwatch_poller.service import Settings, run
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, wait_for_event

# A silent printer fails at once: one request of 0.3 s, no retry.
FAST_POLLS: dict[str, Any] = {"poll_timeout_s": 0.3, "poll_retries": 0}


@contextlib.asynccontextmanager
async def replica(
    bus: Bus,
    nats_url: str,
    *,
    fast_polls: bool = True,
    stop_within_s: float = 20.0,
    **settings: Any,
) -> AsyncIterator[Settings]:
    """Run one poller replica (`run`, as `tonerwatch serve poller` does) on the bus's subjects
    until the block ends, then stop it as SIGTERM does; yield its settings.

    settings: Settings fields, over FAST_POLLS (fast_polls=False: the service's own poll timeout
    and retries). The replica must be ready within 15 s and stopped within stop_within_s.
    """
    config = Settings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        **{**(FAST_POLLS if fast_polls else {}), **settings},
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(config, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        yield config
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_within_s)


def configured(
    printer_id: str,
    port: int = 1161,
    community: str = "jetdirect_m252dw",
    interval_s: float = 2.0,
    *,
    site_id: str = "hq",
    **fields: Any,
) -> ev.PrinterConfigured:
    """Return a loopback printer's configuration (SNMPv2c, the community naming the snmpsim
    recording); fields: any other PrinterConfigured field, credentials and address included."""
    return ev.PrinterConfigured(
        **{
            "source": "test",
            "site_id": site_id,
            "printer_id": printer_id,
            "address": "127.0.0.1",
            "port": port,
            "credentials": ev.SnmpCredentials(community=community),
            "interval_s": interval_s,
            **fields,
        }
    )


async def first_reading(bus: Bus, timeout_s: float = 20.0) -> ev.SupplyReading:
    """Return the oldest reading the events stream holds on the bus's subjects (waiting for one):
    from a fresh stream, the first reading published."""
    reading = await wait_for_event(
        bus,
        bus.subjects.filter("supply.reading"),
        lambda e: isinstance(e, ev.SupplyReading),
        timeout_s=timeout_s,
    )
    assert isinstance(reading, ev.SupplyReading)
    return reading
