"""IPP keywords as data: marker types, marker colours and printer-state-reasons, mapped onto the model."""

from __future__ import annotations

from tonerwatch_shared.printer.model import SupplyKind

# "marker-types" keywords onto SupplyKind: the IPP spelling of RFC 3805 PrtMarkerSuppliesTypeTC,
# exactly the 34 keywords CUPS emits (backend/snmp-supplies.c types[]), so an unknown one really
# is unknown (it maps to OTHER, never to a guess).
MARKER_TYPES: dict[str, SupplyKind] = {
    "toner": SupplyKind.TONER,
    "toner-cartridge": SupplyKind.TONER,
    "ink": SupplyKind.INK,
    "ink-cartridge": SupplyKind.INK,
    "ink-ribbon": SupplyKind.RIBBON,
    "ribbon-wax": SupplyKind.RIBBON,
    "solid-wax": SupplyKind.SOLID_WAX,
    "opc": SupplyKind.DRUM,
    "developer": SupplyKind.DEVELOPER,
    "fuser": SupplyKind.FUSER,
    "fuser-oil": SupplyKind.FUSER_OIL,
    "fuser-oiler": SupplyKind.FUSER_OIL,
    "fuser-oil-wick": SupplyKind.FUSER_OIL,
    "cleaner-unit": SupplyKind.CLEANER,
    "fuser-cleaning-pad": SupplyKind.CLEANER,
    "transfer-unit": SupplyKind.TRANSFER,
    "waste-toner": SupplyKind.WASTE_TONER,
    "waste-ink": SupplyKind.WASTE_INK,
    "waste-water": SupplyKind.WASTE_OTHER,
    "waste-wax": SupplyKind.WASTE_OTHER,
    "waste-paper": SupplyKind.WASTE_OTHER,
    "staples": SupplyKind.STAPLES,
    "stitching-wire": SupplyKind.STAPLES,
    "corona-wire": SupplyKind.OTHER,
    "water": SupplyKind.OTHER,
    "glue-water-additive": SupplyKind.OTHER,
    "binding-supply": SupplyKind.OTHER,
    "banding-supply": SupplyKind.OTHER,
    "shrink-wrap": SupplyKind.OTHER,
    "paper-wrap": SupplyKind.OTHER,
    "inserts": SupplyKind.OTHER,
    "covers": SupplyKind.OTHER,
    "other": SupplyKind.OTHER,
    "unknown": SupplyKind.OTHER,
}

# Exact marker-colors values, first CUPS' own colorant table (backend/snmp-supplies.c, which is
# what CUPS-based firmware and the IPP Everywhere self-certification tools emit), named the way
# printer/lexicon.py names colours (light variants exactly as CUPS spells their hex).
EXACT_COLOURS: dict[str, str] = {
    "#000000": "black",
    "#0000FF": "blue",
    "#A52A2A": "brown",
    "#00FFFF": "cyan",
    "#404040": "dark gray",
    "#FFCC00": "dark yellow",
    "#FFD700": "gold",
    "#808080": "gray",
    "#00FF00": "green",
    "#606060": "light black",
    "#E0FFFF": "light cyan",
    "#D3D3D3": "light gray",
    "#FF77FF": "light magenta",
    "#FF00FF": "magenta",
    "#FFA500": "orange",
    "#FF0000": "red",
    "#C0C0C0": "silver",
    "#FFFFFF": "white",
    "#FFFF00": "yellow",
}

# Nearest-colour fallback palette: only the primaries, so a vendor's "#00AEEF" still reads as
# cyan, but nothing is guessed as a light variant.
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("black", (0x00, 0x00, 0x00)),
    ("white", (0xFF, 0xFF, 0xFF)),
    ("cyan", (0x00, 0xFF, 0xFF)),
    ("magenta", (0xFF, 0x00, 0xFF)),
    ("yellow", (0xFF, 0xFF, 0x00)),
    ("red", (0xFF, 0x00, 0x00)),
    ("green", (0x00, 0xFF, 0x00)),
    ("blue", (0x00, 0x00, 0xFF)),
    ("gray", (0x80, 0x80, 0x80)),
)
# Euclidean RGB distance beyond which a colour is not called by any palette name: under half
# the 255 between neighbouring primaries, so a name is never a coin toss between two of them.
PALETTE_MAX_DISTANCE = 120.0

# printer-state-reasons (RFC 8011 5.4.12, PWG 5100.9) onto the hrPrinterDetectedErrorState bit
# names (RFC 3805) the SNMP decoding uses. The paper/door/jam/tray/output rows are CUPS' own
# Printer-MIB-to-IPP table (backend/snmp-supplies.c printer_states[]) read backwards: noPaper and
# inputTrayEmpty both become media-empty there, serviceRequested and overduePreventMaint both
# service-needed, so IPP cannot tell those pairs apart and we name the first of each. Inkjets
# report ink through the Printer MIB's lowToner/noToner bits too, so marker-supply-* lands there.
REASON_ERRORS: dict[str, str] = {
    "media-low": "low_paper",
    "media-empty": "no_paper",
    "media-needed": "no_paper",
    "toner-low": "low_toner",
    "toner-empty": "no_toner",
    "marker-supply-low": "low_toner",
    "marker-supply-empty": "no_toner",
    "door-open": "door_open",
    "cover-open": "door_open",
    "interlock-open": "door_open",
    "media-jam": "jammed",
    "offline": "offline",
    "shutdown": "offline",
    "service-needed": "service_requested",
    "input-tray-missing": "input_tray_missing",
    "output-tray-missing": "output_tray_missing",
    "marker-supply-missing": "marker_supply_missing",
    "output-area-almost-full": "output_near_full",
    "output-area-full": "output_full",
}

# PWG 5100.9 names every finisher/path jam "<device>-jam"; all of them are a jam.
JAM_SUFFIX = "-jam"

# RFC 8011 5.4.12: a reason without one of these suffixes MUST be taken as an error.
REASON_SEVERITY_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("-error", "critical"),
    ("-warning", "warning"),
    ("-report", "info"),
)

# RFC 8011 printer-state enum onto hrPrinterStatus names (RFC 2790); stopped has no
# hrPrinterStatus of its own, the Host Resources MIB reports it as other + device down.
PRINTER_STATES: dict[int, tuple[str, str]] = {
    3: ("idle", "running"),
    4: ("printing", "running"),
    5: ("other", "down"),
}

# Makers that name themselves two ways in printer-device-id MFG / printer-make-and-model.
VENDOR_ALIASES: dict[str, str] = {
    "hewlett-packard": "HP",
    "hp": "HP",
}
