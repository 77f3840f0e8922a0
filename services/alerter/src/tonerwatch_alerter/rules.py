"""Alert rules: thresholds per supply kind, site and printer, and which conditions a reading meets.

Pure: no I/O, no clock. Consumed supplies alert "low"/"critical" as percent (what remains) falls;
receptacles (waste bins) alert "almost_full"/"full" as percent (space left) falls. A condition that
is active clears only when percent rises above threshold + hysteresis, so a level bouncing around a
threshold raises one alert, not one per poll.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tonerwatch_shared.printer.model import Supply, SupplyClass, SupplyKind, SupplyState

Severity = Literal["info", "warning", "critical"]

LOW = "low"
CRITICAL = "critical"
EMPTY = "empty"
ALMOST_FULL = "almost_full"
FULL = "full"
FORECAST = "forecast"
UNREACHABLE = "unreachable"

# Level rules per supply class: (rule for the low threshold, rule for the critical threshold).
LEVEL_RULES: dict[SupplyClass, tuple[str, str]] = {
    SupplyClass.CONSUMED: (LOW, CRITICAL),
    SupplyClass.RECEPTACLE: (ALMOST_FULL, FULL),
}

# One open alert per supply: a worse rule of the ladder supersedes the one open (forecast < low <
# critical < empty; almost_full < full), a better one takes over when the level recovers part-way.
SUPPLY_LADDER: dict[SupplyClass, tuple[str, ...]] = {
    SupplyClass.CONSUMED: (FORECAST, LOW, CRITICAL, EMPTY),
    SupplyClass.RECEPTACLE: (FORECAST, ALMOST_FULL, FULL),
}

RULE_SEVERITY: dict[str, Severity] = {
    LOW: "warning",
    CRITICAL: "critical",
    EMPTY: "critical",
    ALMOST_FULL: "warning",
    FULL: "critical",
    FORECAST: "info",
    UNREACHABLE: "warning",
}


@dataclass(frozen=True)
class StatusRule:
    """A printer-wide condition read from hrPrinterDetectedErrorState bits."""

    severity: Severity
    message: str


# hrPrinterDetectedErrorState bit names (tonerwatch_shared.printer.codes.ERROR_BITS) that alert.
# low_paper, input_tray_empty and friends are left out on purpose: they come and go with every
# paper refill and would drown the useful alerts.
STATUS_RULES: dict[str, StatusRule] = {
    "jammed": StatusRule("critical", "paper jam"),
    "door_open": StatusRule("warning", "door or cover open"),
    "no_paper": StatusRule("warning", "out of paper"),
    "service_requested": StatusRule("warning", "service requested"),
    "offline": StatusRule("warning", "printer offline"),
    "output_full": StatusRule("warning", "output bin full"),
    "marker_supply_missing": StatusRule("critical", "a cartridge is missing"),
    "overdue_prevent_maint": StatusRule("info", "preventive maintenance overdue"),
}

# Printer-wide marker bits: attributed to the supply when the printer has exactly one marking
# supply (mono), else alerted printer-wide with these rules.
MARKER_BITS: dict[str, tuple[str, Severity, str]] = {
    "low_toner": (LOW, "warning", "printer reports toner/ink low"),
    "no_toner": (CRITICAL, "critical", "printer reports toner/ink empty"),
}
MARKING_KINDS = frozenset({SupplyKind.TONER, SupplyKind.INK, SupplyKind.SOLID_WAX})


class Limits(BaseModel):
    """Thresholds one layer sets; None means "inherit from the layer below"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low_percent: float | None = Field(default=None, ge=0, le=100)
    critical_percent: float | None = Field(default=None, ge=0, le=100)
    hysteresis_points: float | None = Field(default=None, ge=0, le=50)
    lead_time_days: float | None = Field(default=None, gt=0)
    replacement_jump_points: float | None = Field(default=None, gt=0, le=100)


class Layer(Limits):
    """Thresholds for a scope (everything, a site, a printer), with per-kind overrides."""

    kinds: dict[SupplyKind, Limits] = Field(default_factory=dict)


@dataclass(frozen=True)
class Resolved:
    """The thresholds that apply to one supply of one printer."""

    low_percent: float = 20.0
    critical_percent: float = 5.0
    hysteresis_points: float = 3.0
    lead_time_days: float = 7.0
    replacement_jump_points: float = 15.0

    def apply(self, limits: Limits | None) -> Resolved:
        """Return these thresholds with the fields limits sets replaced."""
        if limits is None:
            return self
        values = asdict(self)
        for name in values:
            v = getattr(limits, name)
            if v is not None:
                values[name] = v
        # A critical threshold above the low one would raise "critical" before "low".
        values["critical_percent"] = min(values["critical_percent"], values["low_percent"])
        return Resolved(**values)


