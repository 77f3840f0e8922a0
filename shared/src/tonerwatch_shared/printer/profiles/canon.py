"""Canon: product name and version in its private MIB."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Canon",
    enterprise=1602,
    brands=(("canon", "Canon"),),
    printer_object_ids=("1.3.6.1.4.1.1602.4",),
    model=("1.3.6.1.4.1.1602.1.1.1.1.0",),  # canonprinter_tm: TM-5300
    firmware=("1.3.6.1.4.1.1602.1.1.1.4.0",),  # canonprinter_tm: 01.21
)
