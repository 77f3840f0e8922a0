"""Ricoh and the badges it builds for (Gestetner, Savin, Lanier, NRG, Nashuatec, Rex-Rotary, infotec)."""

from __future__ import annotations

from tonerwatch_shared.printer.model import SupplyState
from tonerwatch_shared.printer.profiles.base import LevelQuirk, VendorProfile

PROFILE = VendorProfile(
    name="Ricoh",
    enterprise=367,
    brands=(
        ("ricoh", "Ricoh"),
        ("gestetner", "Gestetner"),
        ("savin", "Savin"),
        ("lanier", "Lanier"),
        ("nrg", "NRG"),
        ("nashuatec", "Nashuatec"),
        ("rex-rotary", "Rex-Rotary"),
        ("rex rotary", "Rex-Rotary"),
        ("infotec", "infotec"),
    ),
    printer_object_ids=("1.3.6.1.4.1.367.1",),
    # gestetner: "Gestetner MPC2500/DSc525", 1.71, M6394300657; ricoh_mpc3002: "Aficio MP C3002".
    model=("1.3.6.1.4.1.367.3.2.1.1.1.1.0",),
    firmware=("1.3.6.1.4.1.367.3.2.1.1.1.2.0",),
    serial=("1.3.6.1.4.1.367.3.2.1.2.1.4.0",),
    # -100 means "near end" (toner almost out, no figure), as in Ricoh's private toner table
    # (ricohEngTonerTable 367.3.2.1.2.24.1.1, not read: no recording holds it). ricoh_mpc3002
    # reports 0..100 of 100; proven by test_ricoh_minus_100_means_near_end (test_recordings.py).
    level_quirks=(LevelQuirk(-100, SupplyState.LOW, "near_end"),),
    # Not here, as no recording shows it: ricohEngCounterTable 367.3.2.1.2.19.5.1.{2 type, 9
    # value} ("Total Prints: Color", GLPI agent MibSupport::Ricoh).
)
