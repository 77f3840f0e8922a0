"""Work stays at its site: pollers given different sites poll only their own sites' printers."""

from __future__ import annotations

import asyncio

from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port
from tonerwatch_shared.testing.infra import eventually

from ._poller import configured, replica


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
        configured("hp-north", snmp_agent.port, "jetdirect_m252dw", 1.0, site_id="north"),
        configured("hp-south", snmp_agent.port, "jetdirect_m252dw", 1.0, site_id="south"),
        configured("hp-east", snmp_agent.port, "jetdirect_m252dw", 1.0, site_id="east"),
        configured("hp-far", free_udp_port(), "jetdirect_m252dw", 1.0, site_id="far"),
    ]
    try:
        async with (
            replica(
                bus, nats_url, unreachable_after=1, sites="north", instance="poller-north"
            ) as north,
            replica(
                bus, nats_url, unreachable_after=1, sites="south,east", instance="poller-south-east"
            ) as south_east,
        ):
            # Sites as the environment gives them: comma separated.
            assert (north.sites, south_east.sites) == (["north"], ["south", "east"])
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
