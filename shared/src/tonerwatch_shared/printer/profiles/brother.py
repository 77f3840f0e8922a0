"""Brother: identification, and the private MIB's maintenance, counter and pages-left blobs decoded.

Layout and record ids follow the Apache-2.0 `brother` library (bieniu/brother, brother/const.py):
each blob is records of ``id, 0x01, length, value`` (value big-endian) ended by 0xFF. Modern laser
and ink models use 4-byte values, "remaining" ids in hundredths of a percent; older ("legacy")
models use 2-byte values ``level, maximum`` (level/maximum is the fraction left)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tonerwatch_shared.printer import oids
from tonerwatch_shared.printer.model import SupplyKind
from tonerwatch_shared.printer.profiles.base import (
    CounterField,
    PrivateMib,
    PrivateSupply,
    VendorProfile,
)

if TYPE_CHECKING:  # snmp's package imports the printer parser's vendor tables
    from tonerwatch_shared.snmp.types import VarBinds

# Private objects (brother library; every brother_* recording holds them).
MAINTENANCE = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.8.0"
COUNTERS = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.10.0"
PAGES_LEFT = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.11.0"
STATUS_TEXT = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.4.5.2.0"
DEVICE_ID = "1.3.6.1.4.1.2435.2.3.9.1.1.7.0"
SERIAL = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.1.0"
FIRMWARE = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.17.0"
MODEL = "1.3.6.1.4.1.2435.2.4.3.2435.5.13.3.0"  # brother.snmprec: "Brother MFC-L2710DW series"
# prtLocalizationCharacterSet of the first localization: the charset of the front-panel text.
CHARSET = oids.PRT_LOCALIZATION_CHARSET


@dataclass(frozen=True)
class Record:
    """One record of a Brother blob."""

    ident: int
    data: bytes

    @property
    def value(self) -> int:
        """Return the value as a big-endian unsigned integer."""
        return int.from_bytes(self.data, "big") if self.data else 0


@dataclass(frozen=True)
class BrotherPart:
    """What a maintenance record id stands for."""

    kind: SupplyKind
    colour: str | None
    name: str
    hundredths: bool = True  # value is hundredths of a percent (else whole percent)


# Maintenance ids (brother/const.py VALUES_LASER_MAINTENANCE / VALUES_INK_MAINTENANCE). For ink
# models the toner ids mean ink.
_REMAINING: dict[int, BrotherPart] = {
    0x6F: BrotherPart(SupplyKind.TONER, "black", "Black Toner"),
    0x70: BrotherPart(SupplyKind.TONER, "cyan", "Cyan Toner"),
    0x71: BrotherPart(SupplyKind.TONER, "magenta", "Magenta Toner"),
    0x72: BrotherPart(SupplyKind.TONER, "yellow", "Yellow Toner"),
    0xA1: BrotherPart(SupplyKind.TONER, "black", "Black Toner"),
    0xA2: BrotherPart(SupplyKind.TONER, "cyan", "Cyan Toner"),
    0xA3: BrotherPart(SupplyKind.TONER, "magenta", "Magenta Toner"),
    0xA4: BrotherPart(SupplyKind.TONER, "yellow", "Yellow Toner"),
    0x41: BrotherPart(SupplyKind.DRUM, None, "Drum Unit"),
    0x80: BrotherPart(SupplyKind.DRUM, "black", "Black Drum Unit"),
    0x79: BrotherPart(SupplyKind.DRUM, "cyan", "Cyan Drum Unit"),
    0x7A: BrotherPart(SupplyKind.DRUM, "magenta", "Magenta Drum Unit"),
    0x7B: BrotherPart(SupplyKind.DRUM, "yellow", "Yellow Drum Unit"),
    0x69: BrotherPart(SupplyKind.TRANSFER, None, "Belt Unit"),
    0x6A: BrotherPart(SupplyKind.FUSER, None, "Fuser Unit"),
    0x6B: BrotherPart(SupplyKind.LASER_UNIT, None, "Laser Unit"),
    0x6C: BrotherPart(SupplyKind.PAPER_FEED_KIT, None, "PF Kit MP"),
    0x6D: BrotherPart(SupplyKind.PAPER_FEED_KIT, None, "PF Kit 1"),
}
# Whole-percent toner/ink levels (0x81..0x84): used only when the finer "remaining" id is absent.
_COARSE: dict[int, BrotherPart] = {
    0x81: BrotherPart(SupplyKind.TONER, "black", "Black Toner", hundredths=False),
    0x82: BrotherPart(SupplyKind.TONER, "cyan", "Cyan Toner", hundredths=False),
    0x83: BrotherPart(SupplyKind.TONER, "magenta", "Magenta Toner", hundredths=False),
    0x84: BrotherPart(SupplyKind.TONER, "yellow", "Yellow Toner", hundredths=False),
}
_INK_LAYOUT_IDS = frozenset(
    {0x6F, 0x70, 0x71, 0x72, 0x81, 0x82, 0x83, 0x84, 0xA1, 0xA2, 0xA3, 0xA4}
)

# Pages-left ids (VALUES_LASER_NEXTCARE) -> the maintenance id of the part they belong to.
PAGES_LEFT_PARTS: dict[int, int] = {
    0x73: 0x6B,  # laser unit
    0x77: 0x6D,  # paper-feed kit 1
    0x82: 0x41,  # drum
    0x86: 0x6C,  # paper-feed kit MP
    0x88: 0x69,  # belt
    0x89: 0x6A,  # fuser
    0xA4: 0x80,  # black drum
    0xA5: 0x79,  # cyan drum
    0xA6: 0x7A,  # magenta drum
    0xA7: 0x7B,  # yellow drum
}

# Counter ids (VALUES_COUNTERS).
COUNTER_FIELDS: dict[int, str] = {
    0x00: "total",
    0x01: "mono",
    0x02: "colour",
    0x06: "duplex",
    0x12: "black",
    0x13: "cyan",
    0x14: "magenta",
    0x15: "yellow",
    0x16: "image",
}

# IANA MIBenum of prtLocalizationCharacterSet -> Python codec (brother library's CHARSET_MAP, widened).
CHARSETS: dict[int, str] = {
    3: "ascii",
    4: "latin-1",
    5: "iso8859-2",
    6: "iso8859-3",
    7: "iso8859-4",
    8: "iso8859-5",
    12: "iso8859-9",
    17: "shift_jis",
    106: "utf-8",
    2004: "hp-roman8",
    2252: "cp1252",
}

# Inkjets: the J and T series (brother_mfc-j680dw), and the older ones named by three digits
# and a C (DCP-165C, MFC-990CW) or four digits from 3xxx to 6xxx and a C (MFC-6490CW,
# MFC-5890CN). Four digits from 9xxx and a C are colour lasers (DCP-9020CDW, MFC-9130CW).
_INK_MODEL = re.compile(
    r"\b(?:(?:MFC|DCP|HL)-[JT]\d|(?:MFC|DCP)-(?:\d{3}|[3-6]\d{3})C)", re.IGNORECASE
)


def parse_records(blob: bytes) -> list[Record]:
    """Return the records of a blob, stopping at 0xFF or at the first malformed record."""
    records: list[Record] = []
    pos = 0
    while pos < len(blob):
        ident = blob[pos]
        if ident == 0xFF or pos + 3 > len(blob):
            break
        length = blob[pos + 2]
        if blob[pos + 1] != 0x01 or length == 0 or pos + 3 + length > len(blob):
            break
        records.append(Record(ident, blob[pos + 3 : pos + 3 + length]))
        pos += 3 + length
    return records


def is_ink_model(device_id: str | None, model: str | None) -> bool:
    """Return True for Brother inkjets (MFC-J/DCP-J/DCP-T, MFC-6490CW ...), False for lasers."""
    if device_id and "laser" in device_id.lower():
        return False
    return any(text and _INK_MODEL.search(text) for text in (device_id, model))


@dataclass(frozen=True)
class BrotherLevel:
    """One maintenance reading: which part, raw level and the maximum it is measured against."""

    ident: int
    part: BrotherPart
    level: int
    maximum: int
    legacy: bool


def maintenance_levels(blob: bytes, ink: bool) -> list[BrotherLevel]:
    """Return the supply readings a maintenance blob holds, finest figure per part."""
    records = parse_records(blob)
    found: dict[tuple[SupplyKind, str | None], BrotherLevel] = {}
    coarse: dict[tuple[SupplyKind, str | None], BrotherLevel] = {}
    for rec in records:
        legacy = len(rec.data) == 2
        part = _REMAINING.get(rec.ident)
        target = found
        if part is None:
            part = _COARSE.get(rec.ident)
            target = coarse
        if part is None:
            continue
        if ink and rec.ident in _INK_LAYOUT_IDS:
            part = BrotherPart(
                SupplyKind.INK, part.colour, part.name.replace("Toner", "Ink"), part.hundredths
            )
        elif ink:
            continue  # drums, belts ... do not exist on inkjets
        if legacy:
            # Legacy layout: value bytes are (level, maximum).
            level, maximum = rec.data[0], rec.data[1]
        elif part.hundredths:
            level, maximum = rec.value, 10000
        else:
            level, maximum = rec.value, 100
        key = (part.kind, part.colour)
        target.setdefault(key, BrotherLevel(rec.ident, part, level, maximum, legacy))
    for key, reading in coarse.items():
        found.setdefault(key, reading)
    return list(found.values())


def pages_left(blob: bytes) -> dict[int, int]:
    """Return maintenance id -> pages left from the pages-left blob."""
    out: dict[int, int] = {}
    for rec in parse_records(blob):
        part = PAGES_LEFT_PARTS.get(rec.ident)
        if part is not None and len(rec.data) == 4:
            out[part] = rec.value
    return out


def counters(blob: bytes) -> dict[str, int]:
    """Return counter name -> pages from the counters blob."""
    out: dict[str, int] = {}
    for rec in parse_records(blob):
        name = COUNTER_FIELDS.get(rec.ident)
        if name is not None and len(rec.data) == 4:
            out[name] = rec.value
    return out


def decode_status(raw: bytes, charset: int | None) -> str:
    """Return the front-panel text in the printer's own charset (roman8 when it does not say)."""
    codec = CHARSETS.get(charset or 2004, "hp-roman8")
    try:
        text = raw.decode(codec)
    except (UnicodeDecodeError, LookupError):
        text = raw.decode("latin-1")
    return " ".join(text.split())


