"""The demo fleet: our own templates are valid sorted recordings, and served levels fall in wall time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from tonerwatch.demo.fleet import (
    MODELS,
    RECORDINGS_DIR,
    DemoPrinter,
    Scenario,
    build_fleet,
    oid_key,
    parse_snmprec,
    run_demo_fleet,
)
from tonerwatch.demo.history import history_events
from tonerwatch_shared.ordering import next_seq
from tonerwatch_shared.printer import oids
from tonerwatch_shared.printer.model import PrinterIdentity, PrinterSnapshot, Supply, SupplyKind
from tonerwatch_shared.printer.profiles import brother, registry
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Missing
from tonerwatch_shared.snmp.udp import UdpSnmpClient

ENTERPRISE = {
    "HP": 11,
    "Xerox": 253,
    "Brother": 2435,
    "Canon": 1602,
    "Ricoh": 367,
    "Kyocera": 1347,
    "Epson": 1248,
    "Lexmark": 641,
    "Konica Minolta": 18334,
}
SUPPLY_LEVEL = f"{oids.PRT_MARKER_SUPPLIES}.9.1"
ALERT_CODE_1 = f"{oids.PRT_ALERT}.7.1.1"
TIME_SCALE = 50.0  # test fleet consumes 50x faster than the demo


def _oids_in_file(path: Path) -> list[str]:
    return [line.split("|", 1)[0] for line in path.read_text(encoding="ascii").splitlines()]


@pytest.mark.parametrize("template", sorted(MODELS))
def test_template_is_sorted_complete_printer_recording(template: str) -> None:
    path = RECORDINGS_DIR / f"{template}.snmprec"
    listed = _oids_in_file(path)
    # snmpsim answers GETNEXT/GETBULK by bisecting the file: it must be in numeric OID order
    assert [oid_key(o) for o in listed] == sorted({oid_key(o) for o in listed})
    values = load_snmprec(path)
    assert len(values) == len(listed)
    vendor = MODELS[template].vendor
    assert str(values[oids.SYS_OBJECT_ID]).startswith(f"1.3.6.1.4.1.{ENTERPRISE[vendor]}.")
    assert str(values[f"{oids.HR_DEVICE_TYPE}.1"]) == "1.3.6.1.2.1.25.3.1.5"  # hrDevicePrinter
    assert isinstance(values[f"{oids.PRT_GENERAL_SERIAL_NUMBER}.1"], bytes)
    assert isinstance(values[f"{oids.PRT_MARKER_LIFE_COUNT}.1.1"], int)
    supplies = [o.rsplit(".", 1)[1] for o in values if o.startswith(SUPPLY_LEVEL + ".")]
    assert supplies
    for index in supplies:
        for column in range(2, 10):  # marker index .. level, RFC 3805 prtMarkerSuppliesEntry
            assert f"{oids.PRT_MARKER_SUPPLIES}.{column}.1.{index}" in values, (column, index)
    assert any(o.startswith(f"{oids.PRT_INPUT}.13.1.") for o in values)  # tray names


def test_hp_templates_carry_ieee1284_device_id() -> None:
    for template in ("hp-m477fdw", "hp-m404dn"):
        device_id = load_snmprec(RECORDINGS_DIR / f"{template}.snmprec")[registry.DEVICE_ID_OIDS[0]]
        assert isinstance(device_id, bytes)
        assert device_id.startswith(b"MFG:HP;MDL:HP ")


def test_fleet_of_30_has_unique_identities_and_nine_vendors(tmp_path: Path) -> None:
    printers = build_fleet(tmp_path, count=30)
    assert len(printers) == 30
    assert len({p.community for p in printers}) == 30
    assert len({p.serial for p in printers}) == 30
    assert len({p.name for p in printers}) == 30
    assert {p.vendor for p in printers} == set(ENTERPRISE)
    assert sorted(f.stem for f in tmp_path.glob("*.snmprec")) == sorted(
        p.community for p in printers
    )
    for printer in printers:
        path = tmp_path / f"{printer.community}.snmprec"
        listed = _oids_in_file(path)
        assert [oid_key(o) for o in listed] == sorted({oid_key(o) for o in listed})
        records = parse_snmprec(path.read_text(encoding="ascii"))
        assert records[oids.SYS_NAME][1] == printer.name
        assert records[oids.SYS_LOCATION][1] == printer.location
        # every varying level is clamped at 0: no printer ever reports a negative level
        for tag, value in records.values():
            if tag.endswith(":numeric"):
                assert "min=0," in value


def test_smaller_fleet_replaces_larger_one_in_same_dir(tmp_path: Path) -> None:
    build_fleet(tmp_path, count=30)
    printers = build_fleet(tmp_path, count=12)
    assert len(list(tmp_path.glob("*.snmprec"))) == 12 == len(printers)


def test_featured_faults_come_first(tmp_path: Path) -> None:
    scenarios = [p.scenario for p in build_fleet(tmp_path, count=24)]
    for wanted in (
        Scenario.PAPER_JAM,
        Scenario.WASTE_TONER_FULL,
        Scenario.LOW_PAPER,
        Scenario.BROTHER_PRIVATE_LOW,
        Scenario.CROSSES_LOW,
        Scenario.CROSSES_CRITICAL,
    ):
        assert wanted in scenarios


def test_crossing_printers_cross_within_three_minutes(tmp_path: Path) -> None:
    # numeric variation: level = initial + rate * seconds since start, so crossing time is exact
    printers = build_fleet(tmp_path, count=30)
    crossing = [
        p for p in printers if p.scenario in (Scenario.CROSSES_LOW, Scenario.CROSSES_CRITICAL)
    ]
    assert len(crossing) >= 4
    for printer in crossing:
        records = parse_snmprec((tmp_path / f"{printer.community}.snmprec").read_text())
        threshold = 20.0 if printer.scenario is Scenario.CROSSES_LOW else 5.0
        times = []
        for oid, (tag, value) in records.items():
            if oid.startswith(SUPPLY_LEVEL + ".") and tag == "2:numeric":
                params = dict(item.split("=") for item in value.split(","))
                index = oid.rsplit(".", 1)[1]
                capacity = float(records[f"{oids.PRT_MARKER_SUPPLIES}.8.1.{index}"][1])
                at = threshold / 100 * capacity
                start, rate = float(params["initial"]), float(params["rate"])
                assert rate < 0
                if start > at:
                    times.append((start - at) / -rate)
        assert min(times) <= 180, printer.name


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[DemoPrinter]]:
    data_dir = tmp_path_factory.mktemp("demo-fleet")
    async with run_demo_fleet(data_dir, count=24, time_scale=TIME_SCALE) as printers:
        yield printers


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client() -> AsyncIterator[UdpSnmpClient]:
    snmp = UdpSnmpClient(max_in_flight=8)
    yield snmp
    await snmp.close()


def _target(printer: DemoPrinter) -> SnmpTarget:
    assert printer.host.startswith("127.77."), "each demo printer has its own loopback address"
    return SnmpTarget(printer.host, printer.port, community=printer.community, timeout=2.0)


def _first(printers: list[DemoPrinter], scenario: Scenario) -> DemoPrinter:
    return next(p for p in printers if p.scenario is scenario)


async def test_hp_m477fdw_black_toner_falls_in_wall_time(
    fleet: list[DemoPrinter], client: UdpSnmpClient
) -> None:
    printer = next(p for p in fleet if p.community.startswith("demo-hp-m477fdw"))
    assert printer.scenario is Scenario.CROSSES_LOW
    black = f"{SUPPLY_LEVEL}.1"
    first = (await client.get(_target(printer), [black]))[black]
    await asyncio.sleep(2.0)
    second = (await client.get(_target(printer), [black]))[black]
    assert isinstance(first, int) and isinstance(second, int)
    # 3 points per 45 s, x50: about 6.7 points in 2 s
    assert 0 <= second < first


async def test_epson_yellow_ink_stops_at_zero(
    fleet: list[DemoPrinter], client: UdpSnmpClient
) -> None:
    printer = next(p for p in fleet if p.community.startswith("demo-epson"))
    yellow = f"{SUPPLY_LEVEL}.4"
    # starts at 8 %, falls 3 points per 80 s x50: empty after ~4.3 s
    deadline = asyncio.get_running_loop().time() + 10
    level = (await client.get(_target(printer), [yellow]))[yellow]
    while level != 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
        level = (await client.get(_target(printer), [yellow]))[yellow]
    assert level == 0
    await asyncio.sleep(1.0)
    assert (await client.get(_target(printer), [yellow]))[yellow] == 0


async def test_hp_m404dn_paper_jam(fleet: list[DemoPrinter], client: UdpSnmpClient) -> None:
    printer = _first(fleet, Scenario.PAPER_JAM)
    assert printer.vendor == "HP"
    error_state = f"{oids.HR_PRINTER_DETECTED_ERROR_STATE}.1"
    device_status = f"{oids.HR_DEVICE_STATUS}.1"
    printer_status = f"{oids.HR_PRINTER_STATUS}.1"
    values = await client.get(
        _target(printer), [error_state, device_status, printer_status, ALERT_CODE_1]
    )
    state = values[error_state]
    assert isinstance(state, bytes)
    assert state[0] & 0x04  # RFC 2790 jammed
    assert values[device_status] == 5  # down
    assert values[printer_status] == 1  # other
    assert values[ALERT_CODE_1] == 8  # PrtAlertCodeTC jam


async def test_xerox_c405_waste_cartridge_full(
    fleet: list[DemoPrinter], client: UdpSnmpClient
) -> None:
    printer = _first(fleet, Scenario.WASTE_TONER_FULL)
    assert printer.vendor == "Xerox"
    supply_class = f"{oids.PRT_MARKER_SUPPLIES}.4.1.6"
    supply_type = f"{oids.PRT_MARKER_SUPPLIES}.5.1.6"
    level = f"{SUPPLY_LEVEL}.6"
    values = await client.get(_target(printer), [supply_class, supply_type, level, ALERT_CODE_1])
    assert values[supply_class] == 4  # receptacle: level is the space left
    assert values[supply_type] == 4  # wasteToner
    assert values[level] == 0
    assert values[ALERT_CODE_1] == 1109  # markerWasteTonerReceptacleFull


async def test_canon_c3530_drawer_2_paper_low(
    fleet: list[DemoPrinter], client: UdpSnmpClient
) -> None:
    printer = _first(fleet, Scenario.LOW_PAPER)
    error_state = f"{oids.HR_PRINTER_DETECTED_ERROR_STATE}.1"
    tray_level = f"{oids.PRT_INPUT}.10.1.2"
    tray_max = f"{oids.PRT_INPUT}.9.1.2"
    values = await client.get(_target(printer), [error_state, tray_level, tray_max, ALERT_CODE_1])
    state = values[error_state]
    assert isinstance(state, bytes) and state[0] & 0x80  # lowPaper
    assert values[tray_level] == 18 and values[tray_max] == 550
    assert values[ALERT_CODE_1] == 807  # inputMediaSupplyLow


async def test_brother_hl_l2350dw_true_level_only_in_private_blob(
    fleet: list[DemoPrinter], client: UdpSnmpClient
) -> None:
    printer = _first(fleet, Scenario.BROTHER_PRIVATE_LOW)
    level = f"{SUPPLY_LEVEL}.1"
    values = await client.get(_target(printer), [level, brother.MAINTENANCE])
    assert values[level] == -3  # RFC 3805: some remaining
    blob = values[brother.MAINTENANCE]
    assert isinstance(blob, bytes) and blob[-1] == 0xFF
    records = {
        blob[i]: int.from_bytes(blob[i + 3 : i + 7], "big") for i in range(0, len(blob) - 1, 7)
    }
    assert records[0x6F] == 1200  # black toner remaining, 1/100 %: 12 %, low


async def test_walk_of_served_printer_returns_every_record_in_order(
    fleet: list[DemoPrinter], client: UdpSnmpClient
) -> None:
    printer = next(p for p in fleet if p.community.startswith("demo-konica"))
    target = _target(printer)
    expected = [
        line.split("|", 1)[0]
        for line in (RECORDINGS_DIR / "konica-c300i.snmprec").read_text().splitlines()
    ]
    walked: list[str] = []
    cursor = "1.3.6"
    for _ in range(len(expected) + 50):  # bounded: at most the file plus the alert rows
        varbinds = await client.get_bulk(target, [cursor], 0, 25)
        done = False
        for oid, value in varbinds:
            if value is Missing.END_OF_MIB_VIEW:
                done = True
                break
            walked.append(oid)
            cursor = oid
        if done:
            break
    assert [oid_key(o) for o in walked] == sorted(oid_key(o) for o in walked)
    assert walked == expected  # a healthy Konica has no alert rows: exactly the template's OIDs


def test_seeded_history_carries_the_pollers_seq_as_it_would_have_been() -> None:
    """Backdated readings are stamped like the poller's (microseconds of their time): in order
    among themselves and older than any live poll, so no receiver takes a live reading as stale."""
    now = datetime.now(UTC)
    snapshot = PrinterSnapshot(
        printer=PrinterIdentity(vendor="Xerox", model="VersaLink C405"),
        supplies=(
            Supply(
                index="1",
                description="Black Toner",
                kind=SupplyKind.TONER,
                percent=60.0,
                level=60,
                max_capacity=100,
            ),
        ),
    )
    events = history_events(
        snapshot, printer_id="p-x", address="127.0.0.1", site_id="demo", now=now
    )
    assert len(events) > 1
    by_time = sorted(events, key=lambda e: e.occurred_at)
    seqs = [e.seq for e in by_time]
    assert all(s is not None for s in seqs) and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert max(s for s in seqs if s is not None) < next_seq(None)
