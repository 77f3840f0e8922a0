"""Pure mapping of IPP Get-Printer-Attributes results onto the printer model, and SNMP+IPP merging.

Level semantics (marker-levels, a CUPS attribute registered with IANA; PWG 5100.13 carries the
same numbers in printer-supply): 0..100 percent, -1 unavailable, -2 unknown, -3 unknown but some
remaining. For consumed supplies the level is what remains. For waste receptacles CUPS reports
how FULL the receptacle is (backend/snmp-supplies.c: ``percent = 100 - percent`` for
receptacleThatIsFilled, i.e. the inverse of RFC 3805's remaining space), and marker-high-levels is
the "almost full" mark. Our model keeps space left for receptacles, so percent = 100 - level there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tonerwatch_shared.ipp.keywords import (
    EXACT_COLOURS,
    JAM_SUFFIX,
    MARKER_TYPES,
    PALETTE,
    PALETTE_MAX_DISTANCE,
    PRINTER_STATES,
    REASON_ERRORS,
    REASON_SEVERITY_SUFFIXES,
    VENDOR_ALIASES,
)
from tonerwatch_shared.printer.clamp import clamp_snapshot
from tonerwatch_shared.printer.model import (
    PrinterAlert,
    PrinterIdentity,
    PrinterSnapshot,
    PrinterStatus,
    Supply,
    SupplyClass,
    SupplyKind,
    SupplyState,
)

SOURCE = "ipp"

# What parse_ipp_attributes needs; absent ones go to PrinterSnapshot.missing as "ipp:<name>".
EXPECTED_ATTRIBUTES: tuple[str, ...] = (
    "marker-names",
    "marker-levels",
    "marker-types",
    "marker-colors",
    "printer-state",
    "printer-state-reasons",
    "printer-make-and-model",
)

_HEX = re.compile(r"#[0-9A-Fa-f]{6}")
_STATE_KEYWORDS = {"idle": 3, "processing": 4, "stopped": 5}


def _values(value: Any) -> list[Any]:
    """Return an attribute's values as a list (pyipp gives a scalar for a single value)."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _text(value: Any) -> str | None:
    """Return a value as stripped text, or None when empty."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


def _first_text(attrs: Mapping[str, Any], name: str) -> str | None:
    """Return the first non-empty text value of an attribute, or None."""
    for value in _values(attrs.get(name)):
        text = _text(value)
        if text:
            return text
    return None


def _int(value: Any) -> int | None:
    """Return a value as int, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _at(seq: Sequence[Any], i: int) -> Any:
    """Return seq[i], or None past its end (marker-* arrays are parallel but may be short)."""
    return seq[i] if i < len(seq) else None


def colour_from_hex(value: str | None) -> tuple[str | None, str | None]:
    """Return (colour name, upper-case hex) for a marker-colors value; (None, None) for "none"."""
    text = _text(value)
    if text is None or text.lower() == "none":
        return None, None
    codes = [code.upper() for code in _HEX.findall(text)]
    if not codes:
        return None, None
    names = [_name_for_hex(code) for code in codes]
    hex_value = "".join(codes)
    if len(names) == 1:
        return names[0], hex_value
    if any(name is None for name in names):
        return None, hex_value
    resolved = [name for name in names if name is not None]
    # A tri-colour cartridge is "#00FFFF#FF00FF#FFFF00"; lexicon.py calls it "cmy".
    if sorted(resolved) == ["cyan", "magenta", "yellow"]:
        return "cmy", hex_value
    return "+".join(resolved), hex_value


def _name_for_hex(code: str) -> str | None:
    """Return the colour name for one #RRGGBB: exact table first, then the nearest primary."""
    if code in EXACT_COLOURS:
        return EXACT_COLOURS[code]
    rgb = (int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16))
    best_name, best_distance = None, float("inf")
    for name, ref in PALETTE:
        distance = sum((a - b) ** 2 for a, b in zip(rgb, ref, strict=True)) ** 0.5
        if distance < best_distance:
            best_name, best_distance = name, distance
    return best_name if best_distance <= PALETTE_MAX_DISTANCE else None


def _level_state(
    level: int | None, low: int | None, high: int | None, receptacle: bool
) -> tuple[float | None, SupplyState, tuple[str, ...]]:
    """Return (percent remaining or space left, state, flags) for one marker level."""
    if level is None:
        return None, SupplyState.UNKNOWN, ()
    if level == -3:  # CUPS/PWG: unknown, but some remaining (space left for a receptacle)
        return None, SupplyState.SOME_REMAINING, ()
    if level < 0:  # -1 unavailable, -2 unknown; anything lower is out of range
        return None, SupplyState.UNKNOWN, (() if level in (-1, -2) else ("invalid_level",))
    flags: tuple[str, ...] = ()
    if level > 100:
        level, flags = 100, ("clamped",)
    if receptacle:
        # Level is fullness here (module docstring); percent is the space left.
        if level >= 100:
            state = SupplyState.FULL
        elif high is not None and 0 < high <= 100 and level >= high:
            state = SupplyState.ALMOST_FULL
        else:
            state = SupplyState.OK
        return float(100 - level), state, flags
    if level == 0:
        state = SupplyState.EMPTY
    elif low is not None and low >= 0 and level <= low:
        state = SupplyState.LOW
    else:
        state = SupplyState.OK
    return float(level), state, flags


