"""Toshiba TEC e-STUDIO: identification only (some use Lexmark's OID, see lexmark.py)."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Toshiba",
    enterprise=1129,
    brands=(("toshiba", "Toshiba"),),  # toshiba-tec_estudio305: "TOSHIBA e-STUDIO305CS"
    # 1129.2.3: IANA PEN of Toshiba TEC; no recording shows it (e-STUDIO305CS is on 641.2).
    printer_object_ids=("1.3.6.1.4.1.1129.2.3",),
)
