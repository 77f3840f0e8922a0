"""Every vendor profile, and the OID lists and tables derived from them (no hand copies)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tonerwatch_shared.printer.profiles import (
    brother,
    canon,
    dell,
    epson,
    fujifilm,
    hp,
    konica,
    kyocera,
    lexmark,
    oki,
    ricoh,
    samsung,
    sharp,
    tektronix,
    toshiba,
    xerox,
    zebra,
)
from tonerwatch_shared.printer.profiles.base import VendorProfile

PRIVATE = "1.3.6.1.4.1."

# HP first: its device ID is the one other makers implement, tried before theirs.
PROFILES: tuple[VendorProfile, ...] = (
    hp.PROFILE,
    brother.PROFILE,
    dell.PROFILE,
    ricoh.PROFILE,
    kyocera.PROFILE,
    konica.PROFILE,
    canon.PROFILE,
    xerox.PROFILE,
    samsung.PROFILE,
    fujifilm.PROFILE,
    lexmark.PROFILE,
    toshiba.PROFILE,
    epson.PROFILE,
    oki.PROFILE,
    sharp.PROFILE,
    zebra.PROFILE,
    tektronix.PROFILE,
)

BY_ENTERPRISE: Mapping[int, VendorProfile] = {p.enterprise: p for p in PROFILES}


def profile_for(enterprise: int | None) -> VendorProfile | None:
    """The profile of the maker with this enterprise number, or None."""
    return BY_ENTERPRISE.get(enterprise) if enterprise is not None else None


def _unique(oids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(oids))


# Private objects every printer is asked for (HP's IEEE 1284 device ID).
SHARED_SCALARS: tuple[str, ...] = _unique(o for p in PROFILES for o in p.shared)
DEVICE_ID_OIDS: tuple[str, ...] = _unique(o for p in PROFILES for o in p.device_ids)
# Every scalar of every profile: what the first poll of an unknown maker may ask.
VENDOR_SCALARS: tuple[str, ...] = _unique(
    (*SHARED_SCALARS, *(o for p in PROFILES for o in p.scalars))
)
# What a steady poll reads again: every counter, and every decoder's changing objects.
VOLATILE_SCALARS: frozenset[str] = frozenset(o for p in PROFILES for o in p.volatile_scalars)
# Standard objects only one maker's decoder reads (Brother decodes its panel text with the charset).
VENDOR_STANDARD_SCALARS: Mapping[int, tuple[str, ...]] = {
    p.enterprise: std
    for p in PROFILES
    if (std := tuple(o for o in p.scalars if not o.startswith(PRIVATE)))
}
# Objects only printers have: present means a printer even without any Printer MIB.
MARKS_PRINTER: tuple[str, ...] = _unique(
    o for p in PROFILES if p.private for o in p.private.marks_printer
)
PRINTER_OBJECT_ID_PREFIXES: tuple[str, ...] = _unique(
    o for p in PROFILES for o in p.printer_object_ids
)
# Discovery's identifying GET: what each enterprise adds; any other maker may be an HP-OID OEM.
IDENTIFY_EXTRA: Mapping[int, tuple[str, ...]] = {
    p.enterprise: p.identify for p in PROFILES if p.identify is not None
}
IDENTIFY_EXTRA_DEFAULT: tuple[str, ...] = SHARED_SCALARS