def parse_supplies(attrs: Mapping[str, Any]) -> tuple[Supply, ...]:
    """Return one Supply per marker in the parallel marker-* attributes."""
    names = [_text(v) for v in _values(attrs.get("marker-names"))]
    levels = [_int(v) for v in _values(attrs.get("marker-levels"))]
    colours = [_text(v) for v in _values(attrs.get("marker-colors"))]
    types = [(_text(v) or "").lower() for v in _values(attrs.get("marker-types"))]
    lows = [_int(v) for v in _values(attrs.get("marker-low-levels"))]
    highs = [_int(v) for v in _values(attrs.get("marker-high-levels"))]
    count = max(len(names), len(levels), len(types), len(colours))
    supplies: list[Supply] = []
    for i in range(count):
        marker_type = _at(types, i) or None
        kind = MARKER_TYPES.get(marker_type, SupplyKind.OTHER) if marker_type else SupplyKind.OTHER
        receptacle = bool(marker_type and marker_type.startswith("waste-"))
        colour, colour_hex = colour_from_hex(_at(colours, i))
        level = _at(levels, i)
        percent, state, flags = _level_state(level, _at(lows, i), _at(highs, i), receptacle)
        if marker_type and marker_type not in MARKER_TYPES:
            flags = (*flags, f"marker_type={marker_type}")
        description = _at(names, i) or (marker_type or "marker").replace("-", " ")
        supplies.append(
            Supply(
                index=f"ipp.{i + 1}",
                description=description,
                kind=kind,
                colour=colour,
                colour_hex=colour_hex,
                supply_class=SupplyClass.RECEPTACLE if receptacle else SupplyClass.CONSUMED,
                unit="percent",
                level=level,
                max_capacity=100,
                percent=percent,
                state=state,
                flags=flags,
                source=SOURCE,
            )
        )
    return tuple(supplies)


def split_reason(reason: str) -> tuple[str, str]:
    """Return (keyword without suffix, severity info/warning/critical) for a printer-state-reason."""
    for suffix, severity in REASON_SEVERITY_SUFFIXES:
        if reason.endswith(suffix):
            return reason[: -len(suffix)], severity
    # RFC 8011 5.4.12: no suffix means error.
    return reason, "critical"


def error_for_reason(keyword: str) -> str | None:
    """Return the hrPrinterDetectedErrorState name for a reason keyword (suffix stripped), or None."""
    if keyword in REASON_ERRORS:
        return REASON_ERRORS[keyword]
    if keyword.endswith(JAM_SUFFIX):
        return "jammed"
    return None


def parse_status(attrs: Mapping[str, Any]) -> PrinterStatus:
    """Return printer-state and printer-state-reasons decoded as a PrinterStatus."""
    raw_state = _values(attrs.get("printer-state"))
    state = _int(raw_state[0]) if raw_state else None
    if state is None and raw_state:
        state = _STATE_KEYWORDS.get((_text(raw_state[0]) or "").lower())
    printer_status, device_status = (
        PRINTER_STATES.get(state, (None, None)) if state else (None, None)
    )
    if state is not None and printer_status is None:
        printer_status = "unknown"
    errors: list[str] = []
    alerts: list[PrinterAlert] = []
    severities: set[str] = set()
    reasons = [r for r in (_text(v) for v in _values(attrs.get("printer-state-reasons"))) if r]
    for reason in reasons:
        if reason.lower() == "none":
            continue
        keyword, severity = split_reason(reason.lower())
        severities.add(severity)
        alerts.append(
            PrinterAlert(
                index=f"ipp.{len(alerts) + 1}",
                severity=severity,
                code=keyword,
                description=reason,
            )
        )
        error = error_for_reason(keyword)
        if error and error not in errors:
            errors.append(error)
    if device_status != "down" and severities:
        if "critical" in severities:
            device_status = "down"
        elif "warning" in severities:
            device_status = "warning"
        elif device_status is None:
            device_status = "running"
    return PrinterStatus(
        device_status=device_status,
        printer_status=printer_status,
        errors=tuple(errors),
        alerts=tuple(alerts),
        status_text=_first_text(attrs, "printer-state-message"),
    )


def parse_device_id(device_id: str | None) -> dict[str, str]:
    """Return an IEEE 1284 device id ("MFG:HP;MDL:LaserJet;") as upper-case keys to values."""
    fields: dict[str, str] = {}
    for part in (device_id or "").split(";"):
        key, sep, value = part.partition(":")
        if sep and key.strip() and value.strip():
            fields.setdefault(key.strip().upper(), value.strip())
    return fields


