"""The poller over IPP: an IPP Everywhere printer (Debian's ippeveprinter) on loopback, alone and merged with SNMP."""

from __future__ import annotations

import os

import pytest

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.printer.model import SupplyKind, SupplyState
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.testing.ippeve import Marker, ippeveprinter, missing_tools

from ._poller import configured, first_reading, replica

MARKERS = [
    Marker("Black Toner", "toner", "#000000", 42),
    Marker("Cyan Toner", "toner", "#00FFFF", 7, low=10),
    Marker("Waste Toner Box", "waste-toner", "none", 95, high=90),
]


@pytest.fixture(autouse=True)
def _needs_ippeveprinter() -> None:
    gone = missing_tools()
    if gone:
        reason = f"{', '.join(gone)} not installed (apt-get install cups-ipp-utils dbus-daemon)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


async def test_ipp_only_printer_levels_reach_the_reading(bus: Bus, nats_url: str) -> None:
    async with ippeveprinter(MARKERS) as printer, replica(bus, nats_url):
        await bus.publish(configured("ipp-1", 161, "unused", protocol="ipp", ipp_port=printer.port))
        reading = await first_reading(bus)
    assert reading.protocol == "ipp"
    by_name = {s.description: s for s in reading.supplies}
    assert by_name["Black Toner"].percent == 42 and by_name["Black Toner"].kind == SupplyKind.TONER
    assert by_name["Cyan Toner"].state == SupplyState.LOW
    waste = by_name["Waste Toner Box"]
    assert (
        waste.percent == 5 and waste.state == SupplyState.ALMOST_FULL
    )  # IPP level is fullness; ours is space left
    assert reading.bytes_sent > 0 and reading.bytes_received > 0


async def test_both_protocols_merge_into_one_reading(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    async with ippeveprinter(MARKERS) as printer, replica(bus, nats_url):
        await bus.publish(
            configured("both-1", snmp_agent.port, protocol="both", ipp_port=printer.port)
        )
        reading = await first_reading(bus)
    assert reading.protocol == "both"
    # SNMP's numbers win where it has them; IPP-only markers are added.
    assert reading.printer.model and "M252dw" in reading.printer.model
    snmp_black = [s for s in reading.supplies if s.source == "printer_mib" and s.colour == "black"]
    assert snmp_black and snmp_black[0].percent == 63.0
    assert any(s.source == "ipp" and s.description == "Waste Toner Box" for s in reading.supplies)
    assert reading.requests >= 2
