"""What alerts say: printer titles, headlines and one-line messages people read in mail and toasts.

Pure. A message reads "<headline>: <printer> — <detail>", e.g.
"Low toner: HP M452nw (Finance, 2nd floor) — Cyan 8%, about 5 days left", so it works as a mail
subject, a toast and a chat line without the printer list at hand.
"""

from __future__ import annotations

from tonerwatch_shared.printer.model import SupplyClass, SupplyKind

# What a supply kind is called in a headline ("Low toner", "Waste toner box almost full").
KIND_NOUN: dict[SupplyKind, str] = {
    SupplyKind.TONER: "toner",
    SupplyKind.INK: "ink",
    SupplyKind.SOLID_WAX: "wax",
    SupplyKind.DRUM: "drum",
    SupplyKind.DEVELOPER: "developer",
    SupplyKind.FUSER: "fuser",
    SupplyKind.TRANSFER: "transfer unit",
    SupplyKind.WASTE_TONER: "waste toner box",
    SupplyKind.WASTE_INK: "waste ink tank",
    SupplyKind.WASTE_OTHER: "waste container",
    SupplyKind.CLEANER: "cleaner",
    SupplyKind.FUSER_OIL: "fuser oil",
    SupplyKind.STAPLES: "staples",
    SupplyKind.MAINTENANCE_KIT: "maintenance kit",
    SupplyKind.LASER_UNIT: "laser unit",
    SupplyKind.PAPER_FEED_KIT: "paper feed kit",
    SupplyKind.RIBBON: "ribbon",
    SupplyKind.OTHER: "supply",
}
# Kinds where the colour alone names the supply well ("Cyan 8%").
COLOUR_NAMED = frozenset({SupplyKind.TONER, SupplyKind.INK, SupplyKind.SOLID_WAX})


def percent_text(percent: float) -> str:
    """Return a level as people read it: whole percent, "<1%" for a trace, never "0.390625%"."""
    if 0 < percent < 1:
        return "<1%"
    if 99 < percent < 100:
        return ">99%"
    return f"{round(percent)}%"


def model_name(vendor: str | None, model: str | None) -> str | None:
    """Return "vendor model" without saying the vendor twice, or None when neither is known."""
    vendor, model = (vendor or "").strip(), (model or "").strip()
    if model and vendor and not model.lower().startswith(vendor.lower()):
        return f"{vendor} {model}"
    return model or vendor or None


def printer_title(
    printer_id: str, name: str | None = None, model: str | None = None, location: str | None = None
) -> str:
    """Return how people know a printer: its name (or model, or id) and where it stands."""
    title = (name or "").strip() or (model or "").strip() or printer_id
    where = (location or "").strip()
    return f"{title} ({where})" if where and where not in title else title


def supply_name(kind: SupplyKind, colour: str | None, description: str, index: str) -> str:
    """Return a short supply name: the colour for toner and ink ("Cyan"), else its description."""
    if kind in COLOUR_NAMED and colour and colour.lower() not in ("unknown", "other"):
        return colour.strip().capitalize()
    return description.strip() or f"supply {index}"


def supply_headline(
    rule: str, kind: SupplyKind, supply_class: SupplyClass, percent: float | None
) -> str:
    """Return the headline of a supply alert: "Low toner", "Toner nearly empty", "Order ink now"."""
    noun = KIND_NOUN.get(kind, "supply")
    if supply_class is SupplyClass.RECEPTACLE and kind not in (
        SupplyKind.WASTE_TONER,
        SupplyKind.WASTE_INK,
        SupplyKind.WASTE_OTHER,
    ):
        noun = "waste container"
    cap = noun[0].upper() + noun[1:]
    if rule == "low":
        return f"Low {noun}"
    if rule == "empty":
        return f"{cap} empty"
    if rule == "critical":
        return f"{cap} empty" if percent is not None and percent <= 0 else f"{cap} nearly empty"
    if rule == "almost_full":
        return f"{cap} almost full"
    if rule == "full":
        return f"{cap} full"
    if rule == "forecast":
        return f"{cap} full soon" if supply_class is SupplyClass.RECEPTACLE else f"Order {noun} now"
    return f"{cap}: {rule.replace('_', ' ')}"


def days_phrase(days: float, receptacle: bool = False) -> str:
    """Return "about 5 days left" (or "full in about 5 days") for a days-to-empty estimate."""
    if days < 1:
        return "full within a day" if receptacle else "less than a day left"
    n = round(days)
    unit = "day" if n == 1 else "days"
    return f"full in about {n} {unit}" if receptacle else f"about {n} {unit} left"


def supply_detail(
    name: str,
    percent: float | None,
    receptacle: bool,
    days: float | None = None,
    band: tuple[float | None, float | None] | None = None,
    lead_time_days: float | None = None,
) -> str:
    """Return the detail of a supply alert: "Cyan 8%, about 5 days left"."""
    if percent is None:
        parts = [f"{name}, reported by the printer"]
    else:
        parts = [f"{name} {percent_text(percent)}{' space left' if receptacle else ''}"]
    if days is not None:
        phrase = days_phrase(days, receptacle)
        if band is not None and band[0] is not None:
            high = f"{band[1]:.0f}" if band[1] is not None else "∞"
            phrase += f" ({band[0]:.0f}–{high})"
        parts.append(phrase)
    if lead_time_days is not None:
        parts.append(f"reorder lead time {lead_time_days:g} days")
    return ", ".join(parts)


def message(headline: str, title: str, detail: str = "") -> str:
    """Return "<headline>: <printer> — <detail>" (without the dash when there is no detail)."""
    return f"{headline}: {title} — {detail}" if detail else f"{headline}: {title}"


__all__ = [
    "KIND_NOUN",
    "days_phrase",
    "message",
    "model_name",
    "percent_text",
    "printer_title",
    "supply_detail",
    "supply_headline",
    "supply_name",
]
