"""Xerox: colour and black impressions of the Xerox common MIB."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import Counter, VendorProfile

# xcmHrDevDetailEntry (XEROX-HOST-RESOURCES-EXT-MIB): value column 6, printer row 1, counter
# group 20 (impressions), .33 colour and .34 black (GLPI agent MibSupport::Xerox). xerox_phaser
# and xerox_workcentre hold sysDescr only: proven by
# shared/tests/printer/test_vendor_profiles.py::test_xerox_versalink_colour_and_black_impressions.
_IMPRESSIONS = "1.3.6.1.4.1.253.8.53.13.2.1.6.1.20"

PROFILE = VendorProfile(
    name="Xerox",
    enterprise=253,
    brands=(("xerox", "Xerox"),),
    printer_object_ids=("1.3.6.1.4.1.253.8",),  # Xerox common MIB (xerox_phaser, xerox_workcentre)
    counters=(
        Counter("colour_pages", (f"{_IMPRESSIONS}.33",)),
        Counter("mono_pages", (f"{_IMPRESSIONS}.34",)),
    ),
)