def _text(value: object) -> str | None:
    """The text of an OCTET STRING value (the device ID is ASCII), or None."""
    return value.decode("latin-1") if isinstance(value, bytes) and value else None


def supplies(values: VarBinds, model: str | None) -> list[PrivateSupply]:
    """The supplies the maintenance and pages-left blobs hold (a part with pages left only too)."""
    blob = values.get(MAINTENANCE)
    left_blob = values.get(PAGES_LEFT)
    left = pages_left(left_blob) if isinstance(left_blob, bytes) else {}
    ink = is_ink_model(_text(values.get(DEVICE_ID)), model)
    found: list[PrivateSupply] = []
    for reading in maintenance_levels(blob, ink) if isinstance(blob, bytes) else []:
        found.append(
            PrivateSupply(
                key=f"brother.{reading.ident:02x}",
                description=reading.part.name,
                kind=reading.part.kind,
                colour=reading.part.colour,
                level=reading.level,
                maximum=reading.maximum,
                pages_left=left.get(reading.ident),
                flags=("private_mib", "legacy_layout") if reading.legacy else ("private_mib",),
            )
        )
    # A part the pages-left blob counts down but the maintenance blob leaves out (a drum known
    # only by its pages left) is still reported, without a level.
    read = {(s.kind, s.colour) for s in found}
    for ident, pages in left.items():
        part = _REMAINING.get(ident)
        if (
            part is None
            or (part.kind, part.colour) in read
            or (ink and part.kind is not SupplyKind.INK)
        ):
            continue
        read.add((part.kind, part.colour))
        found.append(
            PrivateSupply(
                key=f"brother.{ident:02x}",
                description=part.name,
                kind=part.kind,
                colour=part.colour,
                level=None,
                maximum=None,
                pages_left=pages,
                flags=("private_mib", "pages_left_only"),
            )
        )
    return found


