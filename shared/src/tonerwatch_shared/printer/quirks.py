"""Vendor quirks as data: each entry names the recording (or source) that shows it and is proven by
a test named after that device in shared/tests/printer."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SysDescrQuirk:
    """A sysDescr shape: what it tells about model, serial and whether it is a print server."""

    pattern: re.Pattern[str]
    print_server: bool = False  # sysDescr describes the network card, not the printer
    source: str = ""


# Tried in order; named groups "model", "serial", "firmware" are used when present.
SYS_DESCR_QUIRKS: tuple[SysDescrQuirk, ...] = (
    # HP JetDirect (jetdirect_m252dw): "HP ETHERNET MULTI-ENVIRONMENT,SN:VNB3J99999,FN:..,PID:HP Color
    # LaserJet Pro M252dw": the card's text; PID names the printer, SN its serial.
    SysDescrQuirk(
        re.compile(
            r"^HP ETHERNET MULTI-ENVIRONMENT(?:.*?,SN:(?P<serial>[^,]+))?(?:.*?,PID:(?P<model>[^,]+))?",
            re.IGNORECASE,
        ),
        print_server=True,
        source="jetdirect_m252dw",
    ),
    # External print servers: "... PrintServer: Attached to MC873" (OKI) names the printer.
    SysDescrQuirk(
        re.compile(r"PrintServer:?\s*Attached to\s+(?P<model>[^\s,;]+)", re.IGNORECASE),
        print_server=True,
        source="OKI OkiLAN print servers (issue example)",
    ),
    # Brother NC-xxxx print server (brother.snmprec: "Brother NC-8300h, Firmware Ver.1.14 ..."):
    # the card, not the MFC-L2710DW behind it.
    SysDescrQuirk(
        re.compile(r"^Brother NC-\w+", re.IGNORECASE),
        print_server=True,
        source="brother",
    ),
    # Samsung (samsungprinter_clx, samsungprinter_m4080fx): "Samsung CLX-3170 Series;V1.00.01.64 ..;
    # S/N AAAAAAA000AAAA000" - model before ";", firmware after ";V", serial after "S/N".
    SysDescrQuirk(
        re.compile(
            r"^Samsung (?P<model>[^;]+?)(?: Series)?;\s*V(?P<firmware>[\w.\-]+).*?(?:S/N\s*(?P<serial>\S+))?\s*$",
            re.IGNORECASE,
        ),
        source="samsungprinter_clx",
    ),
    # Lexmark engines (lexmarkprinter, dell-laser_s5830dn, toshiba-tec_estudio305):
    # "<Brand> <model> version NH62.YS.N636 kernel 3.0.0 All-N-1".
    SysDescrQuirk(
        re.compile(r"^(?P<model>.+?) version (?P<firmware>\S+) kernel ", re.IGNORECASE),
        source="lexmarkprinter",
    ),
    # Ricoh and OEMs (ricoh_aficio, ricoh_mpc3002, gestetner): "RICOH Aficio MP C3002 2.20 / RICOH
    # Network Printer C model / ..." - model then firmware before the first " / ".
    SysDescrQuirk(
        re.compile(r"^(?P<model>.+?) (?P<firmware>\d+\.\d+) / .*Network Printer", re.IGNORECASE),
        source="ricoh_mpc3002",
    ),
    # Xerox and Dell (xerox_phaser, xerox_workcentre, dell-laser_mfp): "<model>; System 35.004..." -
    # the model ends at the first ";".
    SysDescrQuirk(re.compile(r"^(?P<model>[^;]+);"), source="xerox_phaser"),
    # Canon (canonprinter_d1180, canonprinter_tm): "Canon TM-5300 /P" - " /P" is not the model.
    SysDescrQuirk(
        re.compile(r"^(?P<model>Canon .+?)\s+/P\s*$", re.IGNORECASE), source="canonprinter_tm"
    ),
)

# Device-ID strings (IEEE 1284) and vendor variants: the first of these keys that has a value.
DEVICE_ID_MODEL_KEYS: tuple[str, ...] = ("MDL", "MODEL", "DES", "DESCRIPTION")

# hrDeviceDescr / device-ID model suffixes that are not part of the model name.
MODEL_SUFFIXES = re.compile(r"\s+(?:series|/P)\s*$", re.IGNORECASE)

# Generic, multi-vendor sysDescrs that name no model (kyocera: "KYOCERA Document Solutions Printing
# System"); the model then comes from the private MIB.
GENERIC_SYS_DESCR = re.compile(
    r"^(?:KYOCERA (?:Document Solutions|MITA) Printing System|Printing System)\s*$", re.IGNORECASE
)


# Vendor-specific prtMarkerSuppliesLevel values live in the vendor profiles
# (VendorProfile.level_quirks, printer/profiles/<vendor>.py).

# Capacities at or above this are not real (2**31-1 and friends are "unset" on some firmwares).
ABSURD_VALUE = 2**31 - 1
