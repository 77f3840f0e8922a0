"""Lexmark, and the OEMs on its engines and OID: identification only."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="Lexmark",
    enterprise=641,
    brands=(("lexmark", "Lexmark"),),  # lexmarkprinter: "Lexmark T640"
    printer_object_ids=(
        "1.3.6.1.4.1.641.1",  # lexmarkprinter
        "1.3.6.1.4.1.641.2",  # Lexmark-engine OEMs: Toshiba e-STUDIO (toshiba-tec_estudio305)
    ),
)
