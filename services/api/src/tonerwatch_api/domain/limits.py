"""The alert thresholds in force for each supply of a printer, and the layer each comes from."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlmodel import Session

from tonerwatch_api.db.alerting import SiteAlertSettings
from tonerwatch_api.db.models import Printer
from tonerwatch_api.schemas.printers import AlertLimitInForce, SupplyLimitsOut, SupplyOut

LIMIT_NAMES = ("low_percent", "critical_percent", "lead_time_days")


def _layers(
    row: SiteAlertSettings | None, printer_id: str, kind: str
) -> list[tuple[str, Mapping[str, Any]]]:
    """Return the (source, values) layers over the defaults, lowest first (the alerter's order)."""
    if row is None:
        return []
    site = {n: getattr(row, n) for n in LIMIT_NAMES}
    mine: Mapping[str, Any] = (row.printers or {}).get(printer_id) or {}
    return [
        ("site", site),
        ("site_kind", (row.kinds or {}).get(kind) or {}),
        ("printer", mine),
        ("printer_kind", (mine.get("kinds") or {}).get(kind) or {}),
    ]


def limits_in_force(
    session: Session,
    printer: Printer,
    supplies: Sequence[SupplyOut],
    defaults: Mapping[str, float],
    from_env: Collection[str] = (),
) -> list[SupplyLimitsOut]:
    """Return the thresholds in force for each supply of printer, naming where each comes from
    (defaults named in from_env were set by the environment, TONERWATCH_<NAME>)."""
    row = session.get(SiteAlertSettings, printer.site_id)
    out = []
    for supply in supplies:
        values = {
            n: AlertLimitInForce(
                value=defaults[n], source="environment" if n in from_env else "default"
            )
            for n in LIMIT_NAMES
        }
        for source, layer in _layers(row, printer.id, supply.kind):
            for name in LIMIT_NAMES:
                if layer.get(name) is not None:
                    values[name] = AlertLimitInForce(value=float(layer[name]), source=source)
        low, crit = values["low_percent"], values["critical_percent"]
        if crit.value > low.value:  # the alerter caps critical at low (rules.Resolved.apply)
            values["critical_percent"] = AlertLimitInForce(value=low.value, source=low.source)
        out.append(SupplyLimitsOut(supply_index=supply.index, kind=supply.kind, **values))
    return out


def lead_time_for(
    row: SiteAlertSettings | None, printer_id: str, kind: str, default: float
) -> float:
    """Return the reorder lead time in force for one supply kind of a printer (days)."""
    value = default
    for _source, layer in _layers(row, printer_id, kind):
        if layer.get("lead_time_days") is not None:
            value = float(layer["lead_time_days"])
    return value