class AlertRules(BaseModel):
    """Thresholds by layer: defaults < site < printer, each with per-kind overrides (JSON in TONERWATCH_ALERT_RULES)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    defaults: Layer = Field(default_factory=Layer)
    sites: dict[str, Layer] = Field(default_factory=dict)
    printers: dict[str, Layer] = Field(default_factory=dict)

    def resolve(self, base: Resolved, site_id: str, printer_id: str, kind: SupplyKind) -> Resolved:
        """Return the thresholds for one supply kind of one printer at one site."""
        out = base
        for layer in (self.defaults, self.sites.get(site_id), self.printers.get(printer_id)):
            if layer is not None:
                out = out.apply(layer).apply(layer.kinds.get(kind))
        return out


def level_rules(supply: Supply) -> tuple[str, str]:
    """Return the (low, critical) rule names for a supply's class."""
    return LEVEL_RULES[supply.supply_class]


def wanted_level_rules(
    supply: Supply,
    limits: Resolved,
    active: Iterable[str],
    signals: Iterable[str] = (),
) -> set[str] | None:
    """Return the level rules that hold after this reading, or None when the supply says nothing (asleep).

    signals are rules the printer itself asserts for this supply (e.g. "low" from a low_toner bit).
    """
    low_rule, crit_rule = level_rules(supply)
    consumed = supply.supply_class is SupplyClass.CONSUMED
    levels = {low_rule, crit_rule} | ({EMPTY} if consumed else set())
    active_set = set(active) & levels
    wanted: set[str] = set(signals) & levels
    p = supply.percent
    if p is not None:
        steps = [(low_rule, limits.low_percent), (crit_rule, limits.critical_percent)]
        if consumed:
            steps.append((EMPTY, 0.0))
        for rule, threshold in steps:
            if p <= threshold or (rule in active_set and p <= threshold + limits.hysteresis_points):
                wanted.add(rule)
        return wanted
    # No figure: the state is the printer's own word (RFC 3805 -3, vendor codes, level 0 w/o max).
    state = supply.state
    if state is SupplyState.UNKNOWN:
        # A sleeping printer answers -2: keep what we knew, raise nothing.
        return None if not wanted else active_set | wanted
    if state in (SupplyState.LOW, SupplyState.ALMOST_FULL):
        wanted.add(low_rule)
    elif state in (SupplyState.EMPTY, SupplyState.FULL):
        wanted |= {low_rule, crit_rule} | ({EMPTY} if consumed else set())
    elif state is SupplyState.SOME_REMAINING:
        # RFC 3805 -3: "some remains" rules out (nearly) empty but says nothing about low: an
        # open level alert steps back to low (it superseded low on the way down).
        wanted |= {low_rule} if active_set else set()
    return wanted


def worst_rule(supply_class: SupplyClass, rules: Iterable[str]) -> str | None:
    """Return the worst of rules on the supply's ladder (the one alert to keep open), or None."""
    ladder = SUPPLY_LADDER[supply_class]
    ranked = [r for r in rules if r in ladder]
    return max(ranked, key=ladder.index) if ranked else None


def marker_signals(
    supplies: Iterable[Supply], errors: Iterable[str]
) -> tuple[dict[str, set[str]], set[str]]:
    """Return (rules asserted per supply index, printer-wide marker bits left unattributed)."""
    bits = {b for b in errors if b in MARKER_BITS}
    if not bits:
        return {}, set()
    marking = [s for s in supplies if s.kind in MARKING_KINDS]
    if len(marking) == 1:
        return {marking[0].index: {MARKER_BITS[b][0] for b in bits}}, set()
    return {}, bits


def wanted_status_rules(errors: Iterable[str]) -> set[str]:
    """Return the printer-wide status rules the error bits assert."""
    return {e for e in errors if e in STATUS_RULES}


def status_severity(rule: str) -> Severity:
    """Return the severity of a printer-wide rule (status bit, marker bit, unreachable)."""
    if rule in STATUS_RULES:
        return STATUS_RULES[rule].severity
    if rule in MARKER_BITS:
        return MARKER_BITS[rule][1]
    return RULE_SEVERITY.get(rule, "warning")


def status_message(rule: str) -> str:
    """Return the human text of a printer-wide rule."""
    if rule in STATUS_RULES:
        return STATUS_RULES[rule].message
    if rule in MARKER_BITS:
        return MARKER_BITS[rule][2]
    if rule == UNREACHABLE:
        return "printer unreachable"
    return rule.replace("_", " ")
