"""The discovery service end to end over the real bus: request -> PrinterFound x3 + DiscoveryFinished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tonerwatch_discovery.devices import BUCKET
from tonerwatch_discovery.service import Settings, run
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import (
    DiscoveryCancelled,
    DiscoveryFinished,
    DiscoveryProgress,
    DiscoveryRequested,
    Event,
    PrinterFound,
    SnmpCredentials,
)
from tonerwatch_shared.subjects import DISCOVERY_FINISHED, DISCOVERY_PROGRESS, PRINTER_FOUND

from ._lab import Lab, random_block, run_lab, site_devices


@pytest_asyncio.fixture(loop_scope="session")
async def lab(printer_walks_dir: Path, tmp_path: Path) -> AsyncIterator[Lab]:
    """The HP and the Konica printers and the three other devices."""
    devices = site_devices(printer_walks_dir, printers=(10, 20))
    async with run_lab(printer_walks_dir, tmp_path, devices) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def service(bus: Bus, nats_url: str) -> AsyncIterator[None]:
    """The discovery service on this test's subjects, stopped after."""
    settings = Settings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        instance="test",
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 20)
    yield
    stop.set()
    await asyncio.wait_for(task, 30)


def _request(job: str, targets: tuple[str, ...], port: int, **kwargs: object) -> DiscoveryRequested:
    return DiscoveryRequested(
        source="test", site_id="hq", job_id=job, targets=targets, port=port, **kwargs
    )


async def _collect(bus: Bus, what: str, job: str, count: int, timeout_s: float) -> list[Event]:
    seen: list[Event] = []

    def wanted(event: Event) -> bool:
        if getattr(event, "job_id", None) == job and event not in seen:
            seen.append(event)
        return len(seen) >= count

    await wait_for_event(
        bus, bus.subjects.filter(what, keyed=what != PRINTER_FOUND), wanted, timeout_s=timeout_s
    )
    return seen


async def test_requested_sweep_publishes_printers_progress_and_finished(
    bus: Bus, service: None, lab: Lab
) -> None:
    # The site's first community is not the agents': the second answers, and travels with the event.
    creds = (SnmpCredentials(community="hq-private"), SnmpCredentials(community="public"))
    await bus.publish(
        _request("job-1", (lab.block,), lab.port, rate_pps=1000.0, timeout_s=0.5, credentials=creds)
    )
    finished = await _collect(bus, DISCOVERY_FINISHED, "job-1", 1, 60)
    (done,) = finished
    assert isinstance(done, DiscoveryFinished)
    assert done.end_condition == "completed"
    assert (done.total, done.probed, done.live, done.printers, done.non_printers) == (
        254,
        254,
        5,
        2,
        3,
    )
    assert done.bytes_sent > 0
    found = await _collect(bus, PRINTER_FOUND, "job-1", 2, 10)
    by_address = {e.address: e for e in found if isinstance(e, PrinterFound)}
    assert set(by_address) == {lab.ip(10), lab.ip(20)}
    hp = by_address[lab.ip(10)]
    assert hp.identity.serial == "VNB3J99999" and hp.supplies and hp.port == lab.port
    assert 0 < hp.bytes_sent + hp.bytes_received < 900
    assert hp.device_key == "sn.hp.VNB3J99999"
    assert hp.credentials_name == "#2 v2c" and hp.credentials == creds[1]
    assert "public" not in repr(hp)  # the community never shows in a log line
    progress = await _collect(bus, DISCOVERY_PROGRESS, "job-1", 1, 10)
    assert isinstance(progress[0], DiscoveryProgress)
    # Known devices are kept for recognising the printers again (serial and MAC keys).
    kv = await bus.key_value(BUCKET)
    keys = await kv.keys()
    assert "hq.sn.hp.VNB3J99999" in keys and "hq.mac.3ca82af638ac" in keys


async def test_cancelled_sweep_finishes_as_cancelled(bus: Bus, service: None) -> None:
    block = f"{random_block()}.0/24"
    await bus.publish(_request("job-2", (block,), 9, rate_pps=20.0))
    await _collect(bus, DISCOVERY_PROGRESS, "job-2", 1, 10)
    await bus.publish(DiscoveryCancelled(source="test", site_id="hq", job_id="job-2"))
    (done,) = await _collect(bus, DISCOVERY_FINISHED, "job-2", 1, 15)
    assert isinstance(done, DiscoveryFinished)
    assert done.end_condition == "cancelled" and done.probed < done.total


async def test_bad_targets_finish_as_failed_with_the_reason(bus: Bus, service: None) -> None:
    await bus.publish(_request("job-3", ("10.0.0.0/33",), 161))
    (done,) = await _collect(bus, DISCOVERY_FINISHED, "job-3", 1, 15)
    assert isinstance(done, DiscoveryFinished)
    assert done.end_condition == "failed" and done.error and "CIDR" in done.error
