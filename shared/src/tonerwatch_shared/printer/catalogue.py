"""Part numbers and page yields by vendor, model and supply, for printers that report none.

The data lives in `printer/catalogue/<vendor>.toml` (format: docs/catalogue.md): one file per
vendor, one `[[part]]` per part number, open to additions. A part matches a printer when the
vendor is the printer's (case-insensitive), one of its `models` appears as whole words in the
model the printer reports ("HP Color LaserJet Pro MFP M479fdw" matches "M479fdw"), the supply's
kind is `supply` and, when the part names one, its colour is the supply's.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tonerwatch_shared.printer.model import SupplyKind

CATALOGUE_DIR = Path(__file__).resolve().parent / "catalogue"
COLOURS = frozenset(
    {"black", "cyan", "magenta", "yellow", "light_cyan", "light_magenta", "grey", "light_grey",
     "matte_black", "photo_black", "red", "green", "blue", "white", "clear", "gold", "silver"}
)  # fmt: skip


class CatalogueError(ValueError):
    """A catalogue file is not what docs/catalogue.md describes; the message says where."""


class Part(BaseModel):
    """One part number of a vendor: the models it fits, which supply it is, what it yields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    vendor: str = Field(min_length=1, max_length=100)
    models: tuple[str, ...] = Field(min_length=1)
    supply: SupplyKind
    colour: str | None = None
    part_number: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9./-]*$")
    page_yield: int | None = Field(default=None, gt=0, le=10_000_000)
    name: str | None = Field(default=None, max_length=200)

    @field_validator("models")
    @classmethod
    def _models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not m.strip() for m in value):
            raise ValueError("a model is empty")
        return value

    @field_validator("colour")
    @classmethod
    def _colour(cls, value: str | None) -> str | None:
        if value is not None and value not in COLOURS:
            raise ValueError(f"unknown colour {value!r} (one of: {', '.join(sorted(COLOURS))})")
        return value

    def fits(self, vendor: str | None, model: str | None, kind: str, colour: str | None) -> bool:
        """Return whether this part is the supply kind/colour of a printer of vendor and model."""
        if not vendor or not model or vendor.casefold() != self.vendor.casefold():
            return False
        if kind != self.supply.value or (self.colour is not None and colour != self.colour):
            return False
        words = _words(model)
        return any(_contains(words, _words(m)) for m in self.models)


def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[^0-9a-z-]+", text.casefold()) if w)


def _contains(words: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    n = len(wanted)
    return any(words[i : i + n] == wanted for i in range(len(words) - n + 1))


def parse_catalogue(text: str, origin: str = "<text>") -> tuple[Part, ...]:
    """Return the parts of one catalogue file's text; raise CatalogueError naming origin and part."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{origin}: not TOML: {exc}") from None
    vendor = data.get("vendor")
    if not isinstance(vendor, str) or not vendor.strip():
        raise CatalogueError(f'{origin}: needs vendor = "<vendor name>" at the top')
    extra = set(data) - {"vendor", "part"}
    if extra:
        raise CatalogueError(f"{origin}: unknown keys {sorted(extra)}")
    parts = []
    for i, raw in enumerate(data.get("part", []), start=1):
        if not isinstance(raw, dict):
            raise CatalogueError(f"{origin}: part {i} is not a table")
        try:
            parts.append(Part.model_validate({"vendor": vendor, **raw}))
        except ValueError as exc:
            raise CatalogueError(f"{origin}: part {i}: {exc}") from None
    return tuple(parts)


def catalogue_files(directory: Path = CATALOGUE_DIR) -> list[Path]:
    """Return the catalogue files, one per vendor, sorted."""
    return sorted(directory.glob("*.toml"))


@cache
def load_catalogue(directory: Path = CATALOGUE_DIR) -> tuple[Part, ...]:
    """Return every part of every catalogue file in directory (read once)."""
    parts: list[Part] = []
    for path in catalogue_files(directory):
        parts.extend(parse_catalogue(path.read_text(encoding="utf-8"), path.name))
    return tuple(parts)


def find_part(
    vendor: str | None,
    model: str | None,
    kind: str,
    colour: str | None,
    parts: tuple[Part, ...] | None = None,
) -> Part | None:
    """Return the catalogue's part for a supply of a printer (vendor, model), or None."""
    for part in load_catalogue() if parts is None else parts:
        if part.fits(vendor, model, kind, colour):
            return part
    return None


__all__ = [
    "CATALOGUE_DIR",
    "CatalogueError",
    "Part",
    "catalogue_files",
    "find_part",
    "load_catalogue",
    "parse_catalogue",
]
