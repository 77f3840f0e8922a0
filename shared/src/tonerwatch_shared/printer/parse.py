"""Pure parsing of an SNMP walk (OID -> value) into a PrinterSnapshot; never raises, never does I/O.

Choices, so the alerter and UI know what they get:
- percent is what remains (consumed) or the space left (receptacle), level / max capacity * 100
  (RFC 3805). -1 "unrestricted", -2 "unknown" and -3 "some remaining" are states, never numbers.
- state uses the device's own sense with LOW_PERCENT (10 %) as the one threshold: a consumed supply
  at or below it is "low", a receptacle with that little space left "almost_full". The alerter
  applies its own, configurable thresholds to percent.
- lifetime_pages is the life count of the first marker (lowest index, "1.1" on almost every device),
  not a sum: colour devices with one marker per colour count the same sheets on each. Without it,
  the vendor total, then mono + colour.
- Private readings (a vendor profile's decoder: Brother's blobs) replace a Printer-MIB supply of the
  same kind and colour that gives no figure (-3, unknown ...); when the Printer MIB gives a figure,
  it is kept and the private duplicate dropped.
- Vendor knowledge (private OIDs, counters, decoders) comes from the profile of the enterprise
  (printer/profiles/<vendor>.py); nothing here names a vendor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from tonerwatch_shared.printer import oids
from tonerwatch_shared.printer.clamp import clamp_identity, clamp_snapshot, clamp_supplies
from tonerwatch_shared.printer.codes import (
    ALERT_CODES,
    ALERT_GROUPS,
    ALERT_SEVERITY,
    DEVICE_STATUS,
    ERROR_BITS,
    HR_DEVICE_PRINTER,
    NON_PAGE_COUNTER_UNITS,
    PRINTER_STATUS,
    SUPPLY_CLASS_CONSUMED,
    SUPPLY_CLASS_RECEPTACLE,
    SUPPLY_TYPES,
    SUPPLY_UNITS,
    UNIT_PERCENT,
    WASTE_KINDS,
)
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterAlert,
    PrinterIdentity,
    PrinterSnapshot,
    PrinterStatus,
    Supply,
    SupplyClass,
    SupplyKind,
    SupplyState,
    Tray,
)
from tonerwatch_shared.printer.profiles.registry import (
    DEVICE_ID_OIDS,
    MARKS_PRINTER,
    PROFILES,
    profile_for,
)
from tonerwatch_shared.printer.quirks import (
    ABSURD_VALUE,
    DEVICE_ID_MODEL_KEYS,
    GENERIC_SYS_DESCR,
    MODEL_SUFFIXES,
    SYS_DESCR_QUIRKS,
)
from tonerwatch_shared.printer.text import (
    as_text,
    colour_from_text,
    kind_from_text,
    split_description,
)
from tonerwatch_shared.printer.vendors import (
    BRAND_ENTERPRISES,
    ENTERPRISE_VENDORS,
    PRINTER_OBJECT_ID_PREFIXES,
    brand_in,
    enterprise_number,
    strip_brand,
)
from tonerwatch_shared.snmp.types import Missing, SnmpValue, VarBinds

LOW_PERCENT = 10.0
PRINTER_MIB = "1.3.6.1.2.1.43."
# A device naming itself a scanner (HP ScanJet, Fujitsu fi-/ScanSnap, Canon imageFORMULA DR-, Epson
# DS-, Brother ADS-): never offered as a printer unless it shows the Printer MIB.
SCANNER_WORDS = re.compile(r"\b(?:scanner|scanjet|scansnap|imageformula|ADS-\d)", re.IGNORECASE)

# RFC 3805 special levels/capacities
UNRESTRICTED = -1
UNKNOWN = -2
SOME_REMAINING = -3

_T = TypeVar("_T")

Table = dict[str, dict[int, SnmpValue]]


# ----------------------------------------------------------------------------- value helpers


def _int(value: SnmpValue | None) -> int | None:
    """Return an INTEGER-ish value as int; numeric text sent as OCTET STRING too; else None."""
    if value is None or isinstance(value, (Missing, bool)):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        text = value.split(b"\x00", 1)[0].strip()
        if re.fullmatch(rb"-?\d{1,12}", text):
            return int(text)
        return None
    return None


def _present(value: SnmpValue | None) -> bool:
    return value is not None and not isinstance(value, Missing)


def table(values: VarBinds, prefix: str) -> Table:
    """Return row index -> column -> value for the columns under an entry OID (e.g. prtMarkerSuppliesEntry)."""
    rows: Table = {}
    start = prefix + "."
    for oid, value in values.items():
        if not oid.startswith(start) or isinstance(value, Missing):
            continue
        column, _, index = oid[len(start) :].partition(".")
        if not column.isdigit() or not index:
            continue
        rows.setdefault(index, {})[int(column)] = value
    return rows


def _index_key(index: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in index.split("."))
    except ValueError:
        return (2**62,)


def _sorted(rows: Table) -> list[tuple[str, dict[int, SnmpValue]]]:
    return sorted(rows.items(), key=lambda item: _index_key(item[0]))


def _safe(fn: Callable[[], _T], default: _T, missing: list[str], what: str) -> _T:
    """Return fn(), or default with `what` noted as missing when the data breaks the parser."""
    try:
        return fn()
    except Exception:  # never raise on what a device sends; say what could not be read
        missing.append(f"{what} (unparseable)")
        return default


# ----------------------------------------------------------------------------- levels


def level_to_percent(
    level: int | None,
    max_capacity: int | None,
    unit: int | None = None,
    receptacle: bool = False,
    enterprise: int | None = None,
) -> tuple[float | None, SupplyState, tuple[str, ...]]:
    """Return (percent, state, flags) for a raw prtMarkerSuppliesLevel and MaxCapacity (RFC 3805)."""
    flags: list[str] = []
    if level is None:
        return None, SupplyState.UNKNOWN, ("no_level",)
    if level < 0:
        # A vendor's own negative levels (any vendor's when the maker is unknown).
        vendors = PROFILES if enterprise is None else (profile_for(enterprise),)
        for vendor in vendors:
            for quirk in vendor.level_quirks if vendor else ():
                if quirk.level == level:
                    return None, quirk.state, (quirk.flag,)
        if level == UNRESTRICTED:
            # RFC 3805: -1 means no restriction: never runs out (or never fills).
            return None, SupplyState.OK, ("unrestricted",)
        if level == SOME_REMAINING:
            # RFC 3805: -3 means "at least one unit remains" - no figure, whether of toner left or
            # of room left in a waste receptacle (konica_c250i's Waste Toner Box): never "ok".
            return None, SupplyState.SOME_REMAINING, ("some_remaining",)
        if level == UNKNOWN:
            return None, SupplyState.UNKNOWN, ()
        return None, SupplyState.UNKNOWN, ("invalid_level",)
    if level >= ABSURD_VALUE:
        return None, SupplyState.UNKNOWN, ("absurd_level",)

    percent: float | None = None
    if max_capacity is not None and 0 < max_capacity < ABSURD_VALUE:
        percent = level / max_capacity * 100.0
    elif unit == UNIT_PERCENT:
        # Capacity unknown but the unit says the level is a percentage.
        percent = float(level)
    elif max_capacity is not None and max_capacity >= ABSURD_VALUE:
        flags.append("absurd_capacity")
    if percent is not None and percent > 100.0:
        percent = 100.0
        flags.append("clamped")
    if percent is not None:
        percent = round(percent, 2)

    if receptacle:
        if percent is None:
            state = SupplyState.FULL if level == 0 else SupplyState.UNKNOWN
        elif percent <= 0:
            state = SupplyState.FULL
        elif percent <= LOW_PERCENT:
            state = SupplyState.ALMOST_FULL
        else:
            state = SupplyState.OK
    elif percent is None:
        state = SupplyState.EMPTY if level == 0 else SupplyState.UNKNOWN
    elif percent <= 0:
        state = SupplyState.EMPTY
    elif percent <= LOW_PERCENT:
        state = SupplyState.LOW
    else:
        state = SupplyState.OK
    return percent, state, tuple(flags)


# ----------------------------------------------------------------------------- identity


def _device_id_fields(text: str) -> dict[str, str]:
    """Return the KEY:value fields of an IEEE 1284 device ID (keys upper-case)."""
    fields: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, val = part.partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip().upper(), val.strip())
    return fields


def _device_id(values: VarBinds) -> str | None:
    for oid in DEVICE_ID_OIDS:
        text = as_text(values.get(oid))
        if text and ":" in text:
            return text
    return None


def _clean_model(text: str | None) -> str | None:
    if not text:
        return None
    text = MODEL_SUFFIXES.sub("", text.strip())
    text = strip_brand(text).strip()
    return text or None


def _printer_indexes(values: VarBinds) -> list[str]:
    """Return hrDeviceIndex values whose hrDeviceType is hrDevicePrinter, in order."""
    found = []
    for index, row in _sorted(table(values, "1.3.6.1.2.1.25.3.2.1")):
        if str(row.get(2, "")).lstrip(".") == HR_DEVICE_PRINTER:
            found.append(index)
    return found


def _first(values: VarBinds, candidates: Iterable[str]) -> str | None:
    for oid in candidates:
        text = as_text(values.get(oid))
        if text:
            return text
    return None


def _mac(values: VarBinds) -> str | None:
    rows = table(values, "1.3.6.1.2.1.2.2.1")
    best: str | None = None
    for _index, row in _sorted(rows):
        raw = row.get(6)
        if isinstance(raw, bytes) and len(raw) == 6 and any(raw):
            mac = ":".join(f"{b:02x}" for b in raw)
            if _int(row.get(3)) == 6:  # ethernetCsmacd first
                return mac
            best = best or mac
    return best


def has_printer_mib(values: VarBinds) -> bool:
    """True when the values hold any object of the Printer MIB (RFC 3805, 1.3.6.1.2.1.43)."""
    return any(oid.startswith(PRINTER_MIB) and _present(v) for oid, v in values.items())


def denies_printer(values: VarBinds) -> bool:
    """True when the device says it is no printer and shows nothing of the Printer MIB."""
    if has_printer_mib(values):
        return False
    # hrDeviceType given for some rows and none of them a printer (a NAS, a camera, a scanner).
    types = table(values, "1.3.6.1.2.1.25.3.2.1")
    kinds = [str(row[2]).lstrip(".") for row in types.values() if _present(row.get(2))]
    if kinds and HR_DEVICE_PRINTER not in kinds:
        return True
    # A scanner: its IEEE 1284 device ID class, or its own description, says so.
    fields = _device_id_fields(_device_id(values) or "")
    device_class = fields.get("CLS", fields.get("CLASS", "")).upper()
    if "SCANNER" in device_class and "PRINTER" not in device_class:
        return True
    descr = " ".join(
        t
        for t in (
            as_text(values.get(oids.SYS_DESCR)),
            as_text(values.get(f"{oids.HR_DEVICE_DESCR}.1")),
        )
        if t
    )
    return SCANNER_WORDS.search(descr) is not None


def parse_identity(values: VarBinds) -> PrinterIdentity:
    """Return who the printer is: vendor, model, serial, firmware, names and whether it is a printer."""
    sys_descr = as_text(values.get(oids.SYS_DESCR))
    raw_oid = values.get(oids.SYS_OBJECT_ID)
    sys_object_id = str(raw_oid).lstrip(".") if isinstance(raw_oid, str) and raw_oid else None
    enterprise = enterprise_number(sys_object_id)
    printers = _printer_indexes(values)
    if enterprise is None:
        # No sysObjectID (trimmed walks): the brand the device names picks the private MIB.
        named = brand_in(as_text(values.get(oids.SYS_DESCR))) or brand_in(
            as_text(values.get(f"{oids.HR_DEVICE_DESCR}.{printers[0] if printers else '1'}"))
        )
        if named is None:
            fields = _device_id_fields(_device_id(values) or "")
            named = brand_in(fields.get("MFG"))
        enterprise = BRAND_ENTERPRISES.get(named) if named else None
    dev = printers[0] if printers else "1"
    hr_descr = as_text(values.get(f"{oids.HR_DEVICE_DESCR}.{dev}"))
    device_id = _device_id(values)
    id_fields = _device_id_fields(device_id) if device_id else {}
    profile = profile_for(enterprise)

    # What sysDescr says, through the vendor-shape table.
    sd_model: str | None = None
    sd_serial: str | None = None
    sd_firmware: str | None = None
    print_server = False
    if sys_descr:
        for quirk in SYS_DESCR_QUIRKS:
            match = quirk.pattern.search(sys_descr)
            if not match:
                continue
            groups = match.groupdict()
            sd_model = (groups.get("model") or "").strip() or None
            sd_serial = (groups.get("serial") or "").strip() or None
            sd_firmware = (groups.get("firmware") or "").strip() or None
            print_server = quirk.print_server
            break
        if sd_model is None and not print_server and not GENERIC_SYS_DESCR.match(sys_descr):
            sd_model = sys_descr

    # Vendor: the brand the device names (OEM badges on a maker's OID) beats the enterprise number.
    vendor = (
        brand_in(sd_model if print_server else sys_descr)
        or brand_in(hr_descr)
        or brand_in(id_fields.get("MFG"))
        or (ENTERPRISE_VENDORS.get(enterprise) if enterprise is not None else None)
    )

    # Model: hrDeviceDescr, then the device ID, then the vendor's private MIB, then sysDescr. When
    # hrDeviceDescr merely extends the device-ID model ("S5830dn 7XQ1R92 LW62..."), the shorter wins.
    id_model = next((id_fields[k] for k in DEVICE_ID_MODEL_KEYS if id_fields.get(k)), None)
    private_model = _first(values, profile.model) if profile else None
    candidates = [_clean_model(t) for t in (hr_descr, id_model, private_model, sd_model)]
    model = next((c for c in candidates if c), None)
    clean_id = candidates[1]
    if (
        model
        and clean_id
        and model != clean_id
        and model.lower().startswith(clean_id.lower() + " ")
    ):
        model = clean_id
    if model and GENERIC_SYS_DESCR.match(model) and (private_model or id_model):
        model = _clean_model(private_model or id_model)

    serial = as_text(values.get(f"{oids.PRT_GENERAL_SERIAL_NUMBER}.1"))
    if not serial and profile:
        serial = _first(values, profile.serial)
    if not serial:
        serial = sd_serial

    firmware = _first(values, profile.firmware) if profile else None
    if not firmware:
        firmware = sd_firmware

    is_printer = bool(printers) or has_printer_mib(values)
    if not is_printer and not denies_printer(values):
        # Nothing of the Printer MIB read: a device ID, a vendor's private MIB or a sysObjectID
        # only printers use tells (Brother's thin agents, identification-only recordings).
        is_printer = (
            device_id is not None
            or any(_present(values.get(oid)) for oid in MARKS_PRINTER)
            or (
                profile is not None
                and any(
                    _present(values.get(oid))
                    for oid in (*profile.model, *profile.serial, *profile.firmware)
                )
            )
            or (
                sys_object_id is not None
                and any(
                    sys_object_id == p or sys_object_id.startswith(p + ".")
                    for p in PRINTER_OBJECT_ID_PREFIXES
                )
            )
        )

    return clamp_identity(
        PrinterIdentity(
            vendor=vendor,
            model=model,
            serial=serial,
            sys_object_id=sys_object_id,
            sys_descr=sys_descr,
            sys_name=as_text(values.get(oids.SYS_NAME)),
            sys_location=as_text(values.get(oids.SYS_LOCATION)),
            firmware=firmware,
            mac_address=_mac(values),
            is_printer=is_printer,
        )
    )


# ----------------------------------------------------------------------------- supplies


def _colorants(values: VarBinds) -> dict[str, str]:
    """Return "dev.colorantIndex" -> colorant value text (prtMarkerColorantValue)."""
    out: dict[str, str] = {}
    for index, row in table(values, "1.3.6.1.2.1.43.12.1.1").items():
        text = as_text(row.get(4))
        if text:
            out[index] = text
    return out


def _standard_supplies(values: VarBinds, enterprise: int | None) -> list[Supply]:
    rows = table(values, oids.PRT_MARKER_SUPPLIES)
    colorants = _colorants(values)
    supplies: list[Supply] = []
    for index, row in _sorted(rows):
        raw_descr = as_text(row.get(6))
        name, part = split_description(raw_descr) if raw_descr else ("", None)
        type_code = _int(row.get(5))
        type_entry = SUPPLY_TYPES.get(type_code) if type_code is not None else None
        type_kind = type_entry[1] if type_entry else None
        kind = type_kind or kind_from_text(name) or SupplyKind.OTHER

        colour: str | None = None
        colorant_index = _int(row.get(3))
        dev = index.split(".", 1)[0]
        if colorant_index and colorant_index > 0:
            ctext = colorants.get(f"{dev}.{colorant_index}")
            if ctext:
                colour = colour_from_text(ctext) or ctext.lower()
        if colour is None:
            colour = colour_from_text(name)

        class_code = _int(row.get(4))
        if class_code == SUPPLY_CLASS_RECEPTACLE:
            supply_class = SupplyClass.RECEPTACLE
        elif class_code == SUPPLY_CLASS_CONSUMED:
            supply_class = SupplyClass.CONSUMED
        else:
            # Column missing or other(1): waste bins fill up, everything else is used up.
            supply_class = SupplyClass.RECEPTACLE if kind in WASTE_KINDS else SupplyClass.CONSUMED

        unit_code = _int(row.get(7))
        level = _int(row.get(9))
        capacity = _int(row.get(8))
        percent, state, flags = level_to_percent(
            level, capacity, unit_code, supply_class is SupplyClass.RECEPTACLE, enterprise
        )
        if capacity is not None and (capacity < -2 or capacity == 0):
            flags = (*flags, "invalid_capacity")
        supplies.append(
            Supply(
                index=index,
                description=name or (f"Supply {index}"),
                part_number=part,
                kind=kind,
                colour=colour,
                supply_class=supply_class,
                unit=SUPPLY_UNITS.get(unit_code) if unit_code is not None else None,
                level=level,
                max_capacity=capacity,
                percent=percent,
                state=state,
                flags=flags,
            )
        )
    return supplies


def _private_supplies(values: VarBinds, model: str | None) -> list[Supply]:
    """Supplies every profile's private decoder finds in the walk (each reads only its own OIDs)."""
    supplies = []
    for profile in PROFILES:
        private = profile.private
        if private is None or private.supplies is None:
            continue
        for found in private.supplies(values, model):
            percent, state, flags = level_to_percent(found.level, found.maximum, UNIT_PERCENT)
            supplies.append(
                Supply(
                    index=found.key,
                    description=found.description,
                    kind=found.kind,
                    colour=found.colour,
                    unit="percent" if found.maximum == 100 else None,
                    level=found.level,
                    max_capacity=found.maximum,
                    percent=percent,
                    state=state,
                    flags=(*flags, *found.flags),
                    source=private.source,
                    pages_left=found.pages_left,
                )
            )
    return supplies


