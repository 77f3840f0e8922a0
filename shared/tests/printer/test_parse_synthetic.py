"""Edge cases on made-up walks: bits, special levels, broken types, text clean-up."""

from __future__ import annotations

import pytest

from tonerwatch_shared.printer import oids
from tonerwatch_shared.printer.codes import ERROR_BITS
from tonerwatch_shared.printer.model import SupplyClass, SupplyKind, SupplyState
from tonerwatch_shared.printer.parse import (
    decode_error_state,
    level_to_percent,
    parse_identity,
    parse_snapshot,
    parse_status,
)
from tonerwatch_shared.printer.profiles import brother
from tonerwatch_shared.printer.text import (
    colour_from_text,
    decode_octets,
    kind_from_text,
    split_description,
)
from tonerwatch_shared.snmp.poll import learn_scalars
from tonerwatch_shared.snmp.snmprec import parse_snmprec
from tonerwatch_shared.snmp.types import IpAddress, Missing, Oid, SnmpValue

SUP = "1.3.6.1.2.1.43.11.1.1"


def _supply_walk(**cols: SnmpValue) -> dict[str, SnmpValue]:
    col = {"cls": 4, "type": 5, "descr": 6, "unit": 7, "cap": 8, "level": 9, "colorant": 3}
    return {f"{SUP}.{col[name]}.1.1": value for name, value in cols.items()}


def test_error_state_every_bit_has_its_name() -> None:
    assert decode_error_state(b"\xff\xfe") == tuple(name for _, _, name in ERROR_BITS)
    assert len(ERROR_BITS) == 15
    assert decode_error_state(b"\x80") == ("low_paper",)
    assert decode_error_state(b"\x14\x00") == ("no_toner", "jammed")
    assert decode_error_state(b"\x00\x20") == ("marker_supply_missing",)
    assert decode_error_state(b"\x00\x02") == ("overdue_prevent_maint",)
    assert decode_error_state(0x0840) == ("door_open", "output_tray_missing")  # INTEGER-typed agent
    assert decode_error_state(Missing.NO_SUCH_INSTANCE) == ()
    assert decode_error_state(b"") == ()


@pytest.mark.parametrize(
    ("level", "cap", "unit", "receptacle", "expected"),
    [
        (-1, 100, None, False, (None, SupplyState.OK, ("unrestricted",))),
        (-2, 100, None, False, (None, SupplyState.UNKNOWN, ())),
        (-3, 100, None, False, (None, SupplyState.SOME_REMAINING, ("some_remaining",))),
        (-3, -2, None, True, (None, SupplyState.SOME_REMAINING, ("some_remaining",))),
        (-7, 100, None, False, (None, SupplyState.UNKNOWN, ("invalid_level",))),
        (50, 0, None, False, (None, SupplyState.UNKNOWN, ())),  # capacity 0: no figure
        (50, -2, None, False, (None, SupplyState.UNKNOWN, ())),
        (50, -2, 19, False, (50.0, SupplyState.OK, ())),  # unit percent: the level is the figure
        (0, -2, None, False, (None, SupplyState.EMPTY, ())),
        (150, 100, None, False, (100.0, SupplyState.OK, ("clamped",))),
        (120, None, 19, False, (100.0, SupplyState.OK, ("clamped",))),
        (10, 100, None, False, (10.0, SupplyState.LOW, ())),
        (11, 100, None, False, (11.0, SupplyState.OK, ())),
        (0, 2000, None, False, (0.0, SupplyState.EMPTY, ())),
        (0, 100, None, True, (0.0, SupplyState.FULL, ())),
        (5, 100, None, True, (5.0, SupplyState.ALMOST_FULL, ())),
        (60, 100, None, True, (60.0, SupplyState.OK, ())),
        (5, 2**31 - 1, None, False, (None, SupplyState.UNKNOWN, ("absurd_capacity",))),
        (2**31 - 1, 100, None, False, (None, SupplyState.UNKNOWN, ("absurd_level",))),
        (None, 100, None, False, (None, SupplyState.UNKNOWN, ("no_level",))),
        (1, 3, None, False, (33.33, SupplyState.OK, ())),
    ],
)
def test_level_to_percent(
    level: int | None,
    cap: int | None,
    unit: int | None,
    receptacle: bool,
    expected: tuple[object, ...],
) -> None:
    assert level_to_percent(level, cap, unit, receptacle) == expected


