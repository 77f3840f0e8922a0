"""Vendor profiles: every OID list is derived from them, and every counter is read on every poll."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tonerwatch_shared.printer import oids
from tonerwatch_shared.printer.model import SupplyKind
from tonerwatch_shared.printer.parse import parse_counters, parse_identity, parse_snapshot
from tonerwatch_shared.printer.profiles import brother, konica, registry, xerox
from tonerwatch_shared.printer.profiles.base import VendorProfile
from tonerwatch_shared.printer.vendors import BRANDS, ENTERPRISE_VENDORS, brand_in
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.errors import IoStats
from tonerwatch_shared.snmp.learn import private_for, split_scalars
from tonerwatch_shared.snmp.poll import (
    is_volatile,
    learn_columns,
    learn_scalars,
    plan_from_values,
    poll_printer,
)
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Oid, SnmpValue

WALKS = Path(__file__).resolve().parents[3].parent / "shared" / "printer-walks"
PROFILES = {p.name: p for p in registry.PROFILES}


def _slug(profile: VendorProfile) -> str:
    return profile.name.lower().replace(" ", "-")


def _counter_value(oid: str) -> int:
    """A distinct page count per counter OID (so a sum of the wrong ones shows)."""
    return 1000 + sum(int(part) for part in oid.split("."))


def _walk(profile: VendorProfile) -> str:
    """An snmprec of a printer of this maker: Printer MIB basics and every profile scalar."""
    sys_oid = (profile.printer_object_ids or (f"1.3.6.1.4.1.{profile.enterprise}.1",))[0] + ".7"
    lines = {
        oids.SYS_DESCR: f"4|{profile.brands[0][0].upper()} Test Printer",
        oids.SYS_OBJECT_ID: f"6|{sys_oid}",
        oids.SYS_UPTIME: "67|123456",
        f"{oids.HR_DEVICE_TYPE}.1": "6|1.3.6.1.2.1.25.3.1.5",
        f"{oids.HR_DEVICE_STATUS}.1": "2|2",
        f"{oids.PRT_MARKER_LIFE_COUNT}.1.1": "65|5000",
        f"{oids.PRT_MARKER_SUPPLIES}.6.1.1": "4|Black Toner",
        f"{oids.PRT_MARKER_SUPPLIES}.8.1.1": "2|100",
        f"{oids.PRT_MARKER_SUPPLIES}.9.1.1": "2|55",
    }
    counters = {oid for counter in profile.counters for oid in counter.oids}
    for oid in profile.scalars:
        lines[oid] = f"65|{_counter_value(oid)}" if oid in counters else "4|x"
    if profile.private is not None and brother.MAINTENANCE in profile.private.scalars:
        # Real blobs (brother_dcp-9020cdw) so the decoder has something to decode.
        recording = (WALKS / "brother_dcp-9020cdw.snmprec").read_text().splitlines()
        for line in recording:
            oid, _, rest = line.partition("|")
            if oid in profile.private.scalars:
                lines[oid] = rest
    ordered = sorted(lines, key=lambda o: tuple(int(p) for p in o.split(".")))
    return "".join(f"{oid}|{lines[oid]}\n" for oid in ordered)


class RecordingClient(SnmpClient):
    """An SnmpClient that remembers the OIDs of every GET."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[tuple[str, ...]] = []

    async def get(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> dict[str, SnmpValue]:
        """The values, after noting which OIDs were asked."""
        self.gets.append(tuple(oids))
        return await super().get(target, oids, stats=stats)


@pytest.fixture(scope="module")
async def vendor_agent(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SnmpSimulator]:
    """snmpsim serving one made-up printer per profile, community = the vendor's slug."""
    folder = tmp_path_factory.mktemp("vendors")
    files = []
    for profile in registry.PROFILES:
        path = folder / f"{_slug(profile)}.snmprec"
        path.write_text(_walk(profile))
        files.append(path)
    async with SnmpSimulator(files) as agent:
        yield agent


@pytest.mark.parametrize("name", sorted(PROFILES))
async def test_every_counter_of_every_vendor_is_read_on_every_steady_poll(
    vendor_agent: SnmpSimulator, name: str
) -> None:
    profile = PROFILES[name]
    client = RecordingClient()
    try:
        target = vendor_agent.target(_slug(profile))
        first = await poll_printer(client, target)
        client.gets.clear()
        steady = await poll_printer(client, target, first.plan)
    finally:
        await client.close()
    assert first.learned and not steady.learned
    assert len(client.gets) == 1  # one GET
    asked = set(client.gets[0])
    for oid in profile.volatile_scalars:  # every counter and every changing private object
        assert oid in asked, (name, oid)
        assert oid in steady.values
    counters = parse_counters(steady.values)
    for counter in profile.counters:
        expected = sum(_counter_value(oid) for oid in counter.oids)
        assert getattr(counters, counter.field) == expected, (name, counter.field)


def test_every_vendor_scalar_is_asked_of_its_own_printers_on_the_first_poll() -> None:
    _first, private, _covered = split_scalars(learn_scalars(), learn_columns())
    for profile in registry.PROFILES:
        asked = private_for(private, profile.enterprise)
        for oid in profile.scalars:
            assert oid in asked or oid in learn_scalars(), (profile.name, oid)
        for oid in profile.volatile_scalars:
            assert is_volatile(oid), (profile.name, oid)
        for oid in (*profile.model, *profile.serial, *profile.firmware, *profile.device_ids):
            assert not is_volatile(oid), (profile.name, oid)


def test_konica_c250i_counters_are_in_the_steady_plan() -> None:
    # The bug of issue #10: the counters were read on the first poll only, and a steady poll
    # repeated those values until the next full walk (96 polls later).
    recording = load_snmprec(WALKS / "konica_c250i.snmprec")
    plan = plan_from_values(recording)
    for counter in konica.PROFILE.counters:
        for oid in counter.oids:
            assert oid in plan.volatile and oid not in plan.static
    # Only the printer's own hrDeviceStatus is re-read (rows 2-4: processor, network, disk).
    assert f"{oids.HR_DEVICE_STATUS}.1" in plan.volatile
    assert f"{oids.HR_DEVICE_STATUS}.2" in plan.static


def test_xerox_versalink_colour_and_black_impressions() -> None:
    # xcmHrDevDetailValueInteger of the printer, group 20: .33 colour, .34 black impressions
    # (GLPI agent MibSupport::Xerox); no recording holds them, so this proves the entry.
    values: dict[str, SnmpValue] = {
        oids.SYS_DESCR: b"Xerox VersaLink C405 MFP; System 72.61.21",
        oids.SYS_OBJECT_ID: Oid("1.3.6.1.4.1.253.8.62.1.30.1.7.2.1"),
        f"{oids.PRT_MARKER_LIFE_COUNT}.1.1": 61234,
        "1.3.6.1.4.1.253.8.53.13.2.1.6.1.20.33": 20400,
        "1.3.6.1.4.1.253.8.53.13.2.1.6.1.20.34": 40834,
    }
    counters = parse_snapshot(values).counters
    assert (counters.lifetime_pages, counters.colour_pages, counters.mono_pages) == (
        61234,
        20400,
        40834,
    )
    assert {o for c in xerox.PROFILE.counters for o in c.oids} <= set(
        xerox.PROFILE.volatile_scalars
    )


def test_registry_is_the_one_source_of_enterprises_brands_and_printer_oids() -> None:
    assert len({p.enterprise for p in registry.PROFILES}) == len(registry.PROFILES)
    assert {p.enterprise: p.name for p in registry.PROFILES} == ENTERPRISE_VENDORS
    for profile in registry.PROFILES:
        for prefix, brand in profile.brands:
            assert (prefix, brand) in BRANDS
            assert brand_in(f"{prefix.upper()} Model 1") == brand
        for prefix in profile.printer_object_ids:
            assert prefix.startswith(f"1.3.6.1.4.1.{profile.enterprise}.")
    # HP's device ID first: other makers implement it (jetdirect_m252dw, Epson).
    assert registry.DEVICE_ID_OIDS[0] == "1.3.6.1.4.1.11.2.3.9.1.1.7.0"
    assert (registry.DEVICE_ID_OIDS[0],) == registry.SHARED_SCALARS


def test_gestetner_badge_without_sys_object_id_reads_ricohs_private_mib() -> None:
    # gestetner recording without its sysObjectID: the badge still picks Ricoh's private MIB.
    values = {
        o: v
        for o, v in load_snmprec(WALKS / "gestetner.snmprec").items()
        if o != oids.SYS_OBJECT_ID
    }
    ident = parse_identity(values)
    assert (ident.serial, ident.firmware) == ("M6394300657", "1.71")


@pytest.mark.parametrize(
    "model",
    ["MFC-6490CW", "DCP-165C", "MFC-990CW", "MFC-J680DW", "DCP-T510W", "MFC-5890CN"],
)
def test_older_brother_inkjets_without_j_or_t_are_ink(model: str) -> None:
    device_id = f"MFG:Brother;CMD:HBP;MDL:{model};CLS:PRINTER;".encode()
    blob = bytes.fromhex("6f0104000010cc700104000007d0ff")  # black 43 %, cyan 20 %
    snap = parse_snapshot({brother.DEVICE_ID: device_id, brother.MAINTENANCE: blob})
    assert [(s.kind, s.colour) for s in snap.supplies] == [
        (SupplyKind.INK, "black"),
        (SupplyKind.INK, "cyan"),
    ]


@pytest.mark.parametrize("model", ["DCP-9020CDW", "MFC-9130CW", "HL-3170CDW", "MFC-L2710DW"])
def test_brother_colour_lasers_stay_toner(model: str) -> None:
    assert not brother.is_ink_model(f"MFG:Brother;MDL:{model};", None)


def test_brother_drum_known_only_by_pages_left_is_reported() -> None:
    # brother_hl-l2340dw's pages-left blob (drum 0x82: 11,014 pages), its maintenance blob
    # without the drum record.
    recording = load_snmprec(WALKS / "brother_hl-l2340dw.snmprec")
    maintenance = recording[brother.MAINTENANCE]
    assert isinstance(maintenance, bytes)
    without_drum = bytes.fromhex(
        "".join(
            r.hex()
            for r in (
                bytes([rec.ident, 1, len(rec.data)]) + rec.data
                for rec in brother.parse_records(maintenance)
                if rec.ident != 0x41
            )
        )
        + "ff"
    )
    values = {**recording, brother.MAINTENANCE: without_drum}
    drums = [s for s in parse_snapshot(values).supplies if s.kind is SupplyKind.DRUM]
    assert [(d.pages_left, d.level, d.percent, "pages_left_only" in d.flags) for d in drums] == [
        (11014, None, None, True)
    ]
    # With the drum record, the drum is one supply with its level and its pages left.
    full = [s for s in parse_snapshot(recording).supplies if s.kind is SupplyKind.DRUM]
    assert [(d.pages_left, d.percent is not None) for d in full] == [(11014, True)]


@pytest.mark.parametrize(
    "module",
    [
        "tonerwatch_shared.printer.parse",
        "tonerwatch_shared.printer.profiles.registry",
        "tonerwatch_shared.printer.profiles.brother",
        "tonerwatch_shared.printer.vendors",
        "tonerwatch_shared.snmp.poll",
    ],
)
def test_each_entry_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    # The profiles sit between the printer parser and the snmp package (whose __init__ imports
    # the poll, which reads the registry): whichever is imported first must not meet a cycle.
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()[-400:]


def test_brother_drum_in_the_printer_mib_gains_the_pages_left_of_a_pages_only_drum() -> None:
    # brother.snmprec's Printer-MIB "Drum Unit" (11501 of 12000) and brother_hl-l2340dw's
    # pages-left blob without a maintenance blob: one drum, the Printer MIB's, with pages left.
    left = load_snmprec(WALKS / "brother_hl-l2340dw.snmprec")[brother.PAGES_LEFT]
    values = {**load_snmprec(WALKS / "brother.snmprec"), brother.PAGES_LEFT: left}
    drums = [s for s in parse_snapshot(values).supplies if s.kind is SupplyKind.DRUM]
    assert [(d.source, d.level, d.pages_left) for d in drums] == [("printer_mib", 11501, 11014)]
