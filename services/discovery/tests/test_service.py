"""The discovery service end to end over the real bus: request -> PrinterFound x3 + DiscoveryFinished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from tonerwatch_discovery.devices import BUCKET, MemoryDeviceStore
from tonerwatch_discovery.service import DiscoveryService, Settings, run
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
from tonerwatch_shared.kv import list_keys
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.subjects import DISCOVERY_FINISHED, DISCOVERY_PROGRESS, PRINTER_FOUND

from ._lab import Lab, random_block, run_lab, site_devices


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lab(
    printer_walks_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Lab]:
    """The HP and the Konica printers and the three other devices."""
    devices = site_devices(printer_walks_dir, printers=(10, 20))
    async with run_lab(printer_walks_dir, tmp_path_factory.mktemp("lab"), devices) as running:
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
    keys = await list_keys(kv)  # not nats-py's keys(): nats-io/nats.py#842
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


async def test_scheduled_rounds_request_a_sweep_per_site_with_its_targets(bus: Bus) -> None:
    settings = Settings(
        nats_url="nats://127.0.0.1:1",
        instance="test",
        discovery_schedule_interval_s=86400.0,
        discovery_schedule_sites=["hq", "branch"],
        discovery_schedule_targets=["local"],
        discovery_schedule_site_targets={"branch": ["127.66.1.0/24"]},
        discovery_schedule_credentials=[SnmpCredentials(version="3", user="ops")],
    )
    fixed = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    service = DiscoveryService(
        settings, bus, MemoryDeviceStore(), SnmpClient(max_in_flight=2), clock=lambda: fixed
    )
    first, second = service.scheduled_requests(), service.scheduled_requests()
    assert [(r.site_id, r.targets) for r in first] == [
        ("hq", ("local",)),
        ("branch", ("127.66.1.0/24",)),
    ]
    assert {r.job_id for r in first} == {"scheduled-20260302T060000Z-1"}
    # Rounds within the same second still get distinct job ids (a repeat is taken as redelivery).
    assert {r.job_id for r in second} == {"scheduled-20260302T060000Z-2"}
    assert all(r.credentials == (SnmpCredentials(version="3", user="ops"),) for r in first)
    assert not first[0].icmp_prepass  # off unless configured


async def test_scheduled_rediscovery_sweeps_each_site_without_a_request(
    bus: Bus, nats_url: str, lab: Lab
) -> None:
    settings = Settings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        instance="test",
        discovery_rate_pps=1000.0,
        discovery_timeout_s=0.3,
        discovery_snapshot=False,
        discovery_schedule_interval_s=0.5,
        discovery_schedule_sites=["hq", "branch"],
        discovery_schedule_site_targets={"hq": [lab.ip(10)], "branch": [lab.ip(20)]},
        discovery_schedule_port=lab.port,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        finished: dict[str, DiscoveryFinished] = {}

        def both_sites(event: Event) -> bool:
            if isinstance(event, DiscoveryFinished) and event.job_id.startswith("scheduled-"):
                finished.setdefault(event.site_id, event)
            return len(finished) == 2

        await wait_for_event(
            bus, bus.subjects.filter(DISCOVERY_FINISHED, keyed=True), both_sites, timeout_s=20
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert all(f.end_condition == "completed" and f.printers == 1 for f in finished.values())
    found: dict[str, PrinterFound] = {}

    def by_site(event: Event) -> bool:
        if isinstance(event, PrinterFound) and (event.job_id or "").startswith("scheduled-"):
            found.setdefault(event.site_id, event)
        return len(found) == 2

    await wait_for_event(
        bus, bus.subjects.filter(PRINTER_FOUND, keyed=False), by_site, timeout_s=10
    )
    assert found["hq"].address == lab.ip(10) and found["branch"].address == lab.ip(20)