def _vendor(name: str) -> str:
    """Return a vendor name with the one alias table applied ("Hewlett-Packard" -> "HP")."""
    return VENDOR_ALIASES.get(name.lower(), name)


def parse_identity(attrs: Mapping[str, Any]) -> PrinterIdentity:
    """Return who the printer is, from make-and-model, device id and the printer-* text."""
    device_id = parse_device_id(_first_text(attrs, "printer-device-id"))
    make_and_model = _first_text(attrs, "printer-make-and-model")
    vendor = device_id.get("MFG") or device_id.get("MANUFACTURER")
    model = device_id.get("MDL") or device_id.get("MODEL")
    if make_and_model:
        if vendor is None:
            vendor = make_and_model.split()[0]
        if model is None:
            model = make_and_model
    if vendor:
        vendor = _vendor(vendor)
    if model and vendor:
        # "HP LaserJet M404" with vendor HP is model "LaserJet M404"; brand aliases too.
        for brand in {vendor, *(k for k, v in VENDOR_ALIASES.items() if v == vendor)}:
            if model.lower().startswith(brand.lower() + " "):
                model = model[len(brand) + 1 :].strip()
                break
    serial = _first_text(attrs, "printer-serial-number") or next(
        (device_id[k] for k in ("SN", "SERN", "SERIALNUMBER") if k in device_id), None
    )
    firmware = _first_text(attrs, "printer-firmware-string-version")
    return PrinterIdentity(
        vendor=vendor,
        model=model or None,
        serial=serial,
        # printer-info is the administrator's name for the printer, as sysName is.
        sys_name=_first_text(attrs, "printer-info"),
        sys_location=_first_text(attrs, "printer-location"),
        firmware=firmware,
        uuid=_first_text(attrs, "printer-uuid"),
    )


def parse_ipp_attributes(attrs: Mapping[str, Any]) -> PrinterSnapshot:
    """Return the PrinterSnapshot a Get-Printer-Attributes printer group describes."""
    return clamp_snapshot(
        PrinterSnapshot(
            printer=parse_identity(attrs),
            supplies=parse_supplies(attrs),
            status=parse_status(attrs),
            missing=tuple(
                f"ipp:{name}" for name in EXPECTED_ATTRIBUTES if not _values(attrs.get(name))
            ),
        )
    )


def _same_supply(a: Supply, b: Supply) -> bool:
    """Return whether two supplies from different sources are the same part (kind and colour)."""
    return a.kind == b.kind and a.colour == b.colour and a.supply_class == b.supply_class


def _fill_identity(base: PrinterIdentity, extra: PrinterIdentity) -> PrinterIdentity:
    """Return base with every None field taken from extra."""
    updates = {
        name: getattr(extra, name)
        for name in type(base).model_fields
        if getattr(base, name) is None and getattr(extra, name) is not None
    }
    return base.model_copy(update=updates)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    """Return items without repeats, first occurrence kept."""
    return tuple(dict.fromkeys(items))


def merge_snapshots(snmp: PrinterSnapshot, ipp: PrinterSnapshot) -> PrinterSnapshot:
    """Return the SNMP snapshot with what it lacks filled in from the IPP one."""
    unused = list(ipp.supplies)
    supplies: list[Supply] = []
    for supply in snmp.supplies:
        match = next((s for s in unused if _same_supply(supply, s)), None)
        if match is not None:
            unused.remove(match)
        if match is not None and supply.percent is None and match.percent is not None:
            # SNMP said -3/-2/-1 (no number); IPP knows how much is left.
            supply = supply.model_copy(
                update={
                    "percent": match.percent,
                    "state": match.state,
                    "colour_hex": supply.colour_hex or match.colour_hex,
                    "flags": (*supply.flags, "percent_from_ipp"),
                }
            )
        elif match is not None and supply.colour_hex is None and match.colour_hex:
            supply = supply.model_copy(update={"colour_hex": match.colour_hex})
        supplies.append(supply)
    # Markers SNMP does not list at all (some firmware hides e.g. the waste box from the MIB).
    supplies.extend(unused)

    s, i = snmp.status, ipp.status
    status = s.model_copy(
        update={
            "device_status": s.device_status or i.device_status,
            "printer_status": s.printer_status or i.printer_status,
            "errors": _unique((*s.errors, *i.errors)),
            "alerts": (*s.alerts, *i.alerts),
            "status_text": s.status_text or i.status_text,
        }
    )
    return snmp.model_copy(
        update={
            "printer": _fill_identity(snmp.printer, ipp.printer),
            "supplies": tuple(supplies),
            "status": status,
            "missing": _unique((*snmp.missing, *ipp.missing)),
            "anomalies": _unique((*snmp.anomalies, *ipp.anomalies)),
        }
    )
