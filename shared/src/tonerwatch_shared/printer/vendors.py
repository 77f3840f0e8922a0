"""Who made a printer, by IANA enterprise number and by the brand a device names, and where each
vendor keeps model, serial, firmware and page counters in its private MIB (data only)."""

from __future__ import annotations

from dataclasses import dataclass, field

# IANA Private Enterprise Numbers of printer makers (checked against the recordings in
# ../shared/printer-walks: 11 HP, 236 Samsung, 253 Xerox, 297 Fujifilm, 367 Ricoh/Gestetner,
# 641 Lexmark (and a Toshiba on Lexmark's OID), 674 Dell, 1347 Kyocera, 1602 Canon, 2435 Brother,
# 18334 Konica Minolta).
ENTERPRISE_VENDORS: dict[int, str] = {
    11: "HP",
    128: "Tektronix",
    236: "Samsung",
    253: "Xerox",
    297: "Fujifilm",  # Fuji Xerox, now FUJIFILM Business Innovation
    367: "Ricoh",
    641: "Lexmark",
    674: "Dell",
    1129: "Toshiba",  # Toshiba TEC
    1248: "Epson",
    1347: "Kyocera",
    1602: "Canon",
    2001: "OKI",
    2385: "Sharp",
    2435: "Brother",
    10642: "Zebra",
    18334: "Konica Minolta",
}

# Maker -> enterprise number, for walks without sysObjectID.
BRAND_ENTERPRISES: dict[str, int] = {name: number for number, name in ENTERPRISE_VENDORS.items()}

# Brands as devices spell them at the start of sysDescr/hrDeviceDescr, longest first. OEM badges
# (Ricoh's Gestetner, Savin, Lanier, NRG, Nashuatec, Rex-Rotary, infotec; Kyocera's Copystar,
# TA Triumph-Adler, Utax; Konica Minolta's Develop, Olivetti; Toshiba on Lexmark engines) keep
# their maker's sysObjectID and show their own name here.
BRANDS: tuple[tuple[str, str], ...] = (
    ("hewlett-packard", "HP"),
    ("hewlett packard", "HP"),
    ("hp", "HP"),
    ("konica minolta", "Konica Minolta"),
    ("konicaminolta", "Konica Minolta"),
    ("minolta", "Konica Minolta"),
    ("fuji xerox", "Fuji Xerox"),
    ("fujifilm", "Fujifilm"),
    ("fuji film", "Fujifilm"),
    ("xerox", "Xerox"),
    ("kyocera mita", "Kyocera"),
    ("kyocera", "Kyocera"),
    ("ta triumph-adler", "TA Triumph-Adler"),
    ("triumph-adler", "TA Triumph-Adler"),
    ("utax", "Utax"),
    ("copystar", "Copystar"),
    ("ricoh", "Ricoh"),
    ("gestetner", "Gestetner"),
    ("savin", "Savin"),
    ("lanier", "Lanier"),
    ("nrg", "NRG"),
    ("nashuatec", "Nashuatec"),
    ("rex-rotary", "Rex-Rotary"),
    ("rex rotary", "Rex-Rotary"),
    ("infotec", "infotec"),
    ("develop", "Develop"),
    ("olivetti", "Olivetti"),
    ("canon", "Canon"),
    ("brother", "Brother"),
    ("lexmark", "Lexmark"),
    ("samsung", "Samsung"),
    ("sharp", "Sharp"),
    ("toshiba", "Toshiba"),
    ("oki data", "OKI"),
    ("okidata", "OKI"),
    ("oki", "OKI"),
    ("epson", "Epson"),
    ("seiko epson", "Epson"),
    ("dell", "Dell"),
    ("zebra", "Zebra"),
    ("ztc", "Zebra"),
    ("tektronix", "Tektronix"),
)

# sysObjectID subtrees that only printers use: a device answering with one is a printer even when
# it exposes nothing of the Printer MIB.
PRINTER_OBJECT_ID_PREFIXES: tuple[str, ...] = (
    "1.3.6.1.4.1.11.2.3.9",  # HP JetDirect / LaserJet
    "1.3.6.1.4.1.236.11",  # Samsung printers
    "1.3.6.1.4.1.253.8",  # Xerox common MIB
    "1.3.6.1.4.1.297.1.11",  # Fuji Xerox / Fujifilm printers
    "1.3.6.1.4.1.367.1",  # Ricoh and its OEMs
    "1.3.6.1.4.1.641.1",  # Lexmark printers
    "1.3.6.1.4.1.641.2",  # Lexmark-engine OEMs (Toshiba e-STUDIO)
    "1.3.6.1.4.1.674.10898",  # Dell printers
    "1.3.6.1.4.1.1129.2.3",  # Toshiba TEC e-STUDIO
    "1.3.6.1.4.1.1248.1",  # Epson
    "1.3.6.1.4.1.1347.41",  # Kyocera
    "1.3.6.1.4.1.1602.4",  # Canon printers
    "1.3.6.1.4.1.2001.1",  # OKI
    "1.3.6.1.4.1.2385.3",  # Sharp
    "1.3.6.1.4.1.2435.2.3.9",  # Brother
    "1.3.6.1.4.1.10642.1",  # Zebra
    "1.3.6.1.4.1.18334.1.1.1",  # Konica Minolta
)


@dataclass(frozen=True)
class VendorOids:
    """Private-MIB scalars of one maker, each tried after the standard object fails."""

    model: tuple[str, ...] = ()
    serial: tuple[str, ...] = ()
    firmware: tuple[str, ...] = ()
    # Counters: field name -> OIDs whose values are summed (all must be present).
    counters: dict[str, tuple[str, ...]] = field(default_factory=dict)


