"""Words printers use for colours, supply kinds, part and serial numbers, as data (several languages)."""

from __future__ import annotations

import re

from tonerwatch_shared.printer.model import SupplyKind

# (phrase in folded lower-case words, normalised colour); longer phrases first so "light cyan" wins
# over "cyan". Languages: en, de, fr, es, it, pt, nl, pl, ja (romaji).
COLOUR_WORDS: tuple[tuple[str, str], ...] = (
    ("photo black", "photo black"),
    ("photoschwarz", "photo black"),
    ("noir photo", "photo black"),
    ("negro foto", "photo black"),
    ("nero foto", "photo black"),
    ("matte black", "matte black"),
    ("matt black", "matte black"),
    ("mattschwarz", "matte black"),
    ("noir mat", "matte black"),
    ("negro mate", "matte black"),
    ("nero opaco", "matte black"),
    ("light cyan", "light cyan"),
    ("photo cyan", "light cyan"),
    ("hell cyan", "light cyan"),
    ("cyan clair", "light cyan"),
    ("cian claro", "light cyan"),
    ("ciano chiaro", "light cyan"),
    ("light magenta", "light magenta"),
    ("photo magenta", "light magenta"),
    ("hell magenta", "light magenta"),
    ("magenta clair", "light magenta"),
    ("magenta claro", "light magenta"),
    ("magenta chiaro", "light magenta"),
    ("light light black", "light light black"),
    ("light black", "light black"),
    ("light gray", "light gray"),
    ("light grey", "light gray"),
    ("photo gray", "photo gray"),
    ("black", "black"),
    ("schwarz", "black"),
    ("noir", "black"),
    ("negro", "black"),
    ("nero", "black"),
    ("preto", "black"),
    ("zwart", "black"),
    ("czarny", "black"),
    ("kuro", "black"),
    ("cyan", "cyan"),
    ("cian", "cyan"),
    ("ciano", "cyan"),
    ("zyan", "cyan"),
    ("cyaan", "cyan"),
    ("shian", "cyan"),
    ("magenta", "magenta"),
    ("majenta", "magenta"),
    ("yellow", "yellow"),
    ("gelb", "yellow"),
    ("jaune", "yellow"),
    ("giallo", "yellow"),
    ("amarillo", "yellow"),
    ("amarelo", "yellow"),
    ("geel", "yellow"),
    ("zolty", "yellow"),
    ("kiiro", "yellow"),
    ("ierou", "yellow"),
    ("gray", "gray"),
    ("grey", "gray"),
    ("grau", "gray"),
    ("gris", "gray"),
    ("grigio", "gray"),
    ("red", "red"),
    ("rot", "red"),
    ("rouge", "red"),
    ("rojo", "red"),
    ("rosso", "red"),
    ("green", "green"),
    ("blue", "blue"),
    ("orange", "orange"),
    ("violet", "violet"),
    ("white", "white"),
    ("clear", "clear"),
    ("gloss optimizer", "clear"),
)

# Standalone upper-case tokens in descriptions ("Drum Unit (K)", "Toner Bk", "TONER C").
COLOUR_ABBREVIATIONS: dict[str, str] = {
    "K": "black",
    "BK": "black",
    "Bk": "black",
    "PK": "photo black",
    "PBK": "photo black",
    "MK": "matte black",
    "MBK": "matte black",
    "C": "cyan",
    "LC": "light cyan",
    "M": "magenta",
    "LM": "light magenta",
    "Y": "yellow",
    "CMY": "cmy",
}

