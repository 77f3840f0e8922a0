"""The part-number catalogue (printer/catalogue/*.toml): every entry parses, lookups by model."""

from __future__ import annotations

import tomllib

import pytest

from tonerwatch_shared.printer.catalogue import (
    CatalogueError,
    Part,
    catalogue_files,
    find_part,
    parse_catalogue,
)
from tonerwatch_shared.printer.parse import parse_snapshot

from ._walks import walk


def _entries() -> list[tuple[str, int]]:
    out = []
    for path in catalogue_files():
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        out.extend((path.name, i) for i in range(len(raw.get("part", []))))
    return out


@pytest.mark.parametrize(("file", "index"), _entries(), ids=lambda v: str(v))
def test_every_catalogue_entry_parses(file: str, index: int) -> None:
    path = next(p for p in catalogue_files() if p.name == file)
    part = parse_catalogue(path.read_text(encoding="utf-8"), file)[index]
    assert isinstance(part, Part)
    assert part.part_number.strip() == part.part_number
    assert part.page_yield is None or part.page_yield > 0
    # Each entry is found again by one of its own models.
    model = f"{part.vendor} {part.models[0]}"
    found = find_part(part.vendor, model, part.supply.value, part.colour)
    assert found is not None and found.supply == part.supply


def test_each_vendor_file_names_its_vendor_once_and_no_part_twice() -> None:
    seen: set[tuple[str, str, str, str | None]] = set()
    for path in catalogue_files():
        for part in parse_catalogue(path.read_text(encoding="utf-8"), path.name):
            for model in part.models:
                key = (part.vendor.casefold(), model.casefold(), part.supply.value, part.colour)
                assert key not in seen, f"{path.name}: {key} listed twice"
                seen.add(key)


def test_the_konica_c250i_reports_no_part_number_and_the_catalogue_supplies_tn328() -> None:
    snap = parse_snapshot(walk("konica_c250i"))
    black = next(s for s in snap.supplies if s.kind == "toner" and s.colour == "black")
    assert black.part_number is None
    part = find_part(snap.printer.vendor, snap.printer.model, black.kind, black.colour)
    assert part is not None and (part.part_number, part.page_yield) == ("TN-328K", 28000)


def test_the_hp_m252dw_model_words_match_but_a_longer_model_number_does_not() -> None:
    assert find_part("HP", "HP Color LaserJet Pro M252dw", "toner", "cyan") is not None
    assert find_part("hp", "HP Color LaserJet Pro M252dwx", "toner", "cyan") is None
    assert find_part("Brother", "HP Color LaserJet Pro M252dw", "toner", "cyan") is None
    assert find_part("HP", None, "toner", "cyan") is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[part]]\nmodels=["X"]\nsupply="toner"\npart_number="A"', "vendor"),
        ('vendor="HP"\n[[part]]\nmodels=["X"]\nsupply="tonr"\npart_number="A"', "part 1"),
        ('vendor="HP"\n[[part]]\nmodels=[]\nsupply="toner"\npart_number="A"', "models"),
        ('vendor="HP"\n[[part]]\nmodels=["X"]\nsupply="toner"\npart_number="A"\npage_yield=0', "page_yield"),
        ('vendor="HP"\n[[part]]\nmodels=["X"]\nsupply="toner"\ncolour="blak"\npart_number="A"', "colour"),
        ('vendor="HP"\n[[part]]\nmodels=["X"]\nsupply="toner"\npart_number="A"\nprice=3', "price"),
        ('vendor="HP"\nparts=[]', "unknown keys"),
        ("vendor = ", "not TOML"),
    ],
)  # fmt: skip
def test_a_malformed_catalogue_is_refused_saying_where(text: str, says: str) -> None:
    with pytest.raises(CatalogueError, match=says):
        parse_catalogue(text, "mine.toml")
