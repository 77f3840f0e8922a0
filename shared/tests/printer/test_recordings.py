"""Every real recording parses without error into sane output, plus per-device checks of what matters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tonerwatch_shared.printer.model import Supply, SupplyClass, SupplyKind, SupplyState
from tonerwatch_shared.printer.parse import (
    parse_counters,
    parse_identity,
    parse_snapshot,
    parse_status,
    parse_supplies,
    parse_trays,
)
from tonerwatch_shared.snmp.snmprec import load_snmprec

from ._walks import WALKS, recordings, walk

pytestmark = pytest.mark.recordings


def test_recordings_folder_present() -> None:
    if not recordings():
        if os.environ.get("CI"):
            pytest.fail(f"no recordings under {WALKS} in CI")
        pytest.skip(f"no recordings under {WALKS}")
    assert len(recordings()) >= 20


@pytest.mark.parametrize("path", recordings(), ids=lambda p: p.stem)
def test_every_recording_parses_sanely(path: Path) -> None:
    values = load_snmprec(path)
    snap = parse_snapshot(values)
    assert snap.printer.vendor, path.stem
    assert snap.printer.model, path.stem
    assert not any("unparseable" in m for m in snap.missing)
    for supply in snap.supplies:
        assert supply.description
        assert supply.percent is None or 0.0 <= supply.percent <= 100.0
        if supply.level is not None and supply.level < 0:
            assert supply.percent is None  # special values are never numbers
        if supply.supply_class is SupplyClass.RECEPTACLE:
            assert supply.state in {
                SupplyState.OK,
                SupplyState.ALMOST_FULL,
                SupplyState.FULL,
                SupplyState.UNKNOWN,
                SupplyState.SOME_REMAINING,  # -3: room remains, no figure (issue #10)
            }
    for tray in snap.trays:
        assert tray.name
        assert tray.percent is None or 0.0 <= tray.percent <= 100.0
    # The pieces agree with the whole.
    assert parse_identity(values) == snap.printer
    assert parse_supplies(values) == snap.supplies
    assert parse_trays(values) == snap.trays
    assert parse_counters(values) == snap.counters
    assert parse_status(values) == snap.status


def _supply(name: str, index: str) -> Supply:
    return next(s for s in parse_snapshot(walk(name)).supplies if s.index == index)


def test_hp_m252dw_black_toner_percent_and_part_number() -> None:
    snap = parse_snapshot(walk("jetdirect_m252dw"))
    black = snap.supplies[0]
    assert (black.index, black.description, black.part_number) == (
        "1.1",
        "Black Cartridge",
        "CF400X",
    )
    assert (black.kind, black.colour, black.unit) == (SupplyKind.TONER, "black", "percent")
    assert (black.level, black.max_capacity, black.percent, black.state) == (
        63,
        100,
        63.0,
        SupplyState.OK,
    )
    yellow = snap.supplies[3]
    assert (yellow.colour, yellow.part_number, yellow.percent) == ("yellow", "CF402X", 36.0)


def test_hp_m252dw_identity_from_jetdirect_sysdescr() -> None:
    ident = parse_snapshot(walk("jetdirect_m252dw")).printer
    # sysDescr is the JetDirect card's; PID/hrDeviceDescr name the printer, SN its serial.
    assert (ident.vendor, ident.model, ident.serial) == (
        "HP",
        "Color LaserJet Pro M252dw",
        "VNB3J99999",
    )
    assert ident.mac_address == "3c:a8:2a:f6:38:ac"
    assert ident.is_printer


def test_hp_m252dw_trays_special_levels_and_media() -> None:
    trays = parse_snapshot(walk("jetdirect_m252dw")).trays
    assert [(t.name, t.level, t.max_capacity, t.percent, t.media) for t in trays] == [
        ("Tray 1", -2, 1, None, "Any"),
        ("Tray 2", -3, 150, None, "Any"),
    ]


def test_brother_hl_l2340dw_toner_and_drum_from_private_blob() -> None:
    snap = parse_snapshot(walk("brother_hl-l2340dw"))
    by_kind = {s.kind: s for s in snap.supplies}
    toner = by_kind[SupplyKind.TONER]
    drum = by_kind[SupplyKind.DRUM]
    # 6f 01 04 00001d4c -> 7500 hundredths = 75 %; 41 01 04 000023f0 -> 9200 = 92 %.
    assert (toner.colour, toner.level, toner.percent) == ("black", 7500, 75.0)
    assert (drum.level, drum.percent, drum.pages_left) == (9200, 92.0, 0x2B06)
    assert toner.source == drum.source == "brother_private"
    assert "private_mib" in toner.flags
    assert snap.printer.model == "HL-L2340DW"
    assert snap.counters.lifetime_pages == 1279
    assert snap.status.status_text == "OCZEKIWANIE"


def test_brother_dcp_9020cdw_colour_laser_blob_counters_and_latin2_status() -> None:
    snap = parse_snapshot(walk("brother_dcp-9020cdw"))
    toners = {s.colour: s.percent for s in snap.supplies if s.kind is SupplyKind.TONER}
    assert toners == {"black": 91.0, "cyan": 61.0, "magenta": 59.0, "yellow": 20.0}
    drums = {
        s.colour: (s.percent, s.pages_left) for s in snap.supplies if s.kind is SupplyKind.DRUM
    }
    assert drums == {c: (68.0, 10061) for c in ("black", "cyan", "magenta", "yellow")}
    belt = next(s for s in snap.supplies if s.kind is SupplyKind.TRANSFER)
    assert (belt.percent, belt.pages_left) == (83.0, 41160)
    fuser = next(s for s in snap.supplies if s.kind is SupplyKind.FUSER)
    assert fuser.percent == 91.0
    c = snap.counters
    assert (c.lifetime_pages, c.mono_pages, c.colour_pages) == (4939, 1762, 3177)
    assert c.mono_pages + c.colour_pages == c.lifetime_pages  # type: ignore[operator]
    # prtLocalizationCharacterSet 5 = ISO-8859-2: 0xA6 is "Ś".
    assert snap.status.status_text == "TRYB UŚPIENIA"
    assert snap.printer.serial == "E71833C4J372261"
    assert snap.printer.firmware == "ZA1811191217"


def test_brother_mfc_j680dw_inkjet_layout_and_summed_lifetime() -> None:
    snap = parse_snapshot(walk("brother_mfc-j680dw"))
    inks = {s.colour: s.percent for s in snap.supplies}
    assert inks == {"black": 47.0, "cyan": 35.0, "magenta": 85.0, "yellow": 45.0}
    assert all(s.kind is SupplyKind.INK for s in snap.supplies)
    # No prtMarkerLifeCount and no total record: lifetime = mono 0x1cd + colour 0x1eb.
    assert (snap.counters.mono_pages, snap.counters.colour_pages) == (461, 491)
    assert snap.counters.lifetime_pages == 952
    assert "prtMarkerLifeCount" in snap.missing
    assert snap.status.status_text == "uyku"


def test_brother_print_server_sysdescr_is_not_the_model() -> None:
    snap = parse_snapshot(walk("brother"))
    # sysDescr "Brother NC-8300h ..." is the network card; hrDeviceDescr names the MFC.
    assert snap.printer.model == "MFC-L2710DW"
    assert (
        snap.printer.serial == "000A5J431816"
    )  # Brother private serial, no prtGeneralSerialNumber
    toner, drum = snap.supplies
    assert (toner.state, toner.percent, toner.max_capacity) == (
        SupplyState.SOME_REMAINING,
        None,
        -2,
    )
    assert (drum.kind, drum.percent) == (SupplyKind.DRUM, round(11501 / 12000 * 100, 2))
    assert [t.name for t in snap.trays] == ["AUTO", "MANUAL TRAY", "TRAY1"]
    assert all(t.percent is None for t in snap.trays)  # all -3


def test_brother_private_blob_replaces_some_remaining_toner() -> None:
    # A Brother with both: the Printer MIB says -3 for toner, the blob knows 75 %.
    values = {**walk("brother"), **walk("brother_hl-l2340dw")}
    supplies = parse_snapshot(values).supplies
    toner = next(s for s in supplies if s.kind is SupplyKind.TONER)
    assert (toner.percent, toner.source, toner.description) == (
        75.0,
        "brother_private",
        "Black Toner Cartridge",
    )
    drums = [s for s in supplies if s.kind is SupplyKind.DRUM]
    # The Printer MIB drum has a figure: it stays, the private duplicate is dropped.
    assert len(drums) == 1 and drums[0].source == "printer_mib"


def test_canon_tm5300_ink_tanks_matte_black_and_waste_receptacle() -> None:
    snap = parse_snapshot(walk("canonprinter_tm"))
    matte = snap.supplies[0]
    assert (matte.kind, matte.colour, matte.percent) == (SupplyKind.INK, "matte black", 80.0)
    waste = snap.supplies[5]
    assert (waste.kind, waste.supply_class) == (SupplyKind.WASTE_INK, SupplyClass.RECEPTACLE)
    assert waste.percent == 90.0 and waste.state is SupplyState.OK  # 6030 of 6700 space left
    assert snap.printer.model == "TM-5300" and snap.printer.firmware == "01.21"
    assert snap.counters.lifetime_pages == 21588 and snap.counters.power_on_pages == 54


def test_canon_d1180_sysdescr_only_identity() -> None:
    ident = parse_snapshot(walk("canonprinter_d1180")).printer
    assert (ident.vendor, ident.model) == ("Canon", "D1180/MF6680")  # " /P" suffix dropped


def test_konica_c250i_waste_box_receptacle_some_remaining_and_counters() -> None:
    snap = parse_snapshot(walk("konica_c250i"))
    waste = _supply("konica_c250i", "1.13")
    # A receptacle at -3 says "some room remains", like any supply at -3: not "ok".
    assert (waste.kind, waste.supply_class, waste.state, waste.percent) == (
        SupplyKind.WASTE_TONER,
        SupplyClass.RECEPTACLE,
        SupplyState.SOME_REMAINING,
        None,
    )
    assert "some_remaining" in waste.flags
    black = _supply("konica_c250i", "1.4")
    assert (black.description, black.colour, black.percent) == ("Toner (Black)", "black", 86.0)
    c = snap.counters
    assert c.lifetime_pages == 33810 and c.power_on_pages == 46
    assert c.mono_pages == 3672 + 22876 and c.colour_pages == 544 + 6711 and c.duplex_pages == 7357
    assert snap.status.device_status == "warning"
    assert snap.status.errors == ("service_requested",)  # 0x01 0x00
    assert (snap.printer.vendor, snap.printer.model) == ("Konica Minolta", "bizhub C250i")


def test_ricoh_mpc3002_waste_toner_receptacle_and_private_identity() -> None:
    snap = parse_snapshot(walk("ricoh_mpc3002"))
    waste = _supply("ricoh_mpc3002", "1.2")
    assert (waste.kind, waste.supply_class, waste.percent, waste.state) == (
        SupplyKind.WASTE_TONER,
        SupplyClass.RECEPTACLE,
        100.0,
        SupplyState.OK,
    )
    cyan = _supply("ricoh_mpc3002", "1.3")
    assert (cyan.colour, cyan.percent) == ("cyan", 20.0)
    assert snap.printer.model == "Aficio MP C3002"
    assert (snap.printer.serial, snap.printer.firmware) == ("W492KB03439", "2.20")
    assert [t.percent for t in snap.trays] == [10.0, 10.0, 10.0, 0.0, 0.0]
    assert snap.counters.lifetime_pages == 271871


def test_ricoh_minus_100_means_near_end() -> None:
    values = dict(walk("ricoh_mpc3002"))
    values["1.3.6.1.2.1.43.11.1.1.9.1.1"] = -100
    black = parse_snapshot(values).supplies[0]
    assert (black.state, black.percent, black.flags) == (SupplyState.LOW, None, ("near_end",))


def test_gestetner_is_a_ricoh_oem_branded_in_sysdescr() -> None:
    ident = parse_snapshot(walk("gestetner")).printer
    assert ident.sys_object_id == "1.3.6.1.4.1.367.1.1"
    assert (ident.vendor, ident.model, ident.serial, ident.firmware) == (
        "Gestetner",
        "MPC2500/DSc525",
        "M6394300657",
        "1.71",
    )


def test_toshiba_estudio305_on_lexmark_oid_keeps_its_brand() -> None:
    ident = parse_snapshot(walk("toshiba-tec_estudio305")).printer
    assert ident.sys_object_id and ident.sys_object_id.startswith("1.3.6.1.4.1.641.")
    assert (ident.vendor, ident.model, ident.firmware) == (
        "Toshiba",
        "e-STUDIO305CS",
        "NH63.GM.N639",
    )


def test_dell_s5830dn_model_from_device_id_and_supplies_by_description() -> None:
    snap = parse_snapshot(walk("dell-laser_s5830dn"))
    # hrDeviceDescr "Dell S5830dn 7XQ1R92 LW62.DN4.P636" only extends the device-ID model.
    assert snap.printer.model == "S5830dn"
    assert (snap.printer.serial, snap.printer.firmware) == ("7XQ1R92-132-13", "NH62.YS.N636")
    kinds = [(s.description, s.kind, s.percent) for s in snap.supplies]
    assert kinds == [
        ("Black Toner", SupplyKind.TONER, 49.0),
        ("Imaging Unit", SupplyKind.DRUM, 72.0),
        ("Maintenance Kit", SupplyKind.MAINTENANCE_KIT, 83.0),  # type other(1): from the words
        ("Roller Kit", SupplyKind.PAPER_FEED_KIT, 89.0),
    ]


def test_dell_3115cn_and_lexmark_t640_sysdescr_models() -> None:
    assert parse_snapshot(walk("dell-laser_mfp")).printer.model == "MFP Laser 3115cn"
    lex = parse_snapshot(walk("lexmarkprinter")).printer
    assert (lex.vendor, lex.model, lex.firmware) == ("Lexmark", "T640", "NS.NP.N219")


def test_fujifilm_c810_waste_unknown_capacity_and_two_black_toners() -> None:
    snap = parse_snapshot(walk("fujifilmprinter_c810"))
    waste = _supply("fujifilmprinter_c810", "1.5")
    assert (waste.supply_class, waste.max_capacity, waste.level, waste.percent) == (
        SupplyClass.RECEPTACLE,
        -2,
        -3,
        None,
    )
    blacks = [s for s in snap.supplies if s.kind is SupplyKind.TONER and s.colour == "black"]
    assert [(s.description, s.percent) for s in blacks] == [
        ("Black Toner 1", 100.0),
        ("Black Toner 2", 90.0),
    ]
    assert (snap.printer.vendor, snap.printer.model, snap.printer.serial) == (
        "Fujifilm",
        "ApeosPro C810",
        "TC101630131338",
    )
    assert snap.trays[2].percent == round(222 / 890 * 100, 2)


def test_kyocera_generic_sysdescr_model_from_private_mib() -> None:
    ident = parse_snapshot(walk("kyocera")).printer
    assert (ident.vendor, ident.model, ident.serial, ident.firmware) == (
        "Kyocera",
        "FS-1028MFP",
        "QUV9600664",
        "2H9_2F00.002.002",
    )


def test_samsung_m4080fx_serial_tail_dropped_and_rollers() -> None:
    snap = parse_snapshot(walk("samsungprinter_m4080fx"))
    toner, fuser, transfer = snap.supplies[:3]
    assert (toner.description, toner.colour, toner.percent) == (
        "Black Toner Cartridge",
        "black",
        88.0,
    )
    assert (fuser.description, fuser.kind) == ("Fuser", SupplyKind.FUSER)  # "Fuser S/N:"
    assert transfer.kind is SupplyKind.TRANSFER
    assert all(s.kind is SupplyKind.PAPER_FEED_KIT for s in snap.supplies[3:])
    assert snap.status.errors == ("low_paper",)  # 0x80 0x00
    assert snap.printer.firmware == "11.01.03.04_02-27-2017"
    assert snap.counters.lifetime_pages == 22934


def test_samsung_clx_serial_and_model_from_sysdescr() -> None:
    ident = parse_snapshot(walk("samsungprinter_clx")).printer
    assert (ident.vendor, ident.model, ident.serial) == ("Samsung", "CLX-3170", "AAAAAAA000AAAA000")


def test_xerox_and_sharp_sysdescr_only() -> None:
    phaser = parse_snapshot(walk("xerox_phaser")).printer
    assert (phaser.vendor, phaser.model, phaser.is_printer) == ("Xerox", "Phaser 4600", True)
    wc = parse_snapshot(walk("xerox_workcentre")).printer
    assert wc.model == "WorkCentre 6605DN"
    sharp = parse_snapshot(walk("sharp_mx2614n"))
    assert (sharp.printer.vendor, sharp.printer.model) == ("Sharp", "MX-2614N")
    assert "sysObjectID" in sharp.missing and "prtMarkerSuppliesTable" in sharp.missing