# Ordered: the first group with a matching phrase wins, so waste comes before toner/ink and
# transfer roller before the paper-feed rollers. A trailing * matches a word prefix (German compounds).
KIND_WORDS: tuple[tuple[tuple[str, ...], SupplyKind], ...] = (
    (
        (
            "waste ink",
            "ink waste",
            "maintenance box",
            "maintenance cartridge",
            "ink absorber",
            "resttinte*",
            "tinta residual",
            "encre usagee",
            "inchiostro di scarto",
            "haiinku",
        ),
        SupplyKind.WASTE_INK,
    ),
    (
        (
            "waste toner",
            "waste",
            "resttoner*",
            "toner usage",
            "toner usagé",
            "recuperateur*",
            "collecteur*",
            "toner residual",
            "toner de desecho",
            "deposito de toner residual",
            "toner di scarto",
            "contenitore toner*",
            "toner residuo",
            "haitona",
            "haitoner",
            "afvaltoner",
            "residuos",
        ),
        SupplyKind.WASTE_TONER,
    ),
    (
        (
            "drum",
            "drums",
            "opc",
            "photoconductor",
            "photoconductive",
            "imaging unit",
            "image unit",
            "imaging kit",
            "imaging drum",
            "trommel*",
            "bildeinheit",
            "tambour",
            "tamburo",
            "tambor",
            "unite d imagerie",
            "unidad de imagen",
            "unita immagine",
            "unita immagini",
            "doramu",
            "kankotai",
            "photoconducteur",
            "fotoconductor",
            "fotoconduttore",
        ),
        SupplyKind.DRUM,
    ),
    (
        ("fuser oil", "fuser oiler", "oil wick", "fixierol*"),
        SupplyKind.FUSER_OIL,
    ),
    (
        (
            "fuser",
            "fusing",
            "fixing",
            "fixier*",
            "fusore",
            "fusor",
            "unite de fusion",
            "kit de fusion",
            "unidad de fusion",
            "unita di fusione",
            "teichaku",
        ),
        SupplyKind.FUSER,
    ),
    (
        (
            "transfer",
            "transfert",
            "transferencia",
            "trasferimento",
            "ubertragung*",
            "transferband",
            "transfereinheit",
            "belt",
            "itb",
            "courroie",
            "cinghia",
            "correa",
            "tensha",
        ),
        SupplyKind.TRANSFER,
    ),
    (
        ("cleaning", "cleaner", "reinigung*", "nettoyage", "limpieza", "pulizia", "corona"),
        SupplyKind.CLEANER,
    ),
    (
        (
            "developer",
            "developing",
            "entwickler*",
            "developpeur",
            "developpement",
            "revelador",
            "sviluppatore",
            "genzo",
            "genzoki",
        ),
        SupplyKind.DEVELOPER,
    ),
    (
        ("laser unit", "laser scanner", "scanner unit", "laser kit"),
        SupplyKind.LASER_UNIT,
    ),
    (
        (
            "roller",
            "rollers",
            "pick up",
            "pickup",
            "feed kit",
            "paper feed",
            "pf kit",
            "separation",
            "retard",
            "feed roller",
            "einzugsrolle*",
            "rouleau",
            "rodillo",
            "rullo",
        ),
        SupplyKind.PAPER_FEED_KIT,
    ),
    (
        (
            "maintenance",
            "maintenance kit",
            "wartung*",
            "kit de maintenance",
            "kit de mantenimiento",
            "mantenimiento",
            "manutenzione",
            "kit di manutenzione",
            "service kit",
        ),
        SupplyKind.MAINTENANCE_KIT,
    ),
    (
        ("staple", "staples", "stapler", "heftklammer*", "agrafe*", "grapas", "punti metallici"),
        SupplyKind.STAPLES,
    ),
    (
        ("ribbon", "farbband", "ruban", "cinta", "nastro"),
        SupplyKind.RIBBON,
    ),
    (
        ("solid ink", "wax", "colorstix"),
        SupplyKind.SOLID_WAX,
    ),
    (
        (
            "ink",
            "inks",
            "ink tank",
            "ink cartridge",
            "tinte*",
            "tintenpatrone*",
            "encre",
            "tinta",
            "inchiostro",
            "inku",
            "printhead",
        ),
        SupplyKind.INK,
    ),
    (
        (
            "toner",
            "toners",
            "toner cartridge",
            "tonerkartusche*",
            "tonerpatrone*",
            "cartouche",
            "cartridge",
            "cartridges",
            "print cartridge",
            "kassette",
            "cartucho",
            "cartuccia",
            "tona",
            "tonaa",
        ),
        SupplyKind.TONER,
    ),
)

# Everything from a serial-number marker on is dropped from supply names:
# Xerox ";SN 1234", Samsung " S/N:CRUM-...", "Serial No." ...
SERIAL_SUFFIX = re.compile(
    r"\s*[;,]?\s*(?:\bS/N\b|;\s*SN\b|,\s*SN\b|\bSerial(?:\s*No\.?)?\b)\s*:?.*$", re.IGNORECASE
)

# Part numbers, explicit marker first, then vendor formats. Each has a named group "pn".
PART_NUMBER_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Xerox / Fuji Xerox: "Black Toner Cartridge, PN 006R01697"; others "P/N:", "Part No."
    re.compile(
        r"[,;]?\s*\b(?:PN|P/N|Part\s*(?:No\.?|Number))\s*[:#]?\s*(?P<pn>[A-Z0-9][A-Z0-9./-]{3,})",
        re.IGNORECASE,
    ),
    # Xerox consumables: 106R01631, 006R01697, 108R00865, 013R00662
    re.compile(r"\b(?P<pn>\d{3}R\d{5})\b"),
    # HP LaserJet/OfficeJet: "HP CF400X", "HP 950XL", "CE285A", "Q2612A", "W2030A"
    re.compile(r"\bHP\s+(?P<pn>[A-Z]{0,2}\d{2,4}[A-Z]{0,2})\b"),
    re.compile(r"\b(?P<pn>(?:C[BCEFZ]|Q|W|CZ)\d{3,4}[A-Z]{1,2})\b"),
    # Brother TN-/DR-/BU-/WT-/LC-/BT-, Kyocera TK-/DK-/MK-/DV-/FK-, Samsung MLT-/CLT-, Canon CRG-/
    # CLI-/PGI-/PG-/CL-/GI-, Epson T-numbers, OKI/others with the same prefix-dash form.
    re.compile(
        r"\b(?P<pn>(?:TN|DR|BU|WT|LC|BT|TK|DK|MK|DV|FK|TR|MLT|CLT|CRG|CLI|PGI|PG|CL|GI|PFI|BCI|C-EXV|NPG|GPR)"
        r"-?[A-Z]?\d{2,5}[A-Z0-9]{0,6}(?:-[A-Z0-9]{1,4})?)\b"
    ),
    # Epson: T6711, T7891
    re.compile(r"\b(?P<pn>T\d{4}[A-Z0-9]{0,2})\b"),
)