def test_minus_100_is_only_a_ricoh_quirk() -> None:
    assert level_to_percent(-100, 100, enterprise=367)[1] is SupplyState.LOW
    assert level_to_percent(-100, 100, enterprise=11) == (
        None,
        SupplyState.UNKNOWN,
        ("invalid_level",),
    )


def test_wrong_types_and_missing_values_never_raise() -> None:
    values: dict[str, SnmpValue] = {
        **_supply_walk(descr=b"Black Toner", level=b"55", cap=b"not a number", type=Oid("1.2")),
        oids.SYS_DESCR: 42,
        oids.SYS_OBJECT_ID: b"\xff\xfe",
        f"{oids.HR_PRINTER_STATUS}.1": Missing.NO_SUCH_OBJECT,
        f"{oids.HR_DEVICE_STATUS}.1": b"\x02",
        f"{oids.HR_PRINTER_DETECTED_ERROR_STATE}.1": IpAddress("1.2.3.4"),
        "1.3.6.1.2.1.43.8.2.1.9.1.1": -5,
        "1.3.6.1.2.1.43.8.2.1.10.1.1": 2**40,
        "1.3.6.1.2.1.43.10.2.1.4.1.1": -1,
        brother.MAINTENANCE: b"\x6f\x01\x04\x00",  # truncated record
        brother.COUNTERS: 7,
    }
    snap = parse_snapshot(values)
    (toner,) = snap.supplies
    assert (toner.level, toner.max_capacity, toner.percent) == (55, None, None)
    assert (toner.kind, toner.colour) == (SupplyKind.TONER, "black")
    assert snap.trays[0].percent is None
    assert snap.counters.lifetime_pages is None
    assert "hrPrinterStatus" in snap.missing
    assert "prtMarkerSuppliesMaxCapacity" not in snap.missing  # present, just unreadable
    assert not any("unparseable" in m for m in snap.missing)


def test_empty_walk_lists_what_is_missing() -> None:
    snap = parse_snapshot({})
    assert snap.supplies == () and snap.trays == ()
    assert snap.printer.is_printer is False
    for name in ("sysDescr", "hrPrinterStatus", "prtMarkerSuppliesTable", "prtInputTable"):
        assert name in snap.missing


def test_supply_columns_missing_are_listed_and_waste_defaults_to_receptacle() -> None:
    values = _supply_walk(descr=b"Waste Toner Box", cap=100, level=5)
    snap = parse_snapshot(values)
    (waste,) = snap.supplies
    assert (waste.kind, waste.supply_class, waste.state) == (
        SupplyKind.WASTE_TONER,
        SupplyClass.RECEPTACLE,
        SupplyState.ALMOST_FULL,
    )
    assert {"prtMarkerSuppliesClass", "prtMarkerSuppliesType"} <= set(snap.missing)


def test_class_column_wins_and_colorant_table_gives_colour() -> None:
    values = {
        **_supply_walk(descr=b"Supply A", type=3, cls=3, colorant=2, cap=200, level=20, unit=7),
        "1.3.6.1.2.1.43.12.1.1.4.1.2": b"magenta",
    }
    (s,) = parse_snapshot(values).supplies
    assert (s.colour, s.supply_class, s.unit, s.percent, s.state) == (
        "magenta",
        SupplyClass.CONSUMED,
        "impressions",
        10.0,
        SupplyState.LOW,
    )


def test_hex_dump_description_wrapped_over_lines_is_decoded() -> None:
    dump = b"42 6C 61 63 6B 20 43 61 72 74 72 69 64 67 65 20\n48 50 20 43 46 32 32 36 58 00 00 "
    assert decode_octets(dump) == "Black Cartridge HP CF226X"
    (s,) = parse_snapshot(_supply_walk(descr=dump, type=21, cap=100, level=3)).supplies
    assert (s.description, s.part_number, s.colour, s.state) == (
        "Black Cartridge",
        "CF226X",
        "black",
        SupplyState.LOW,
    )


def test_encodings_fall_back_cleanly() -> None:
    assert decode_octets("ブラックトナー".encode("shift_jis")) == "ブラックトナー"
    assert decode_octets("Tóner negro".encode("cp1252")) == "Tóner negro"
    assert decode_octets("Résiduel".encode()) == "Résiduel"
    assert decode_octets(b"Toner\x01\x02 Black\x00garbage") == "Toner Black"


