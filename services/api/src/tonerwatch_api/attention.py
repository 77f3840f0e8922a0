"""Why a printer needs attention, in words: from its status bits, supplies and open alerts (pure).

The fleet page names the reason ("Paper jam", "Black toner 4%", "Offline") instead of a bare
"Needs action"; raw device words (hrDeviceStatus, hrPrinterStatus, error bit names) are
translated here, never shown as they come.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}

# A serial number some devices append to a supply's name (";SN0000000", ", S/N: CRUM-123"): the
# parser drops most; anything left is not shown to people.
DEVICE_SERIAL = re.compile(
    r"\s*[;,]\s*(?:S/?N|Serial(?:\s*No\.?)?)\s*[:#]?\s*[A-Za-z0-9-]*\s*$", re.IGNORECASE
)


def clean_name(description: str) -> str:
    """Return a supply's name without a trailing device serial number."""
    return DEVICE_SERIAL.sub("", description).strip() or description


# hrPrinterDetectedErrorState bits (tonerwatch_shared.printer.codes.ERROR_BITS): what they mean.
ERROR_TEXT: dict[str, tuple[str, str]] = {
    "jammed": ("Paper jam", "critical"),
    "marker_supply_missing": ("Cartridge missing", "critical"),
    "no_toner": ("Out of toner", "critical"),
    "door_open": ("Door open", "warning"),
    "no_paper": ("Out of paper", "warning"),
    "offline": ("Offline at the printer", "warning"),
    "service_requested": ("Service requested", "warning"),
    "output_full": ("Output bin full", "warning"),
    "input_tray_missing": ("Paper tray missing", "warning"),
    "output_tray_missing": ("Output tray missing", "warning"),
    "low_toner": ("Toner low", "warning"),
    "low_paper": ("Low paper", "info"),
    "input_tray_empty": ("A paper tray is empty", "info"),
    "output_near_full": ("Output bin nearly full", "info"),
    "overdue_prevent_maint": ("Maintenance overdue", "info"),
}

# hrDeviceStatus and hrPrinterStatus words as a person says them.
DEVICE_STATUS_TEXT = {
    "running": "Running",
    "warning": "Running with a warning",
    "down": "Down",
    "testing": "Self-test",
    "unknown": "Not reported",
}
PRINTER_STATUS_TEXT = {
    "idle": "Idle",
    "printing": "Printing",
    "warmup": "Warming up",
    "other": "Busy",
    "unknown": "Not reported",
}

# Supply kinds as words, for "Black toner 4%" rather than the whole cartridge name.
KIND_TEXT = {
    "toner": "toner",
    "ink": "ink",
    "drum": "drum",
    "developer": "developer",
    "fuser": "fuser",
    "transfer": "transfer unit",
    "waste_toner": "waste toner bin",
    "waste_ink": "waste ink box",
    "waste_other": "waste box",
    "cleaner": "cleaner",
    "fuser_oil": "fuser oil",
    "staples": "staples",
    "maintenance_kit": "maintenance kit",
    "laser_unit": "laser unit",
    "paper_feed_kit": "paper feed kit",
    "solid_wax": "solid ink",
    "ribbon": "ribbon",
}

# Alert rules about a supply, as words after the supply's name.
SUPPLY_RULE_TEXT = {
    "empty": "empty",
    "critical": "very low",
    "low": "low",
    "full": "full",
    "almost_full": "almost full",
    "forecast": "runs out soon",
}


@dataclass(frozen=True)
class SupplyFacts:
    """What the reasons need of one supply."""

    index: str
    description: str
    kind: str
    supply_class: str
    colour: str | None
    percent: float | None
    state: str


@dataclass(frozen=True)
class AlertFacts:
    """What the reasons need of one open alert."""

    rule: str
    severity: str
    supply_index: str | None
    days_to_empty: float | None = None


@dataclass(frozen=True)
class Reason:
    """One reason a printer needs attention."""

    text: str
    severity: str  # critical, warning, info
    key: str  # what it is about (kept stable for the UI and for tests)


def supply_name(s: SupplyFacts) -> str:
    """Return a short name for a supply: "Black toner", "Waste toner bin", else its description."""
    kind = KIND_TEXT.get(s.kind)
    if kind is None:
        return clean_name(s.description)
    colour = (s.colour or "").strip().replace("_", " ").lower()
    if colour and colour not in ("unknown", "other", "none") and s.supply_class != "receptacle":
        return f"{colour.capitalize()} {kind}"
    return kind[0].upper() + kind[1:]


