"""Dell (Lexmark-built lasers): device ID and firmware in Dell's private MIB."""

from __future__ import annotations

from tonerwatch_shared.printer.profiles.base import VendorProfile

# "COMMAND SET:;MODEL:Dell S5830dn" (dell-laser_s5830dn).
DEVICE_ID = "1.3.6.1.4.1.674.10898.100.2.1.2.1.3.1"

PROFILE = VendorProfile(
    name="Dell",
    enterprise=674,
    brands=(("dell", "Dell"),),
    printer_object_ids=("1.3.6.1.4.1.674.10898",),
    device_ids=(DEVICE_ID,),
    identify=(DEVICE_ID,),
    firmware=("1.3.6.1.4.1.674.10898.100.1.1.1.0",),  # dell-laser_s5830dn: NH62.YS.N636
)
