"""HP: its IEEE 1284 device ID object, which many other makers implement too."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

# "MFG:Hewlett-Packard;...;MDL:HP Color LaserJet Pro M252dw;CLS:PRINTER" (jetdirect_m252dw);
# Epson answers it too (demo recording epson-wf-c5790).
DEVICE_ID = "1.3.6.1.4.1.11.2.3.9.1.1.7.0"

PROFILE = VendorProfile(
    name="HP",
    enterprise=11,
    brands=(("hewlett-packard", "HP"), ("hewlett packard", "HP"), ("hp", "HP")),
    printer_object_ids=("1.3.6.1.4.1.11.2.3.9",),  # JetDirect / LaserJet (jetdirect_m252dw)
    device_ids=(DEVICE_ID,),
    shared=(DEVICE_ID,),
    # HP's own printers always give hrDeviceDescr and the Printer MIB: their 300-byte device ID
    # is left to the first snapshot (jetdirect_m252dw: 1,013 -> 5xx bytes, bench/DISCOVERY.md).
    identify=(),
)