def _merge_private(standard: list[Supply], private: list[Supply]) -> list[Supply]:
    """Return standard supplies with private readings replacing figure-less ones of the same kind+colour."""
    merged = list(standard)
    for item in private:
        match = next(
            (
                i
                for i, s in enumerate(merged)
                if s.source != item.source
                and s.kind == item.kind
                and (s.colour == item.colour or (s.colour is None and item.colour == "black"))
            ),
            None,
        )
        if match is None:
            merged.append(item)
        elif item.level is None:
            # Known only by its pages left: the Printer MIB's row stays, with the pages left.
            if merged[match].pages_left is None:
                merged[match] = merged[match].model_copy(update={"pages_left": item.pages_left})
        elif merged[match].percent is None:
            old = merged[match]
            merged[match] = item.model_copy(
                update={
                    "description": old.description or item.description,
                    "part_number": old.part_number,
                }
            )
        # else: the Printer MIB gives a figure; keep it and drop the duplicate.
    return merged


def _supplies(values: VarBinds, identity: PrinterIdentity | None = None) -> list[Supply]:
    enterprise = enterprise_number(identity.sys_object_id) if identity else None
    standard = _standard_supplies(values, enterprise)
    private = _private_supplies(values, identity.model if identity else None)
    return _merge_private(standard, private)


