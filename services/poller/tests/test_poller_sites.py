"""Work stays at its site: pollers given different sites poll only their own sites' printers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tonerwatch_poller.service import Settings, run
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port
from tonerwatch_shared.testing.infra import eventually


@contextlib.asynccontextmanager
async def site_poller(bus: Bus, nats_url: str, sites: str, instance: str) -> AsyncIterator[None]:
    settings = Settings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        poll_timeout_s=0.3,
        poll_retries=0,
        unreachable_after=1,
        sites=sites,  # type: ignore[arg-type]  # the env form: comma separated
        instance=instance,
    )
    assert settings.sites == sites.split(",")
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 15)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def at_site(site: str, printer_id: str, port: int, community: str) -> ev.PrinterConfigured:
    return ev.PrinterConfigured(
        source="test",
        site_id=site,
        printer_id=printer_id,
        address="127.0.0.1",
        port=port,
        credentials=ev.SnmpCredentials(community=community),
        interval_s=1.0,
    )


async def test_each_sites_poller_polls_only_its_own_sites_printers(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    seen: list[ev.Event] = []

    async def record(event: ev.Event) -> None:
        seen.append(event)

    stop = asyncio.Event()
    listener = asyncio.create_task(
        bus.subscribe_events(bus.subjects.all, stop=stop, handler=record)
    )
    # Site "far" has no poller here: its printer (on a port where nothing answers) must be left
    # alone, neither polled nor marked unreachable by the pollers of other sites.
    printers = [
        at_site("north", "hp-north", snmp_agent.port, "jetdirect_m252dw"),
        at_site("south", "hp-south", snmp_agent.port, "jetdirect_m252dw"),
        at_site("east", "hp-east", snmp_agent.port, "jetdirect_m252dw"),
        at_site("far", "hp-far", free_udp_port(), "jetdirect_m252dw"),
    ]
    try:
        async with (
            site_poller(bus, nats_url, "north", "poller-north"),
            site_poller(bus, nats_url, "south,east", "poller-south-east"),
        ):
            for printer in printers:
                await bus.publish(printer)

            def polled_twice() -> bool:
                readings = [e for e in seen if isinstance(e, ev.SupplyReading)]
                return all(
                    sum(r.printer_id == p for r in readings) >= 2
                    for p in ("hp-north", "hp-south", "hp-east")
                )

            await eventually(polled_twice, timeout_s=20)
            await asyncio.sleep(2.0)  # time enough for hp-far to be polled and fail, were it taken
    finally:
        stop.set()
        await asyncio.wait_for(listener, 10)

    readings = [e for e in seen if isinstance(e, ev.SupplyReading)]
    by_printer: dict[str, set[str]] = {}
    for reading in readings:
        by_printer.setdefault(reading.printer_id, set()).add(reading.source)
    assert by_printer == {
        "hp-north": {"poller/poller-north"},
        "hp-south": {"poller/poller-south-east"},
        "hp-east": {"poller/poller-south-east"},
    }
    assert not [e for e in seen if isinstance(e, (ev.PrinterUnreachable, ev.PrinterReachable))]
