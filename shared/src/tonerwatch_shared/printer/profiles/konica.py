"""Konica Minolta and its badges (Develop, Olivetti): model and the page counters of its MIB."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import Counter, VendorProfile

_COUNTERS = "1.3.6.1.4.1.18334.1.1.1.5.7.2"

PROFILE = VendorProfile(
    name="Konica Minolta",
    enterprise=18334,
    brands=(
        ("konica minolta", "Konica Minolta"),
        ("konicaminolta", "Konica Minolta"),
        ("minolta", "Konica Minolta"),
        ("develop", "Develop"),
        ("olivetti", "Olivetti"),
    ),
    printer_object_ids=("1.3.6.1.4.1.18334.1.1.1",),
    model=("1.3.6.1.4.1.18334.1.1.1.1.6.2.1.0",),  # konica_c250i: "KONICA MINOLTA bizhub C250i"
    # konica_c250i, as GLPI agent's MibSupport::Konica reads them: 5.7.2.2.1.5.<1 black | 2
    # colour>.<1 copy | 2 print> (3672 + 22876 mono, 544 + 6711 colour), 5.7.2.1.3.0 duplex (7357).
    # Not here: 5.7.2.1.5.0 (5653 on konica_c250i) counts scans, not printed pages.
    counters=(
        Counter("mono_pages", (f"{_COUNTERS}.2.1.5.1.1", f"{_COUNTERS}.2.1.5.1.2")),
        Counter("colour_pages", (f"{_COUNTERS}.2.1.5.2.1", f"{_COUNTERS}.2.1.5.2.2")),
        Counter("duplex_pages", (f"{_COUNTERS}.1.3.0",)),
    ),
)