def parse_supplies(values: VarBinds) -> tuple[Supply, ...]:
    """Return every supply: prtMarkerSuppliesTable rows plus vendor private readings."""
    missing: list[str] = []
    identity = _safe(lambda: parse_identity(values), None, missing, "identity")
    return clamp_supplies(_safe(lambda: _supplies(values, identity), [], missing, "supplies"))


# ----------------------------------------------------------------------------- trays


def parse_trays(values: VarBinds) -> tuple[Tray, ...]:
    """Return the input trays of prtInputTable with level, capacity and percent where known."""
    trays = []
    for index, row in _sorted(table(values, oids.PRT_INPUT)):
        name = as_text(row.get(13)) or as_text(row.get(18)) or f"Tray {index.split('.')[-1]}"
        capacity = _int(row.get(9))
        level = _int(row.get(10))
        percent, _state, _flags = level_to_percent(level, capacity)
        trays.append(
            Tray(
                index=index,
                name=name,
                level=level,
                max_capacity=capacity,
                percent=percent,
                media=as_text(row.get(12)),
            )
        )
    return tuple(trays)


# ----------------------------------------------------------------------------- counters


def parse_counters(values: VarBinds) -> Counters:
    """Return page counters: prtMarkerLifeCount per marker plus vendor mono/colour/duplex splits."""
    rows = _sorted(table(values, "1.3.6.1.2.1.43.10.2.1"))
    per_marker: dict[str, int] = {}
    lifetime: int | None = None
    power_on: int | None = None
    for index, row in rows:
        life = _int(row.get(4))
        if life is None or life < 0:
            continue
        per_marker[index] = life
        unit = _int(row.get(3))
        if lifetime is None and unit not in NON_PAGE_COUNTER_UNITS:
            lifetime = life
            on = _int(row.get(5))
            power_on = on if on is not None and on >= 0 else None

    fields: dict[str, int] = {}
    enterprise = enterprise_number(str(values.get(oids.SYS_OBJECT_ID) or "") or None)
    profile = profile_for(enterprise)
    for counter in profile.counters if profile else ():
        numbers = [_int(values.get(oid)) for oid in counter.oids]
        if numbers and all(n is not None and n >= 0 for n in numbers):
            fields[counter.field] = sum(n for n in numbers if n is not None)
    for other in PROFILES:
        # Private decoders read their own objects whatever sysObjectID says (Brother's blobs).
        if other.private is not None and other.private.counters is not None:
            for name, pages in other.private.counters(values).items():
                fields.setdefault(name, pages)
    if lifetime is None:
        lifetime = fields.get("lifetime_pages")
    if lifetime is None and "mono_pages" in fields and "colour_pages" in fields:
        lifetime = fields["mono_pages"] + fields["colour_pages"]
    return Counters(
        lifetime_pages=lifetime,
        power_on_pages=power_on,
        mono_pages=fields.get("mono_pages"),
        colour_pages=fields.get("colour_pages"),
        duplex_pages=fields.get("duplex_pages"),
        per_marker=per_marker,
    )