VENDOR_OIDS: dict[int, VendorOids] = {
    # Ricoh private MIB (gestetner, ricoh_mpc3002 recordings).
    367: VendorOids(
        model=("1.3.6.1.4.1.367.3.2.1.1.1.1.0",),
        firmware=("1.3.6.1.4.1.367.3.2.1.1.1.2.0",),
        serial=("1.3.6.1.4.1.367.3.2.1.2.1.4.0",),
    ),
    # Kyocera private MIB (kyocera recording: FS-1028MFP).
    1347: VendorOids(
        model=("1.3.6.1.4.1.1347.43.5.1.1.1.1",),
        serial=("1.3.6.1.4.1.1347.43.5.1.1.28.1",),
        firmware=("1.3.6.1.4.1.1347.43.5.4.1.5.1.1",),
    ),
    # Konica Minolta (konica_c250i recording); counters per GLPI agent's Konica MibSupport:
    # 5.7.2.2.1.5.<1 black|2 colour>.<1 copy|2 print>, 5.7.2.1.3.0 duplex.
    18334: VendorOids(
        model=("1.3.6.1.4.1.18334.1.1.1.1.6.2.1.0",),
        counters={
            "mono_pages": (
                "1.3.6.1.4.1.18334.1.1.1.5.7.2.2.1.5.1.1",
                "1.3.6.1.4.1.18334.1.1.1.5.7.2.2.1.5.1.2",
            ),
            "colour_pages": (
                "1.3.6.1.4.1.18334.1.1.1.5.7.2.2.1.5.2.1",
                "1.3.6.1.4.1.18334.1.1.1.5.7.2.2.1.5.2.2",
            ),
            "duplex_pages": ("1.3.6.1.4.1.18334.1.1.1.5.7.2.1.3.0",),
        },
    ),
    # Canon product name and version (canonprinter_tm recording: TM-5300, 01.21).
    1602: VendorOids(
        model=("1.3.6.1.4.1.1602.1.1.1.1.0",),
        firmware=("1.3.6.1.4.1.1602.1.1.1.4.0",),
    ),
    # Dell (Lexmark-built) firmware (dell-laser_s5830dn: NH62.YS.N636, as in sysDescr).
    674: VendorOids(firmware=("1.3.6.1.4.1.674.10898.100.1.1.1.0",)),
    # Brother private MIB (brother library; brother_* recordings).
    2435: VendorOids(
        model=("1.3.6.1.4.1.2435.2.4.3.2435.5.13.3.0",),
        serial=("1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.1.0",),
        firmware=("1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.17.0",),
    ),
}


# Private page counters known from public docs but shown by no recording in ../shared/printer-walks
# (so not in VENDOR_OIDS: each entry there must be proven on a recording). Add one when a real
# walk shows it.
# - Konica Minolta: 18334.1.1.1.5.7.2.3.1.7.1 print black, .3.1.11.1 print colour, 5.7.2.1.5.0
#   scans (LibreNMS printer count sensors); 5.7.2.1.1.0 total (GLPI agent MibSupport::Konica).
#   konica_c250i has 5.7.2.1.5.0 (5653): a scan count, not a printed-page split.
# - Ricoh: ricohEngCounterTable 367.3.2.1.2.19.5.1.2 (type) / .9 (value), e.g. "Total Prints:
#   Color", "Total Prints: Black & White" (GLPI agent MibSupport::Ricoh, Checkmk ricoh pages).
#   ricoh_mpc3002 and gestetner hold only 367.3.2.1.1.1.{1,2}.0 and 367.3.2.1.2.1.4.0.
# - Sharp: 2385.1.1.19.2.1 table, column 3 values named by column 4 (LibreNMS); sharp_mx2614n
#   holds sysDescr only.
# - Kyocera: the 1347.42.3 tree (colour/function breakdown, third-party notes); the kyocera
#   recording holds model, serial and firmware only.
# - HP: 11.2.3.9.4.2.1.4.1.2.x (colour/mono impressions, named in the project brief); the
#   recordings hold only 11.2.3.9.1.1.7.0 (device ID) and 11.2.3.9.4.2.1.1.3.3.0 (serial).
# - Xerox: xcmHrDevDetail 253.8.53.13.2.1.6.1.20.33 colour / .34 mono impressions (GLPI agent's
#   Xerox MibSupport); xerox_phaser / xerox_workcentre hold sysDescr only.


def enterprise_number(sys_object_id: str | None) -> int | None:
    """Return the enterprise number in a sysObjectID (1.3.6.1.4.1.<n>...), or None."""
    if not sys_object_id:
        return None
    parts = sys_object_id.strip().lstrip(".").split(".")
    if len(parts) >= 7 and parts[:6] == ["1", "3", "6", "1", "4", "1"] and parts[6].isdigit():
        return int(parts[6])
    return None


def brand_in(text: str | None) -> str | None:
    """Return the brand a description starts with ("KONICA MINOLTA bizhub" -> "Konica Minolta")."""
    if not text:
        return None
    low = text.strip().lower()
    for prefix, brand in BRANDS:
        if low.startswith(prefix) and (len(low) == len(prefix) or not low[len(prefix)].isalnum()):
            return brand
    return None


def strip_brand(text: str) -> str:
    """Return a model name without its leading brand ("HP Color LaserJet" -> "Color LaserJet")."""
    low = text.lower()
    for prefix, _brand in BRANDS:
        if low.startswith(prefix) and (len(low) == len(prefix) or not low[len(prefix)].isalnum()):
            rest = text[len(prefix) :].strip(" -_,;:")
            return rest or text
    return text
