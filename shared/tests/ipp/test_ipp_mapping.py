"""Pure mapping of Get-Printer-Attributes results (as pyipp returns them) onto the printer model."""

from __future__ import annotations

from typing import Any

import pytest

from tonerwatch_shared.ipp import (
    colour_from_hex,
    merge_snapshots,
    parse_device_id,
    parse_ipp_attributes,
)
from tonerwatch_shared.ipp.keywords import MARKER_TYPES
from tonerwatch_shared.printer.model import (
    PrinterIdentity,
    PrinterSnapshot,
    PrinterStatus,
    Supply,
    SupplyClass,
    SupplyKind,
    SupplyState,
)

# The printer group the way pyipp hands it over from ippeveprinter: lists for 1setOf, a plain
# int for printer-state, suffixed reasons.
COLOUR_LASER: dict[str, Any] = {
    "printer-make-and-model": "HP Color LaserJet Pro M454dw",
    "printer-device-id": "MFG:HP;MDL:HP Color LaserJet Pro M454dw;CMD:PJL,PCL,PWG;SN:CNB1A2B3C4;",
    "printer-firmware-string-version": ["002.2126A", "ignored second component"],
    "printer-info": "Sales colour printer",
    "printer-location": "Floor 2, room 214",
    "printer-uuid": "urn:uuid:564e4333-3830-3145-3330-5c60ba1a2b3c",
    "marker-names": [
        "Black Cartridge HP 415A",
        "Cyan Cartridge HP 415A",
        "Magenta Cartridge HP 415A",
        "Yellow Cartridge HP 415A",
        "Imaging Drum",
        "Toner Collection Unit",
    ],
    "marker-colors": ["#000000", "#00FFFF", "#FF00FF", "#FFFF00", "none", "none"],
    "marker-types": [
        "toner-cartridge",
        "toner-cartridge",
        "toner-cartridge",
        "toner-cartridge",
        "opc",
        "waste-toner",
    ],
    "marker-levels": [8, -3, 0, 64, 55, 93],
    "marker-low-levels": [10, 10, 10, 10, 5, 0],
    "marker-high-levels": [100, 100, 100, 100, 100, 90],
    "printer-state": 3,
    "printer-state-reasons": ["toner-low-report", "toner-empty-warning"],
    "printer-state-message": "Magenta cartridge empty",
}


def _by_index(snapshot: PrinterSnapshot) -> dict[str, Supply]:
    return {s.index: s for s in snapshot.supplies}


def test_colour_laser_supplies_levels_and_states() -> None:
    supplies = _by_index(parse_ipp_attributes(COLOUR_LASER))
    assert list(supplies) == [f"ipp.{n}" for n in range(1, 7)]
    black, cyan, magenta, yellow, drum, waste = supplies.values()
    assert (black.kind, black.colour, black.colour_hex) == (SupplyKind.TONER, "black", "#000000")
    assert (black.percent, black.state) == (8.0, SupplyState.LOW)  # 8 <= low level 10
    assert (cyan.percent, cyan.state) == (None, SupplyState.SOME_REMAINING)  # -3
    assert (magenta.percent, magenta.state) == (0.0, SupplyState.EMPTY)
    assert (yellow.percent, yellow.state, yellow.colour) == (64.0, SupplyState.OK, "yellow")
    assert (drum.kind, drum.colour, drum.state) == (SupplyKind.DRUM, None, SupplyState.OK)
    assert waste.kind is SupplyKind.WASTE_TONER
    assert waste.supply_class is SupplyClass.RECEPTACLE
    # Level 93 is fullness; the model keeps space left, and 93 >= high level 90 is almost full.
    assert (waste.level, waste.percent, waste.state) == (93, 7.0, SupplyState.ALMOST_FULL)
    assert all(s.source == "ipp" and s.unit == "percent" for s in supplies.values())
    assert black.description == "Black Cartridge HP 415A"


def test_colour_laser_identity_from_device_id_and_make_and_model() -> None:
    printer = parse_ipp_attributes(COLOUR_LASER).printer
    assert printer.vendor == "HP"
    assert printer.model == "Color LaserJet Pro M454dw"
    assert printer.serial == "CNB1A2B3C4"
    assert printer.firmware == "002.2126A"
    assert printer.sys_location == "Floor 2, room 214"
    assert printer.sys_name == "Sales colour printer"
    assert printer.uuid == "urn:uuid:564e4333-3830-3145-3330-5c60ba1a2b3c"


