"""Text from printers made readable: hex dumps, encodings, part numbers, colours and supply kinds."""

from __future__ import annotations

import re
import unicodedata

from tonerwatch_shared.printer.lexicon import (
    COLOUR_ABBREVIATIONS,
    COLOUR_WORDS,
    KIND_WORDS,
    PART_NUMBER_PATTERNS,
    SERIAL_SUFFIX,
)
from tonerwatch_shared.printer.model import SupplyKind
from tonerwatch_shared.snmp.types import Missing, SnmpValue

# net-snmp prints OCTET STRINGs it cannot show as text as "48 50 20 43 ..." wrapped every 16 bytes;
# some agents and recordings store that dump as the value itself.
_HEX_DUMP = re.compile(rb"\s*[0-9A-Fa-f]{2}(?:[ \t\r\n]+[0-9A-Fa-f]{2})+\s*")
# A value that starts as text and goes on as lines of hex pairs: how net-snmp output of a string
# ending in NUL reaches us from users ("Black Toner Cartridge HP CF540A" then "43 46 35 ... 00").
_TEXT_THEN_HEX = re.compile(
    rb"(?P<text>.*?\S[ \t]*)\r?\n(?P<hex>\s*[0-9A-Fa-f]{2}(?:[ \t\r\n]+[0-9A-Fa-f]{2})+\s*)",
    re.DOTALL,
)
# Hex pairs left in text (a dump nothing could undo): no part number is read out of them.
HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{2}(?:\s+[0-9A-Fa-f]{2}){2,}(?![0-9A-Za-z])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"\s+")


def _is_japanese(text: str) -> bool:
    """Return True when every non-ASCII character is kana, kanji or full-width (a clean Shift-JIS read)."""
    has_wide = False
    for ch in text:
        if ord(ch) < 0x80:
            continue
        code = ord(ch)
        # Half-width katakana (U+FF61..FF9F) is what latin-1 bytes 0xA1..0xDF become in Shift-JIS: not proof.
        if 0xFF61 <= code <= 0xFF9F:
            return False
        if (
            0x3000 <= code <= 0x30FF
            or 0x4E00 <= code <= 0x9FFF
            or 0xFF00 <= code <= 0xFF60
            or 0x3400 <= code <= 0x4DBF
        ):
            has_wide = True
            continue
        return False
    return has_wide


def unhex_dump(data: bytes) -> bytes:
    """Return the octets a net-snmp hex dump stands for, or data itself when it is not one."""
    if _HEX_DUMP.fullmatch(data):
        return bytes.fromhex(data.decode("ascii"))
    mixed = _TEXT_THEN_HEX.fullmatch(data)
    if mixed:
        text = mixed.group("text")
        rest = bytes.fromhex(mixed.group("hex").decode("ascii")).split(b"\x00", 1)[0]
        # The hex lines either repeat the text's tail (the dump of the same octets) or go on
        # from where the text stopped.
        if not rest.strip() or text.rstrip().endswith(rest.strip()):
            return text
        return text + rest
    return data


def decode_octets(data: bytes) -> str:
    """Return an OCTET STRING as text: hex dumps undone, UTF-8 else Shift-JIS else cp1252/latin-1."""
    data = unhex_dump(data)
    # C strings padded with NULs (and garbage after the first NUL on some firmwares).
    data = data.split(b"\x00", 1)[0]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
        try:
            sjis = data.decode("shift_jis")
        except UnicodeDecodeError:
            sjis = ""
        if sjis and _is_japanese(sjis):
            text = sjis
        else:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def as_text(value: SnmpValue | None) -> str | None:
    """Return a value as cleaned text, or None when absent, Missing or empty."""
    if value is None or isinstance(value, Missing):
        return None
    if isinstance(value, bytes):
        text = decode_octets(value)
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        text = str(value)
    else:
        text = _SPACES.sub(" ", str(value)).strip()
    return text or None


def split_description(text: str) -> tuple[str, str | None]:
    """Return (name, part number) with serial-number tails and the part number cut from the name."""
    name = SERIAL_SUFFIX.split(text, maxsplit=1)[0]
    part: str | None = None
    hex_runs = [m.span() for m in HEX_RUN.finditer(name)]
    for pattern in PART_NUMBER_PATTERNS:
        match = next(
            (
                m
                for m in pattern.finditer(name)
                if not any(a < m.end("pn") and m.start("pn") < b for a, b in hex_runs)
            ),
            None,
        )
        if match:
            part = match.group("pn").upper()
            name = (name[: match.start()] + " " + name[match.end() :]).strip()
            break
    name = _SPACES.sub(" ", name).strip(" ,;:-/")
    return (name or text.strip()), part


def _tokens(text: str) -> str:
    """Return text lower-cased, accents folded, punctuation as spaces, padded for word matching."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).lower()
    return " " + re.sub(r"[^a-z0-9]+", " ", folded).strip() + " "


# Words of a description as written: a part number ("C1P70A", "PK-520") is one word.
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def colour_from_text(text: str | None) -> str | None:
    """Return the normalised colour a description or colorant name names, or None."""
    if not text:
        return None
    words = _tokens(text)
    for phrase, colour in COLOUR_WORDS:
        if f" {phrase} " in words:
            return colour
    # Letter codes only as whole words, never inside a part number ("C1P70A" is no cyan, "PK-520"
    # no photo black), and never in a kit's name ("Document Feeder Kit", "Punch Kit PK 519").
    if " kit " in words:
        return None
    for token in _WORD.findall(text):
        if token in COLOUR_ABBREVIATIONS:
            return COLOUR_ABBREVIATIONS[token]
    return None


def kind_from_text(text: str | None) -> SupplyKind | None:
    """Return the supply kind a description names (several languages), or None."""
    if not text:
        return None
    words = _tokens(text)
    for phrases, kind in KIND_WORDS:
        if any(
            f" {phrase} " in words or (phrase.endswith("*") and f" {phrase[:-1]}" in words)
            for phrase in phrases
        ):
            return kind
    return None
