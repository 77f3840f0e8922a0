"""Sharp: identification only (sharp_mx2614n holds sysDescr only)."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Sharp",
    enterprise=2385,
    brands=(("sharp", "Sharp"),),  # sharp_mx2614n: "SHARP MX-2614N" (sysDescr only)
    # 2385.3: IANA PEN of Sharp; no recording shows it.
    printer_object_ids=("1.3.6.1.4.1.2385.3",),
)
