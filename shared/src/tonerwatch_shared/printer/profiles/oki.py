"""OKI: identification only (print servers name the attached printer, see quirks.py)."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

PROFILE = VendorProfile(
    name="OKI",
    enterprise=2001,
    # test_oki_print_server_names_the_attached_printer (synthetic OkiLAN print-server walk).
    brands=(("oki data", "OKI"), ("okidata", "OKI"), ("oki", "OKI")),
    printer_object_ids=("1.3.6.1.4.1.2001.1",),
)