@pytest.mark.parametrize(
    ("text", "name", "part"),
    [
        ("Black Toner Cartridge, PN 106R01536;SN 5001D6D1", "Black Toner Cartridge", "106R01536"),
        ("Imaging Unit, PN 108R00865;SN 12ab", "Imaging Unit", "108R00865"),
        ("Cyan Toner 106R01631", "Cyan Toner", "106R01631"),
        ("Black Cartridge HP CE285A", "Black Cartridge", "CE285A"),
        ("Toner Cartridge TN-2420", "Toner Cartridge", "TN-2420"),
        ("Black Toner TK-5240K", "Black Toner", "TK-5240K"),
        ("Black Toner Cartridge S/N:CRUM-17041712345", "Black Toner Cartridge", None),
        ("Drum Unit", "Drum Unit", None),
    ],
)
def test_part_numbers_extracted_and_serials_dropped(text: str, name: str, part: str | None) -> None:
    assert split_description(text) == (name, part)


@pytest.mark.parametrize(
    ("text", "kind", "colour"),
    [
        ("Black Cartridge", SupplyKind.TONER, "black"),
        ("Drum Unit (K)", SupplyKind.DRUM, "black"),
        ("Imaging Unit", SupplyKind.DRUM, None),
        ("Waste Toner Box", SupplyKind.WASTE_TONER, None),
        ("Fuser Kit", SupplyKind.FUSER, None),
        ("Transfer Belt", SupplyKind.TRANSFER, None),
        ("Maintenance Kit", SupplyKind.MAINTENANCE_KIT, None),
        ("Maintenance Box", SupplyKind.WASTE_INK, None),
        ("Tonerkartusche Schwarz", SupplyKind.TONER, "black"),
        ("Resttonerbehälter", SupplyKind.WASTE_TONER, None),
        ("Trommeleinheit Gelb", SupplyKind.DRUM, "yellow"),
        ("Cartouche d'encre noire", SupplyKind.INK, "black"),
        ("Toner Jaune", SupplyKind.TONER, "yellow"),
        ("Tóner Cian", SupplyKind.TONER, "cyan"),
        ("Tóner Amarillo", SupplyKind.TONER, "yellow"),
        ("Tamburo Nero", SupplyKind.DRUM, "black"),
        ("Toner Giallo", SupplyKind.TONER, "yellow"),
        ("Unità fusore", SupplyKind.FUSER, None),
        ("Kuro Tona", SupplyKind.TONER, "black"),
        ("Photo Black Ink", SupplyKind.INK, "photo black"),
        ("Light Cyan Ink Cartridge", SupplyKind.INK, "light cyan"),
        ("Toner Bk", SupplyKind.TONER, "black"),
        ("Toner M", SupplyKind.TONER, "magenta"),
    ],
)
def test_kind_and_colour_from_description(text: str, kind: SupplyKind, colour: str | None) -> None:
    assert kind_from_text(text) is kind
    assert colour_from_text(text) == colour


def test_type_other_falls_back_to_description_and_type_wins_otherwise() -> None:
    (a,) = parse_snapshot(_supply_walk(descr=b"Transfer Roller", type=1)).supplies
    assert a.kind is SupplyKind.TRANSFER
    (b,) = parse_snapshot(_supply_walk(descr=b"Cartridge", type=9)).supplies
    assert b.kind is SupplyKind.DRUM


def test_alert_table_decoded() -> None:
    alert = oids.PRT_ALERT
    values: dict[str, SnmpValue] = {
        f"{alert}.2.1.1": 3,
        f"{alert}.4.1.1": 6,
        f"{alert}.7.1.1": 3,
        f"{alert}.8.1.1": b"Cover open",
        f"{alert}.2.1.2": 4,
        f"{alert}.4.1.2": 11,
        f"{alert}.7.1.2": 1104,
        f"{alert}.8.1.2": b"Toner low",
        f"{alert}.2.1.10": 5,
        f"{alert}.7.1.10": 8,
        f"{alert}.2.1.11": 4,
        f"{alert}.7.1.11": 4242,
    }
    alerts = parse_status(values).alerts
    assert [(a.index, a.severity, a.group, a.code, a.description) for a in alerts] == [
        ("1.1", "critical", "cover", "cover_open", "Cover open"),
        ("1.2", "warning", "marker_supplies", "marker_toner_almost_empty", "Toner low"),
        ("1.10", "warning_binary_change_event", None, "jam", ""),
        ("1.11", "warning", None, "4242", ""),
    ]