# ----------------------------------------------------------------------------- status


def decode_error_state(value: SnmpValue | None) -> tuple[str, ...]:
    """Return the names of the bits set in hrPrinterDetectedErrorState (RFC 2790/3805)."""
    if isinstance(value, bytes):
        octets = value
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        # Some agents send the bits as an INTEGER; read it as two octets, first bit most significant.
        octets = value.to_bytes(max(2, (value.bit_length() + 7) // 8), "big")[-2:]
    else:
        return ()
    return tuple(
        name for octet, mask, name in ERROR_BITS if len(octets) > octet and octets[octet] & mask
    )


def _alerts(values: VarBinds) -> tuple[PrinterAlert, ...]:
    alerts = []
    for index, row in _sorted(table(values, oids.PRT_ALERT)):
        severity = _int(row.get(2))
        group = _int(row.get(4))
        code = _int(row.get(7))
        alerts.append(
            PrinterAlert(
                index=index,
                severity=ALERT_SEVERITY.get(severity, str(severity))
                if severity is not None
                else "unknown",
                group=ALERT_GROUPS.get(group, str(group)) if group is not None else None,
                code=ALERT_CODES.get(code, str(code)) if code is not None else None,
                description=as_text(row.get(8)) or "",
            )
        )
    return tuple(alerts)


def parse_status(values: VarBinds) -> PrinterStatus:
    """Return hrDeviceStatus, hrPrinterStatus, error bits, active alerts and vendor panel text."""
    printers = _printer_indexes(values)
    dev = printers[0] if printers else "1"
    device = _int(values.get(f"{oids.HR_DEVICE_STATUS}.{dev}"))
    printer = _int(values.get(f"{oids.HR_PRINTER_STATUS}.{dev}"))
    status_text = next(
        (
            text
            for p in PROFILES
            if p.private is not None
            and p.private.status_text is not None
            and (text := p.private.status_text(values))
        ),
        None,
    )
    return PrinterStatus(
        device_status=DEVICE_STATUS.get(device, str(device)) if device is not None else None,
        printer_status=PRINTER_STATUS.get(printer, str(printer)) if printer is not None else None,
        errors=decode_error_state(values.get(f"{oids.HR_PRINTER_DETECTED_ERROR_STATE}.{dev}")),
        alerts=_alerts(values),
        status_text=status_text,
    )


# ----------------------------------------------------------------------------- snapshot


def _missing(values: VarBinds, dev: str) -> list[str]:
    """Return names of the standard objects the walk did not give."""
    missing = []
    for name, oid in (
        ("sysDescr", oids.SYS_DESCR),
        ("sysObjectID", oids.SYS_OBJECT_ID),
        ("hrDeviceStatus", f"{oids.HR_DEVICE_STATUS}.{dev}"),
        ("hrPrinterStatus", f"{oids.HR_PRINTER_STATUS}.{dev}"),
        ("hrPrinterDetectedErrorState", f"{oids.HR_PRINTER_DETECTED_ERROR_STATE}.{dev}"),
    ):
        if not _present(values.get(oid)):
            missing.append(name)
    supplies = table(values, oids.PRT_MARKER_SUPPLIES)
    if not supplies:
        missing.append("prtMarkerSuppliesTable")
    else:
        for column, name in (
            (4, "prtMarkerSuppliesClass"),
            (5, "prtMarkerSuppliesType"),
            (6, "prtMarkerSuppliesDescription"),
            (7, "prtMarkerSuppliesSupplyUnit"),
            (8, "prtMarkerSuppliesMaxCapacity"),
            (9, "prtMarkerSuppliesLevel"),
        ):
            if not all(column in row for row in supplies.values()):
                missing.append(name)
    if not table(values, oids.PRT_INPUT):
        missing.append("prtInputTable")
    if not table(values, "1.3.6.1.2.1.43.10.2.1"):
        missing.append("prtMarkerLifeCount")
    return missing


# Columns RFC 3805 types as INTEGER: a value there that is no number (numeric text is a known
# vendor habit and read as the number) leaves the supply or counter unknown, and is named.
INTEGER_COLUMNS = {
    "1.3.6.1.2.1.43.11.1.1.8": "prtMarkerSuppliesMaxCapacity",
    "1.3.6.1.2.1.43.11.1.1.9": "prtMarkerSuppliesLevel",
    "1.3.6.1.2.1.43.10.2.1.4": "prtMarkerLifeCount",
    "1.3.6.1.2.1.43.8.2.1.9": "prtInputMaxCapacity",
    "1.3.6.1.2.1.43.8.2.1.10": "prtInputCurrentLevel",
}
_WRONG_TYPES_NAMED = 8


def _wrong_types(values: VarBinds) -> list[str]:
    """Return anomalies for INTEGER columns answered with something else (at most a few named)."""
    found: list[str] = []
    for oid, value in values.items():
        if not oid.startswith("1.3.6.1.2.1.43.") or not _present(value) or _int(value) is not None:
            continue
        column, _, index = oid.rpartition(".")
        while column and column not in INTEGER_COLUMNS:
            column, _, head = column.rpartition(".")
            index = f"{head}.{index}"
        if column:
            kind = "OCTET STRING" if isinstance(value, bytes) else type(value).__name__
            found.append(f"{INTEGER_COLUMNS[column]}.{index}: {kind} where RFC 3805 has an INTEGER")
            if len(found) >= _WRONG_TYPES_NAMED:
                break
    return found


def parse_snapshot(values: VarBinds) -> PrinterSnapshot:
    """Return everything a walk says about a printer, and what it did not say; never raises."""
    broken: list[str] = []
    identity = _safe(
        lambda: parse_identity(values), PrinterIdentity(is_printer=False), broken, "identity"
    )
    no_supplies: list[Supply] = []
    supplies = _safe(lambda: _supplies(values, identity), no_supplies, broken, "supplies")
    no_trays: tuple[Tray, ...] = ()
    trays = _safe(lambda: parse_trays(values), no_trays, broken, "trays")
    counters = _safe(lambda: parse_counters(values), Counters(), broken, "counters")
    status = _safe(lambda: parse_status(values), PrinterStatus(), broken, "status")
    none: list[str] = []
    printers = _safe(lambda: _printer_indexes(values), none, broken, "hrDeviceTable")
    dev = printers[0] if printers else "1"
    missing = _safe(lambda: _missing(values, dev), none, broken, "missing")
    wrong = _safe(lambda: _wrong_types(values), none, broken, "types")
    return clamp_snapshot(
        PrinterSnapshot(
            printer=identity,
            supplies=tuple(supplies),
            trays=trays,
            counters=counters,
            status=status,
            missing=tuple(dict.fromkeys([*missing, *broken])),
            anomalies=tuple(wrong),
        )
    )
