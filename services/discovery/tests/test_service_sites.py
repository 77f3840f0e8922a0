"""Work stays at its site: discovery given a site takes only that site's sweep requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tonerwatch_discovery.service import Settings, run
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import DiscoveryFinished, DiscoveryRequested, Event
from tonerwatch_shared.testing.infra import eventually


@contextlib.asynccontextmanager
async def site_discovery(bus: Bus, nats_url: str, site: str) -> AsyncIterator[None]:
    settings = Settings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        sites=[site],
        instance=f"discovery-{site}",
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_each_sites_discovery_sweeps_only_its_own_sites_requests(
    bus: Bus, nats_url: str
) -> None:
    finished: list[Event] = []

    async def record(event: Event) -> None:
        if isinstance(event, DiscoveryFinished):
            finished.append(event)

    stop = asyncio.Event()
    listener = asyncio.create_task(
        bus.subscribe_events(
            DiscoveryFinished.subject_filter(bus.subjects), stop=stop, handler=record
        )
    )
    try:
        async with site_discovery(bus, nats_url, "north"), site_discovery(bus, nats_url, "south"):
            # A malformed block: each sweep fails before sending anything, so no traffic at all.
            for site in ("north", "south", "far"):
                await bus.publish(
                    DiscoveryRequested(
                        source="test",
                        site_id=site,
                        job_id=f"job-{site}",
                        targets=("10.0.0.0/33",),
                        port=161,
                    )
                )
            await eventually(lambda: len(finished) >= 2, timeout_s=15)
            await asyncio.sleep(1.5)  # a site nobody serves stays unanswered
    finally:
        stop.set()
        await asyncio.wait_for(listener, 10)
    answered = sorted((e.site_id, e.source) for e in finished)
    assert answered == [
        ("north", "discovery/discovery-north"),
        ("south", "discovery/discovery-south"),
    ]
