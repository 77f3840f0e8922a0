"""Zebra label printers: identification only."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Zebra",
    enterprise=10642,
    # No recording: IANA PEN 10642 and the ZTC/Zebra names of its agents (kept from the
    # former vendor table).
    brands=(("zebra", "Zebra"), ("ztc", "Zebra")),
    printer_object_ids=("1.3.6.1.4.1.10642.1",),
)