def page_counters(values: VarBinds) -> dict[CounterField, int]:
    """Total, mono, colour and duplex pages from the counters blob."""
    blob = values.get(COUNTERS)
    if not isinstance(blob, bytes):
        return {}
    found = counters(blob)
    names: dict[str, CounterField] = {
        "total": "lifetime_pages",
        "mono": "mono_pages",
        "colour": "colour_pages",
        "duplex": "duplex_pages",
    }
    return {names[k]: v for k, v in found.items() if k in names}


def status_text(values: VarBinds) -> str | None:
    """The front-panel text in the charset prtLocalizationCharacterSet names, or None."""
    raw = values.get(STATUS_TEXT)
    if not isinstance(raw, bytes):
        return None
    charset = values.get(CHARSET)
    if isinstance(charset, bytes) and charset.strip().isdigit():
        charset = int(charset.strip())  # numeric text sent as OCTET STRING
    return decode_status(raw, charset if isinstance(charset, int) else None) or None


PROFILE = VendorProfile(
    name="Brother",
    enterprise=2435,
    brands=(("brother", "Brother"),),
    printer_object_ids=("1.3.6.1.4.1.2435.2.3.9",),
    device_ids=(DEVICE_ID,),
    # Brother's thin Printer MIB needs its device ID and serial to be told apart
    # (brother_hl-l2340dw has no hrDeviceType).
    identify=(DEVICE_ID, SERIAL),
    model=(MODEL,),
    serial=(SERIAL,),
    firmware=(FIRMWARE,),  # brother_dcp-9020cdw: ZA1811191217
    private=PrivateMib(
        source="brother_private",
        scalars=(MAINTENANCE, COUNTERS, PAGES_LEFT, STATUS_TEXT, CHARSET),
        volatile=(MAINTENANCE, COUNTERS, PAGES_LEFT, STATUS_TEXT),
        supplies=supplies,
        counters=page_counters,
        status_text=status_text,
        marks_printer=(MAINTENANCE, COUNTERS),
    ),
)
