"""The alert thresholds in force for each supply of a printer, and the layer each comes from."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlmodel import Session

from tonerwatch_api.db.alerting import SiteAlertSettings
from tonerwatch_api.db.models import Printer
from tonerwatch_api.schemas.printers import AlertLimitInForce, SupplyLimitsOut, SupplyOut

LIMIT_NAMES = ("low_percent", "critical_percent", "lead_time_days")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def env_layers(
    rules: Mapping[str, Any], site_id: str, printer_id: str | None, kind: str | None
) -> list[Mapping[str, Any]]:
    """Return the layers TONERWATCH_ALERT_RULES sets for a site (and a printer, a kind of
    supply), lowest first, as the alerter applies them: defaults, site, printer, each followed
    by its per-kind values."""
    out = []
    scopes = [
        _mapping(rules.get("defaults")),
        _mapping(_mapping(rules.get("sites")).get(site_id)),
    ]
    if printer_id is not None:
        scopes.append(_mapping(_mapping(rules.get("printers")).get(printer_id)))
    for layer in scopes:
        out.append(layer)
        if kind is not None:
            out.append(_mapping(_mapping(layer.get("kinds")).get(kind)))
    return out


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
    env_rules: Mapping[str, Any] | None = None,
) -> list[SupplyLimitsOut]:
    """Return the thresholds in force for each supply of printer, naming where each comes from
    (defaults named in from_env were set by the environment, TONERWATCH_<NAME>; env_rules are
    TONERWATCH_ALERT_RULES, applied below the web UI's settings as the alerter does)."""
    row = session.get(SiteAlertSettings, printer.site_id)
    out = []
    for supply in supplies:
        values = {
            n: AlertLimitInForce(
                value=defaults[n], source="environment" if n in from_env else "default"
            )
            for n in LIMIT_NAMES
        }
        env = [
            ("environment", layer)
            for layer in env_layers(env_rules or {}, printer.site_id, printer.id, supply.kind)
        ]
        for source, layer in [*env, *_layers(row, printer.id, supply.kind)]:
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
