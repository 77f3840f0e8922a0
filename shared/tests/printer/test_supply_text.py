"""Supply descriptions as real agents and users' walks send them: hex tails, part numbers, kits."""

from __future__ import annotations

from tonerwatch_shared.printer.model import SupplyClass, SupplyKind, SupplyState
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.printer.text import as_text, colour_from_text, split_description
from tonerwatch_shared.snmp.types import SnmpValue

SUP = "1.3.6.1.2.1.43.11.1.1"
COLORANT = "1.3.6.1.2.1.43.12.1.1.4"


def _row(index: int, **cols: SnmpValue) -> dict[str, SnmpValue]:
    col = {"cls": 4, "type": 5, "descr": 6, "unit": 7, "cap": 8, "level": 9, "colorant": 3}
    return {f"{SUP}.{col[name]}.1.{index}": value for name, value in cols.items()}


# net-snmp prints a string that ends in NUL as hex; a walk pasted by a user keeps the text it
# could show and goes on with the hex lines of the same octets.
HP_M554_BLACK = b"Black Toner Cartridge HP CF540A\n43 46 35 34 30 41 00"


def test_hp_cf540a_description_with_hex_tail_is_decoded_whole() -> None:
    assert as_text(HP_M554_BLACK) == "Black Toner Cartridge HP CF540A"
    snap = parse_snapshot(_row(1, descr=HP_M554_BLACK, type=3, cap=100, level=40))
    (black,) = snap.supplies
    assert (black.description, black.part_number, black.colour) == (
        "Black Toner Cartridge",
        "CF540A",
        "black",
    )


def test_description_cut_before_the_part_number_goes_on_in_hex() -> None:
    # The text stops at "HP " and the hex lines carry the rest ("CF540A" and its NUL).
    raw = b"Black Toner Cartridge HP \n43 46 35 34 30 41 00"
    assert as_text(raw) == "Black Toner Cartridge HP CF540A"
    assert split_description(as_text(raw) or "") == ("Black Toner Cartridge", "CF540A")


def test_part_number_patterns_never_pick_numbers_out_of_hex() -> None:
    # A dump nothing could undo: "HP 43" is no HP part number, "41 00" none either.
    assert split_description("Black Toner Cartridge HP 43 46 35 34 30 41 00")[1] is None
    assert split_description("Black Toner 43 46 35 34 30 41 00")[1] is None
    assert split_description("Black Cartridge HP CF400X")[1] == "CF400X"  # jetdirect_m252dw


def test_colour_never_read_out_of_a_part_number_or_a_kits_name() -> None:
    assert colour_from_text("Document Feeder Kit HP C1P70A") is None  # not "cyan" from C1P70A
    assert colour_from_text("C1P70A") is None
    assert colour_from_text("PK-520 Punch Kit") is None  # not "photo black"
    assert colour_from_text("PK-520") is None
    assert colour_from_text("Transfer Kit C") is None
    # Colour words and whole-word codes still name colours.
    assert colour_from_text("Toner (Black)") == "black"  # konica_c250i
    assert colour_from_text("Drum Unit (K)") == "black"
    assert colour_from_text("Toner Bk") == "black"


def test_colour_comes_from_the_colorant_table_then_from_colour_words() -> None:
    values = {
        **_row(1, descr=b"Document Feeder Kit HP C1P70A", cap=100, level=90),
        **_row(2, descr=b"Toner Cartridge HP W2033A", colorant=3, cap=100, level=50),
        **_row(3, descr=b"Cyan Toner", colorant=0, cap=100, level=50),
        f"{COLORANT}.1.3": b"magenta",
    }
    kit, toner, cyan = parse_snapshot(values).supplies
    assert kit.colour is None
    assert toner.colour == "magenta"  # the colorant table, not the description
    assert cyan.colour == "cyan"


def test_waste_receptacle_at_minus_3_reports_some_remaining() -> None:
    values = _row(1, descr=b"Waste Toner Box", cls=4, type=4, cap=-2, level=-3)
    (waste,) = parse_snapshot(values).supplies
    assert (waste.supply_class, waste.state, waste.percent) == (
        SupplyClass.RECEPTACLE,
        SupplyState.SOME_REMAINING,
        None,
    )
    assert waste.kind is SupplyKind.WASTE_TONER
