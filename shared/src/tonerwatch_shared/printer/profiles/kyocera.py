"""Kyocera and its badges (Copystar, TA Triumph-Adler, Utax)."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Kyocera",
    enterprise=1347,
    brands=(
        ("kyocera mita", "Kyocera"),
        ("kyocera", "Kyocera"),
        ("ta triumph-adler", "TA Triumph-Adler"),
        ("triumph-adler", "TA Triumph-Adler"),
        ("utax", "Utax"),
        ("copystar", "Copystar"),
    ),
    printer_object_ids=("1.3.6.1.4.1.1347.41",),
    # kyocera recording (FS-1028MFP): model, serial QUV9600664, firmware 2H9_2F00.002.002.
    model=("1.3.6.1.4.1.1347.43.5.1.1.1.1",),
    serial=("1.3.6.1.4.1.1347.43.5.1.1.28.1",),
    firmware=("1.3.6.1.4.1.1347.43.5.4.1.5.1.1",),
    # Not here, as no recording shows it: the 1347.42.3 tree (colour/function breakdown).
)
