"""Scanners and other devices on printer makers' OIDs are never offered as printers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tonerwatch_discovery.identify import IdentifyError, identify
from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.simulator import SnmpSimulator

HR_TYPE = "1.3.6.1.2.1.25.3.2.1.2"
HR_OTHER, HR_PROCESSOR, HR_PRINTER, HR_DISK = (f"1.3.6.1.2.1.25.3.1.{n}" for n in (1, 3, 5, 6))

# Made-up agents, each answering as such a device does (community = key).
DEVICES: dict[str, dict[str, str]] = {
    # Brother's document scanners answer on Brother's printer OID with Brother's device ID.
    "brother-ads2700w": {
        "1.3.6.1.2.1.1.1.0": "4|Brother NC-8800w, Firmware Ver.1.09  (18.01.17),MID 8C5-E05",
        "1.3.6.1.2.1.1.2.0": "6|1.3.6.1.4.1.2435.2.3.9.1",
        f"{HR_TYPE}.1": f"6|{HR_OTHER}",
        "1.3.6.1.4.1.2435.2.3.9.1.1.7.0": "4|MFG:Brother;CMD:SCN;MDL:ADS-2700W;CLS:SCANNER;",
        "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.1.0": "4|U63987A8N123456",
    },
    # An HP scanner on HP's JetDirect OID, no Host Resources device table.
    "hp-scanjet-n4600": {
        "1.3.6.1.2.1.1.1.0": "4|HP ScanJet Pro N4600 fnw1",
        "1.3.6.1.2.1.1.2.0": "6|1.3.6.1.4.1.11.2.3.9.1",
        "1.3.6.1.2.1.2.2.1.6.1": "4x|a0b3cc112233",
    },
    # A storage box on Kyocera's printer OID: hrDeviceType says disk and processor.
    "nas-on-kyocera-oid": {
        "1.3.6.1.2.1.1.1.0": "4|Storage appliance",
        "1.3.6.1.2.1.1.2.0": "6|1.3.6.1.4.1.1347.41",
        f"{HR_TYPE}.1": f"6|{HR_DISK}",
        f"{HR_TYPE}.2": f"6|{HR_PROCESSOR}",
    },
    # A printer whose first hrDevice row is its processor and whose Printer MIB lacks the serial
    # the identifying GET reads: the Printer MIB further on still makes it a printer.
    "printer-on-row-2": {
        "1.3.6.1.2.1.1.1.0": "4|Network Printer",
        "1.3.6.1.2.1.1.2.0": "6|1.3.6.1.4.1.99999.1",
        f"{HR_TYPE}.1": f"6|{HR_PROCESSOR}",
        f"{HR_TYPE}.2": f"6|{HR_PRINTER}",
        "1.3.6.1.2.1.43.11.1.1.6.2.1": "4|Black Toner",
        "1.3.6.1.2.1.43.11.1.1.9.2.1": "2|40",
    },
}


def _key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.split("."))


@pytest.fixture(scope="module")
async def agent(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SnmpSimulator]:
    """snmpsim on 127.0.0.1 serving DEVICES."""
    folder = tmp_path_factory.mktemp("not-printers")
    files: list[Path] = []
    for name, records in DEVICES.items():
        path = folder / f"{name}.snmprec"
        path.write_text("".join(f"{o}|{records[o]}\n" for o in sorted(records, key=_key)))
        files.append(path)
    async with SnmpSimulator(files) as simulator:
        yield simulator


@pytest.mark.parametrize("name", ["brother-ads2700w", "hp-scanjet-n4600", "nas-on-kyocera-oid"])
async def test_scanner_or_non_printer_device_type_is_not_offered(
    agent: SnmpSimulator, name: str
) -> None:
    with pytest.raises(IdentifyError) as info:
        await identify(
            agent.host,
            [SnmpCredentials(community=name)],
            port=agent.port,
            timeout_s=1.0,
            snapshot=False,
        )
    assert info.value.reason == "not_a_printer"


async def test_printer_on_hr_device_row_2_is_still_offered(agent: SnmpSimulator) -> None:
    found = await identify(
        agent.host,
        [SnmpCredentials(community="printer-on-row-2")],
        port=agent.port,
        timeout_s=1.0,
        snapshot=False,
    )
    assert found.identity.is_printer