def test_colour_laser_status_from_state_and_reasons() -> None:
    status = parse_ipp_attributes(COLOUR_LASER).status
    assert status.printer_status == "idle"
    assert status.errors == ("low_toner", "no_toner")
    assert [(a.code, a.severity) for a in status.alerts] == [
        ("toner-low", "info"),
        ("toner-empty", "warning"),
    ]
    assert status.device_status == "warning"
    assert status.status_text == "Magenta cartridge empty"


@pytest.mark.parametrize(
    ("level", "percent", "state", "flags"),
    [
        (-1, None, SupplyState.UNKNOWN, ()),  # unavailable
        (-2, None, SupplyState.UNKNOWN, ()),  # unknown
        (-3, None, SupplyState.SOME_REMAINING, ()),  # unknown, some remaining
        (-7, None, SupplyState.UNKNOWN, ("invalid_level",)),
        (0, 0.0, SupplyState.EMPTY, ()),
        (15, 15.0, SupplyState.LOW, ()),  # equal to the low level counts as low
        (16, 16.0, SupplyState.OK, ()),
        (140, 100.0, SupplyState.OK, ("clamped",)),
    ],
)
def test_consumed_level_semantics(
    level: int, percent: float | None, state: SupplyState, flags: tuple[str, ...]
) -> None:
    attrs = {
        "marker-names": "Black Ink",
        "marker-types": "ink",
        "marker-colors": "#000000",
        "marker-levels": level,
        "marker-low-levels": 15,
    }
    (supply,) = parse_ipp_attributes(attrs).supplies
    assert (supply.percent, supply.state, supply.flags) == (percent, state, flags)
    assert supply.kind is SupplyKind.INK
    assert supply.level == level


@pytest.mark.parametrize(
    ("level", "space_left", "state"),
    [
        (0, 100.0, SupplyState.OK),
        (30, 70.0, SupplyState.OK),
        (84, 16.0, SupplyState.OK),
        (85, 15.0, SupplyState.ALMOST_FULL),
        (100, 0.0, SupplyState.FULL),
        (-3, None, SupplyState.SOME_REMAINING),
        (-2, None, SupplyState.UNKNOWN),
    ],
)
def test_waste_ink_box_level_is_fullness(
    level: int, space_left: float | None, state: SupplyState
) -> None:
    attrs = {
        "marker-names": ["Maintenance Box"],
        "marker-types": ["waste-ink"],
        "marker-colors": ["none"],
        "marker-levels": [level],
        "marker-low-levels": [0],
        "marker-high-levels": [85],
    }
    (supply,) = parse_ipp_attributes(attrs).supplies
    assert supply.kind is SupplyKind.WASTE_INK
    assert supply.supply_class is SupplyClass.RECEPTACLE
    assert (supply.percent, supply.state) == (space_left, state)


def test_waste_receptacle_without_high_level_is_only_full_at_100() -> None:
    attrs = {"marker-types": ["waste-toner", "waste-toner"], "marker-levels": [99, 100]}
    almost, full = parse_ipp_attributes(attrs).supplies
    assert (almost.state, full.state) == (SupplyState.OK, SupplyState.FULL)
    assert almost.description == "waste toner"  # no marker-names: the type names it


def test_every_marker_type_keyword_maps_and_waste_ones_are_receptacles() -> None:
    keywords = list(MARKER_TYPES)
    attrs = {"marker-types": keywords, "marker-levels": [50] * len(keywords)}
    supplies = parse_ipp_attributes(attrs).supplies
    assert len(keywords) == 34  # CUPS' full marker-types list
    for keyword, supply in zip(keywords, supplies, strict=True):
        assert supply.kind is MARKER_TYPES[keyword]
        assert (supply.supply_class is SupplyClass.RECEPTACLE) == keyword.startswith("waste-")
        assert supply.flags == ()
    kinds = {
        kw: MARKER_TYPES[kw]
        for kw in (
            "opc",
            "fuser",
            "transfer-unit",
            "staples",
            "cleaner-unit",
            "developer",
            "solid-wax",
        )
    }
    assert kinds == {
        "opc": SupplyKind.DRUM,
        "fuser": SupplyKind.FUSER,
        "transfer-unit": SupplyKind.TRANSFER,
        "staples": SupplyKind.STAPLES,
        "cleaner-unit": SupplyKind.CLEANER,
        "developer": SupplyKind.DEVELOPER,
        "solid-wax": SupplyKind.SOLID_WAX,
    }


