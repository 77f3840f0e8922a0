"""Epson: identification only (its device ID is HP's object, see hp.py)."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Epson",
    enterprise=1248,
    # No real recording: the demo template epson-wf-c5790 (our own) has 1248.1.2.2...
    brands=(("epson", "Epson"), ("seiko epson", "Epson")),
    printer_object_ids=("1.3.6.1.4.1.1248.1",),
)