def test_status_names() -> None:
    values: dict[str, SnmpValue] = {
        f"{oids.HR_DEVICE_STATUS}.1": 5,
        f"{oids.HR_PRINTER_STATUS}.1": 4,
        f"{oids.HR_PRINTER_DETECTED_ERROR_STATE}.1": b"\x08\x00",
    }
    status = parse_status(values)
    assert (status.device_status, status.printer_status, status.errors) == (
        "down",
        "printing",
        ("door_open",),
    )


def test_oki_print_server_names_the_attached_printer() -> None:
    values: dict[str, SnmpValue] = {
        oids.SYS_DESCR: b"OkiLAN 8200e Rev.A1.08 10/100BASE Ethernet PrintServer: "
        b"Attached to MC873 Rev.N1.05 : (C)2015 Oki Data Corporation",
        oids.SYS_OBJECT_ID: Oid("1.3.6.1.4.1.2001.1.2.1"),
    }
    ident = parse_identity(values)
    assert (ident.vendor, ident.model, ident.is_printer) == ("OKI", "MC873", True)


def test_brother_legacy_layout_level_over_maximum() -> None:
    # Legacy: id, 0x01, 0x02, level, maximum (0x14 = 20 steps).
    blob = bytes.fromhex("a101020a14a201020514ff")
    readings = brother.maintenance_levels(blob, ink=False)
    assert [(r.part.colour, r.level, r.maximum, r.legacy) for r in readings] == [
        ("black", 10, 20, True),
        ("cyan", 5, 20, True),
    ]
    snap = parse_snapshot({brother.MAINTENANCE: blob})
    assert [(s.colour, s.percent, "legacy_layout" in s.flags) for s in snap.supplies] == [
        ("black", 50.0, True),
        ("cyan", 25.0, True),
    ]


def test_snmprec_tags_variations_and_hex() -> None:
    values = parse_snmprec(
        "1.3.6.1.2.1.1.1.0|4|Caf\xe9 printer  \n"
        "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.11.2.3.9.1\n"
        "1.3.6.1.2.1.1.3.0|67|123\n"
        "1.3.6.1.2.1.43.11.1.1.9.1.1|2:numeric|42\n"
        "1.3.6.1.2.1.25.3.5.1.2.1|4x|0100\n"
        "1.3.6.1.2.1.4.20.1.1.10.0.0.1|64|10.0.0.1\n"
        "1.3.6.1.2.1.4.20.1.1.10.0.0.2|64x|0a000002\n"
        "1.3.6.1.2.1.31.1.1.1.6.1|70|18446744073709551615\n"
        "garbage line\n"
    )
    assert values["1.3.6.1.2.1.1.1.0"] == b"Caf\xe9 printer"  # latin-1 bytes, stripped like snmpsim
    assert values["1.3.6.1.2.1.1.2.0"] == Oid("1.3.6.1.4.1.11.2.3.9.1")
    assert isinstance(values["1.3.6.1.2.1.1.2.0"], Oid)
    assert values["1.3.6.1.2.1.1.3.0"] == 123
    assert values["1.3.6.1.2.1.43.11.1.1.9.1.1"] == 42
    assert values["1.3.6.1.2.1.25.3.5.1.2.1"] == b"\x01\x00"
    assert values["1.3.6.1.2.1.4.20.1.1.10.0.0.1"] == IpAddress("10.0.0.1")
    assert values["1.3.6.1.2.1.4.20.1.1.10.0.0.2"] == IpAddress("10.0.0.2")
    assert values["1.3.6.1.2.1.31.1.1.1.6.1"] == 2**64 - 1
    assert len(values) == 8


def test_poll_oids_cover_what_the_parser_reads() -> None:
    assert oids.SYS_DESCR in learn_scalars() and brother.MAINTENANCE in learn_scalars()
    for column in (
        f"{SUP}.9",
        f"{SUP}.8",
        f"{SUP}.6",
        oids.PRT_MARKER_LIFE_COUNT,
        oids.HR_DEVICE_TYPE,
    ):
        assert column in oids.POLL_COLUMNS
    assert len(set(oids.POLL_SCALARS)) == len(oids.POLL_SCALARS)