def test_unknown_marker_type_is_other_and_flagged() -> None:
    (supply,) = parse_ipp_attributes({"marker-types": "glitter", "marker-levels": 40}).supplies
    assert supply.kind is SupplyKind.OTHER
    assert supply.flags == ("marker_type=glitter",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("#000000", ("black", "#000000")),
        ("#00ffff", ("cyan", "#00FFFF")),
        ("#E0FFFF", ("light cyan", "#E0FFFF")),
        ("#FF77FF", ("light magenta", "#FF77FF")),
        ("#606060", ("light black", "#606060")),
        ("#00AEEF", ("cyan", "#00AEEF")),  # a vendor's process cyan: nearest primary
        ("#EC008C", ("magenta", "#EC008C")),
        ("#8B4513", (None, "#8B4513")),  # brown-ish: too far from any primary to name
        ("#000000#FFFFFF", ("black+white", "#000000#FFFFFF")),
        ("#00FFFF#FF00FF#FFFF00", ("cmy", "#00FFFF#FF00FF#FFFF00")),
        ("none", (None, None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
)
def test_marker_colour_names(value: str | None, expected: tuple[str | None, str | None]) -> None:
    assert colour_from_hex(value) == expected


@pytest.mark.parametrize(
    ("reasons", "errors"),
    [
        (["media-low-report"], ("low_paper",)),
        (["media-empty-error"], ("no_paper",)),
        (["media-needed"], ("no_paper",)),
        (["toner-low-warning", "marker-supply-low-report"], ("low_toner",)),
        (["toner-empty-error"], ("no_toner",)),
        (["marker-supply-empty-warning"], ("no_toner",)),
        (["door-open-error", "cover-open-report"], ("door_open",)),
        (["media-jam-error"], ("jammed",)),
        (["stacker-jam-error"], ("jammed",)),  # PWG 5100.9 finisher jams
        (["offline-report"], ("offline",)),
        (["service-needed-warning"], ("service_requested",)),
        (["input-tray-missing-error"], ("input_tray_missing",)),
        (["output-tray-missing-error"], ("output_tray_missing",)),
        (["marker-supply-missing-error"], ("marker_supply_missing",)),
        (["output-area-almost-full-report"], ("output_near_full",)),
        (["output-area-full-error"], ("output_full",)),
        (["none"], ()),
        (["spool-area-full-report"], ()),  # kept as an alert, no Printer MIB bit
    ],
)
def test_state_reasons_map_to_printer_mib_error_names(
    reasons: list[str], errors: tuple[str, ...]
) -> None:
    status = parse_ipp_attributes({"printer-state": 3, "printer-state-reasons": reasons}).status
    assert status.errors == errors
    assert len(status.alerts) == len([r for r in reasons if r != "none"])


def test_reason_without_suffix_is_an_error_and_takes_the_device_down() -> None:
    status = parse_ipp_attributes({"printer-state": 4, "printer-state-reasons": "media-jam"}).status
    assert status.printer_status == "printing"
    assert status.alerts[0].severity == "critical"
    assert status.device_status == "down"


@pytest.mark.parametrize(
    ("state", "printer_status", "device_status"),
    [
        (3, "idle", "running"),
        (4, "printing", "running"),
        (5, "other", "down"),
        ("stopped", "other", "down"),
        (9, "unknown", None),
    ],
)
def test_printer_state_enum(state: object, printer_status: str, device_status: str | None) -> None:
    status = parse_ipp_attributes({"printer-state": state, "printer-state-reasons": "none"}).status
    assert (status.printer_status, status.device_status) == (printer_status, device_status)
    assert status.alerts == ()


def test_identity_without_device_id_splits_make_and_model() -> None:
    printer = parse_ipp_attributes({"printer-make-and-model": "Brother HL-L2350DW series"}).printer
    assert (printer.vendor, printer.model) == ("Brother", "HL-L2350DW series")


def test_identity_hewlett_packard_mfg_becomes_hp_and_model_loses_the_brand() -> None:
    attrs = {
        "printer-device-id": "MANUFACTURER:Hewlett-Packard;MODEL:HP LaserJet 400 M401dne;",
        "printer-serial-number": "PHBLK12345",
    }
    printer = parse_ipp_attributes(attrs).printer
    assert (printer.vendor, printer.model, printer.serial) == (
        "HP",
        "LaserJet 400 M401dne",
        "PHBLK12345",
    )


def test_device_id_parsing_keeps_first_value_and_ignores_junk() -> None:
    assert parse_device_id("MFG:EPSON;MDL:ET-2850 Series;CLS:PRINTER;MFG:other;junk;") == {
        "MFG": "EPSON",
        "MDL": "ET-2850 Series",
        "CLS": "PRINTER",
    }


def test_printer_without_marker_attributes_lists_them_missing() -> None:
    snapshot = parse_ipp_attributes({"printer-state": 3, "printer-make-and-model": "X Y"})
    assert snapshot.supplies == ()
    assert "ipp:marker-levels" in snapshot.missing
    assert "ipp:printer-state" not in snapshot.missing


def _snmp_snapshot() -> PrinterSnapshot:
    return PrinterSnapshot(
        printer=PrinterIdentity(vendor="HP", model="Color LaserJet Pro M454dw", serial=None),
        supplies=(
            Supply(
                index="1.1",
                description="Black Cartridge",
                kind=SupplyKind.TONER,
                colour="black",
                level=-3,
                max_capacity=100,
                percent=None,
                state=SupplyState.SOME_REMAINING,
            ),
            Supply(
                index="1.2",
                description="Cyan Cartridge",
                kind=SupplyKind.TONER,
                colour="cyan",
                level=-3,
                max_capacity=100,
                percent=None,
                state=SupplyState.SOME_REMAINING,
            ),
            Supply(
                index="1.3",
                description="Yellow Cartridge",
                kind=SupplyKind.TONER,
                colour="yellow",
                level=40,
                max_capacity=100,
                percent=40.0,
                state=SupplyState.OK,
            ),
        ),
        status=PrinterStatus(device_status="running", printer_status="idle", errors=("low_paper",)),
        missing=("prtMarkerLifeCount",),
    )


def test_merge_fills_snmp_some_remaining_from_ipp_percent_of_same_kind_and_colour() -> None:
    ipp = parse_ipp_attributes(
        {
            "marker-names": ["Black", "Yellow", "Magenta", "Waste"],
            "marker-types": ["toner", "toner", "toner", "waste-toner"],
            "marker-colors": ["#000000", "#FFFF00", "#FF00FF", "none"],
            "marker-levels": [8, 90, 50, 20],
            "marker-low-levels": [10, 10, 10, 0],
            "marker-high-levels": [100, 100, 100, 90],
            "printer-state": 3,
            "printer-state-reasons": ["toner-low-report"],
            "printer-device-id": "MFG:HP;MDL:HP Color LaserJet Pro M454dw;SN:CNB1A2B3C4;",
            "printer-uuid": "urn:uuid:564e4333-3830-3145-3330-5c60ba1a2b3c",
        }
    )
    merged = merge_snapshots(_snmp_snapshot(), ipp)
    supplies = _by_index(merged)
    black = supplies["1.1"]
    assert (black.percent, black.state, black.colour_hex) == (8.0, SupplyState.LOW, "#000000")
    assert "percent_from_ipp" in black.flags and black.source == "printer_mib"
    # IPP has no cyan: SNMP's -3 stays as it was, no number invented.
    assert (supplies["1.2"].percent, supplies["1.2"].state) == (None, SupplyState.SOME_REMAINING)
    # SNMP had a number for yellow: it wins over IPP's 90.
    assert supplies["1.3"].percent == 40.0 and supplies["1.3"].colour_hex == "#FFFF00"
    # Markers SNMP did not list come over from IPP.
    assert [s.index for s in merged.supplies[3:]] == ["ipp.3", "ipp.4"]
    assert merged.printer.serial == "CNB1A2B3C4"
    assert merged.printer.model == "Color LaserJet Pro M454dw"
    assert merged.printer.uuid == "urn:uuid:564e4333-3830-3145-3330-5c60ba1a2b3c"
    assert merged.status.errors == ("low_paper", "low_toner")
    assert merged.status.device_status == "running"
    assert merged.missing == ("prtMarkerLifeCount", "ipp:printer-make-and-model")


def test_merge_with_empty_snmp_takes_ipp_supplies_and_status() -> None:
    snmp = PrinterSnapshot(printer=PrinterIdentity())
    ipp = parse_ipp_attributes(COLOUR_LASER)
    merged = merge_snapshots(snmp, ipp)
    assert merged.supplies == ipp.supplies
    assert merged.status.printer_status == "idle"
    assert merged.printer.vendor == "HP"
