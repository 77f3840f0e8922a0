"""Tektronix (Phaser before Xerox bought it): identification only."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Tektronix",
    enterprise=128,
    # No recording: IANA PEN 128 (kept from the former vendor table).
    brands=(("tektronix", "Tektronix"),),
)
