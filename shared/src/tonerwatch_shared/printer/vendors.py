"""Who made a printer, by IANA enterprise number and by the brand a device names (from the profiles)."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles import registry
from tonerwatch_shared.printer.profiles.registry import PROFILES

# IANA Private Enterprise Numbers of printer makers and their brands come from the vendor
# profiles (printer/profiles/<vendor>.py, checked against the recordings in ../shared/printer-walks).
ENTERPRISE_VENDORS: dict[int, str] = {p.enterprise: p.name for p in PROFILES}

# Brands as devices spell them at the start of sysDescr/hrDeviceDescr, longest first (so
# "hewlett-packard" is tried before "hp", "fuji xerox" before "xerox"). OEM badges (Ricoh's
# Gestetner, Kyocera's Utax, Konica Minolta's Develop ...) keep their maker's sysObjectID and
# show their own name here.
BRANDS: tuple[tuple[str, str], ...] = tuple(
    sorted(
        ((prefix, brand) for p in PROFILES for prefix, brand in p.brands),
        key=lambda pair: -len(pair[0]),
    )
)

# Brand -> enterprise number of its maker, for walks without sysObjectID.
BRAND_ENTERPRISES: dict[str, int] = {
    brand: p.enterprise for p in PROFILES for _prefix, brand in p.brands
}

# sysObjectID subtrees that only printers use: a device answering with one is a printer even when
# it exposes nothing of the Printer MIB.
PRINTER_OBJECT_ID_PREFIXES: tuple[str, ...] = registry.PRINTER_OBJECT_ID_PREFIXES


def enterprise_number(sys_object_id: str | None) -> int | None:
    """Return the enterprise number in a sysObjectID (1.3.6.1.4.1.<n>...), or None."""
    if not sys_object_id:
        return None
    parts = sys_object_id.strip().lstrip(".").split(".")
    if len(parts) >= 7 and parts[:6] == ["1", "3", "6", "1", "4", "1"] and parts[6].isdigit():
        return int(parts[6])
    return None


def brand_in(text: str | None) -> str | None:
    """Return the brand a description starts with ("KONICA MINOLTA bizhub" -> "Konica Minolta")."""
    if not text:
        return None
    low = text.strip().lower()
    for prefix, brand in BRANDS:
        if low.startswith(prefix) and (len(low) == len(prefix) or not low[len(prefix)].isalnum()):
            return brand
    return None


def strip_brand(text: str) -> str:
    """Return a model name without its leading brand ("HP Color LaserJet" -> "Color LaserJet")."""
    low = text.lower()
    for prefix, _brand in BRANDS:
        if low.startswith(prefix) and (len(low) == len(prefix) or not low[len(prefix)].isalnum()):
            rest = text[len(prefix) :].strip(" -_,;:")
            return rest or text
    return text