def level_text(s: SupplyFacts) -> str:
    """Return how full a supply is, for people: "4%", "some left", "full" (never "-3/100")."""
    if s.percent is None:
        return {
            "some_remaining": "some left",
            "empty": "empty",
            "full": "full",
            "almost_full": "almost full",
        }.get(s.state, "level not reported")
    if s.supply_class == "receptacle":
        return f"{max(0.0, min(100.0, 100.0 - s.percent)):.0f}% full"
    return f"{max(0.0, min(100.0, s.percent)):.0f}%"


def worst_supply(supplies: Iterable[SupplyFacts]) -> tuple[SupplyFacts, float] | None:
    """Return the supply closest to needing a change and its "left" (0..100; a bin: room left)."""
    best: tuple[SupplyFacts, float] | None = None
    for s in supplies:
        left = s.percent
        if left is None:
            left = {"empty": 0.0, "full": 0.0}.get(s.state)
        if left is None:
            continue
        if best is None or left < best[1]:
            best = (s, max(0.0, min(100.0, left)))
    return best


def supply_severity(s: SupplyFacts, alert: AlertFacts | None) -> str | None:
    """Return how bad a supply is (critical, warning, info), None when fine.

    An open alert decides first: a supply with a critical alert is critical (red), whatever the
    printer's own low flag says.
    """
    if alert is not None:
        return alert.severity
    if s.state in ("empty", "full"):
        return "critical"
    if s.state in ("low", "almost_full"):
        return "warning"
    return None


def reasons(
    *,
    monitored: bool,
    reachable: bool | None,
    last_seen_at: datetime | None,
    last_error: str | None,
    device_status: str | None,
    status_errors: Sequence[str],
    supplies: Sequence[SupplyFacts],
    alerts: Sequence[AlertFacts],
) -> list[Reason]:
    """Return why a printer needs attention, worst first (empty: nothing to say)."""
    if not monitored:
        return []
    out: list[Reason] = []
    if reachable is False:
        out.append(
            Reason("Offline" + (f": {last_error}" if last_error else ""), "critical", "offline")
        )
    for bit in status_errors:
        text, severity = ERROR_TEXT.get(bit, (bit.replace("_", " ").capitalize(), "warning"))
        out.append(Reason(text, severity, f"error:{bit}"))
    if device_status == "down" and not status_errors and reachable is not False:
        out.append(Reason("Printer reports it is down", "critical", "device:down"))
    by_supply: dict[str, AlertFacts] = {}
    for a in alerts:
        if a.supply_index is None:
            continue
        seen = by_supply.get(a.supply_index)
        if seen is None or SEVERITY_RANK.get(a.severity, 9) < SEVERITY_RANK.get(seen.severity, 9):
            by_supply[a.supply_index] = a
    for s in supplies:
        alert = by_supply.get(s.index)
        sev = supply_severity(s, alert)
        if sev is None:
            continue
        text = f"{supply_name(s)} {_supply_words(s, alert)}"
        out.append(Reason(text, sev, f"supply:{s.index}"))
    known = {r.key for r in out}
    for a in alerts:  # printer-wide alerts the status bits did not already say
        if a.supply_index is not None:
            continue
        key = "offline" if a.rule == "unreachable" else f"error:{a.rule}"
        if key in known:
            continue
        known.add(key)
        text = ERROR_TEXT.get(a.rule, (a.rule.replace("_", " ").capitalize(), ""))[0]
        if a.rule == "unreachable":
            text = "Not answering"
        out.append(Reason(text, a.severity, key))
    if not out and last_seen_at is None:
        out.append(Reason("No data yet: not polled successfully", "info", "no-data"))
    elif not out and not supplies:
        out.append(Reason("No supply levels reported", "info", "no-data"))
    out.sort(key=lambda r: SEVERITY_RANK.get(r.severity, 9))
    return out


def _supply_words(s: SupplyFacts, alert: AlertFacts | None) -> str:
    if s.percent is not None:
        words = level_text(s)
        if alert is not None and alert.rule == "forecast" and alert.days_to_empty is not None:
            words += f", about {alert.days_to_empty:.0f} days left"
        return words
    if alert is not None:
        return SUPPLY_RULE_TEXT.get(alert.rule, alert.rule.replace("_", " "))
    return level_text(s)


def days_left(alerts: Iterable[AlertFacts]) -> float | None:
    """Return the fewest days to empty an open alert forecasts (None: no forecast)."""
    days = [a.days_to_empty for a in alerts if a.days_to_empty is not None]
    return min(days) if days else None
