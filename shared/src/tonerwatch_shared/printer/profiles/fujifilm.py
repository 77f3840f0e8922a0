"""Fujifilm (Fuji Xerox, now FUJIFILM Business Innovation): identification only."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Fujifilm",
    enterprise=297,
    # fujifilmprinter_c810: "FUJIFILM ApeosPro C810"; Fuji Xerox is the former name.
    brands=(("fuji xerox", "Fuji Xerox"), ("fujifilm", "Fujifilm"), ("fuji film", "Fujifilm")),
    printer_object_ids=("1.3.6.1.4.1.297.1.11",),  # fujifilmprinter_c810
)
