"""Samsung: identification only (samsungprinter_clx, samsungprinter_m4080fx)."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Samsung",
    enterprise=236,
    brands=(("samsung", "Samsung"),),  # samsungprinter_clx: "Samsung CLX-3170 Series"
    printer_object_ids=("1.3.6.1.4.1.236.11",),  # samsungprinter_m4080fx
)
