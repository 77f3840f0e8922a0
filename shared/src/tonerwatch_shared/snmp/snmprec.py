"""snmpsim `.snmprec` recordings read into the same OID -> value dict a walk returns."""

from __future__ import annotations

import binascii
from pathlib import Path

from tonerwatch_shared.snmp.types import IpAddress, Oid, SnmpValue

# ASN.1 tags snmpsim writes: INTEGER, Counter32, Gauge32, TimeTicks, Counter64 all read as int.
_INT_TAGS = frozenset({"2", "65", "66", "67", "70"})


def _value(tag: str, raw: bytes) -> SnmpValue | None:
    """Return the Python value of one record, or None for a tag we do not read (Null, Opaque ...)."""
    # A tag may carry a variation module ("2:numeric"); the base tag is what the agent serves.
    base = tag.split(":", 1)[0].strip()
    hexed = base.endswith("x")
    base = base.rstrip("x")
    if hexed:
        try:
            data = binascii.unhexlify(raw.strip())
        except (binascii.Error, ValueError):
            return None
    else:
        data = raw
    if base == "4":
        return data
    text = data.decode("latin-1").strip()
    if base in _INT_TAGS:
        try:
            return int(text)
        except ValueError:
            return None
    if base == "6":
        return Oid(text.lstrip("."))
    if base == "64":
        if hexed and len(data) == 4:
            return IpAddress(".".join(str(b) for b in data))
        return IpAddress(text)
    return None


def parse_snmprec_bytes(data: bytes) -> dict[str, SnmpValue]:
    """Return OID -> value for every readable record of a recording given as raw bytes."""
    values: dict[str, SnmpValue] = {}
    for line in data.splitlines():
        # snmpsim strips each line before splitting, so trailing spaces of a value are not served.
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        parts = line.split(b"|", 2)
        if len(parts) != 3:
            continue
        oid = parts[0].decode("latin-1").strip().lstrip(".")
        tag = parts[1].decode("latin-1")
        value = _value(tag, parts[2])
        if oid and value is not None:
            values[oid] = value
    return values


def parse_snmprec(text: str) -> dict[str, SnmpValue]:
    """Return OID -> value for a recording given as text (OCTET STRINGs encoded as snmpsim does)."""
    # snmpsim reads files as ISO-8859-1 and serves the same bytes back; text outside latin-1
    # (a recording saved as UTF-8 and read as str) is served as its UTF-8 bytes.
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    return parse_snmprec_bytes(data)


def load_snmprec(path: str | Path) -> dict[str, SnmpValue]:
    """Return OID -> value for the recording at path."""
    return parse_snmprec_bytes(Path(path).read_bytes())
