"""Evaluate one event against a printer's state: the new state and the events to publish. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tonerwatch_alerter import forecast as fc
from tonerwatch_alerter.rules import (
    CRITICAL,
    FORECAST,
    LEVEL_RULES,
    LOW,
    MARKING_KINDS,
    RULE_SEVERITY,
    UNREACHABLE,
    AlertRules,
    Resolved,
    Severity,
    marker_signals,
    status_message,
    status_severity,
    wanted_level_rules,
    wanted_status_rules,
)
from tonerwatch_alerter.state import (
    ActiveAlert,
    PrinterState,
    SupplyMemory,
    alert_id,
    event_id,
)
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    PrinterReachable,
    PrinterRemoved,
    PrinterUnreachable,
    SupplyReading,
    SupplyReplaced,
    ThresholdCrossed,
)
from tonerwatch_shared.printer.model import Supply, SupplyClass

# A forecast alert clears once the estimate is this much beyond the lead time (hysteresis).
FORECAST_CLEAR_FACTOR = 1.5


HANDLED = (SupplyReading, PrinterUnreachable, PrinterReachable, PrinterRemoved)


@dataclass
class Outcome:
    """What applying one event produced: the new state, events to publish, whether state changed."""

    state: PrinterState
    events: list[Event] = field(default_factory=list)
    changed: bool = False


@dataclass(frozen=True)
class Context:
    """What evaluation needs besides state and event: thresholds and who we are."""

    base: Resolved = field(default_factory=Resolved)
    rules: AlertRules = field(default_factory=AlertRules)
    source: str = "alerter"


def new_state(printer_id: str, site_id: str | None = None) -> PrinterState:
    """Return the state of a printer never seen before."""
    return PrinterState(printer_id=printer_id, site_id=site_id)


def evaluate(state: PrinterState, event: Event, ctx: Context) -> Outcome:
    """Return the state after event and the events it causes; stale or foreign events change nothing."""
    if not isinstance(event, HANDLED):
        return Outcome(state)
    if state.watermark is not None and event.occurred_at <= state.watermark:
        # Replayed or overtaken (another replica applied something newer): already accounted for.
        return Outcome(state)
    work = state.model_copy(deep=True)
    work.watermark = event.occurred_at
    work.site_id = event.site_id
    out = Outcome(work, changed=True)
    ev = _Emitter(work, event, ctx, out.events)
    if isinstance(event, PrinterUnreachable):
        ev.raise_printer(UNREACHABLE, f"printer unreachable: {event.reason}")
    elif isinstance(event, PrinterReachable):
        ev.resolve(alert_id(work.printer_id, None, UNREACHABLE), "printer answers again")
    elif isinstance(event, PrinterRemoved):
        # Nobody watches it any more: its open alerts would never resolve otherwise.
        for aid in sorted(work.alerts):
            ev.resolve(aid, "printer no longer monitored")
    else:
        _apply_reading(ev, event, ctx)
    return out


def _apply_reading(ev: _Emitter, reading: SupplyReading, ctx: Context) -> None:
    st = ev.state
    pid = st.printer_id
    ev.resolve(alert_id(pid, None, UNREACHABLE), "printer answers again")
    per_supply, printer_bits = marker_signals(reading.supplies, reading.status.errors)
    t = reading.occurred_at
    for supply in reading.supplies:
        limits = ctx.rules.resolve(ctx.base, reading.site_id, pid, supply.kind)
        mem = st.supplies.get(supply.index) or SupplyMemory(index=supply.index)
        _describe(mem, supply)
        st.supplies[supply.index] = mem
        active = ev.active_rules(supply.index)
        p = supply.percent
        floor = mem.history[-1][1] if mem.history else mem.last_percent
        if p is not None and floor is not None and p - floor > limits.replacement_jump_points:
            ev.replaced(mem, p, t)
            active = set()
        if p is not None:
            mem.history = fc.add_point(mem.history, t.timestamp(), p)
            mem.last_percent = p
            mem.last_seen_at = t
        wanted = wanted_level_rules(supply, limits, active, per_supply.get(supply.index, ()))
        if wanted is None:
            continue  # asleep: levels unknown, keep every alert as it is
        forecast = fc.forecast(mem.history, t.timestamp()) if p is not None else None
        if _forecast_holds(forecast, limits, FORECAST in active, bool(wanted)):
            wanted.add(FORECAST)
        for rule in sorted(active - wanted):
            ev.resolve(alert_id(pid, supply.index, rule), _cleared_message(mem, p))
        for rule in _by_severity(wanted - active):
            ev.raise_supply(mem, rule, p, limits, forecast)
    # Printer-wide: status bits, plus marker bits not attributable to one supply (colour
    # printers) unless a supply alert already says the same.
    wanted_printer = wanted_status_rules(reading.status.errors)
    marking_alerting = any(
        a.rule in (LOW, CRITICAL)
        and a.supply_index in st.supplies
        and st.supplies[a.supply_index].kind in MARKING_KINDS
        for a in st.alerts.values()
    )
    if not marking_alerting:
        wanted_printer |= printer_bits
    for rule in sorted(ev.active_rules(None) - {UNREACHABLE} - wanted_printer):
        ev.resolve(alert_id(pid, None, rule), f"{status_message(rule)}: cleared")
    for rule in sorted(wanted_printer - ev.active_rules(None)):
        ev.raise_printer(rule, status_message(rule))


def _forecast_holds(
    forecast: fc.Forecast | None, limits: Resolved, active: bool, level_alerting: bool
) -> bool:
    if forecast is None or forecast.days_to_empty is None:
        # No estimate (too little data, no consumption): an active forecast alert stays.
        return active and (forecast is None or forecast.rate_per_day > 0)
    if active:
        return forecast.days_to_empty <= limits.lead_time_days * FORECAST_CLEAR_FACTOR
    # The forecast's job is to warn before the thresholds; once one fired it adds nothing.
    return not level_alerting and forecast.days_to_empty < limits.lead_time_days


def _by_severity(rules: set[str]) -> list[str]:
    order = {"info": 0, "warning": 1, "critical": 2}
    # Most severe first: a channel that batches shows the worst news on top.
    return sorted(rules, key=lambda r: (-order[RULE_SEVERITY.get(r, "warning")], r))


def _describe(mem: SupplyMemory, supply: Supply) -> None:
    mem.description = supply.description
    mem.kind = supply.kind
    mem.supply_class = supply.supply_class
    mem.colour = supply.colour
    mem.part_number = supply.part_number


def _name(mem: SupplyMemory) -> str:
    return mem.description or f"supply {mem.index}"


def _cleared_message(mem: SupplyMemory, p: float | None) -> str:
    level = f" at {p:g}%" if p is not None else ""
    return f"{_name(mem)}{level}: cleared"


class _Emitter:
    """Raises and resolves alerts on the working state, appending the events that announce them."""

    def __init__(self, state: PrinterState, cause: Event, ctx: Context, events: list[Event]):
        self.state = state
        self.cause = cause
        self.ctx = ctx
        self.events = events
        self.at: datetime = cause.occurred_at

    def active_rules(self, supply_index: str | None) -> set[str]:
        return {a.rule for a in self.state.alerts.values() if a.supply_index == supply_index}

    def _next_seq(self, key: str) -> int:
        seq = self.state.seqs.get(key, 0) + 1
        self.state.seqs[key] = seq
        return seq

    def _common(self, key: str, seq: int, what: str) -> dict[str, object]:
        return {
            "event_id": event_id(key, seq, what, self.at),
            "occurred_at": self.at,
            "source": self.ctx.source,
            "site_id": self.cause.site_id,
            "printer_id": self.state.printer_id,
        }

    def _remember(
        self, aid: str, rule: str, severity: Severity, supply: str | None, msg: str
    ) -> int:
        seq = self._next_seq(aid)
        self.state.alerts[aid] = ActiveAlert(
            alert_id=aid,
            rule=rule,
            severity=severity,
            supply_index=supply,
            raised_at=self.at,
            seq=seq,
            message=msg,
        )
        return seq

    def raise_printer(self, rule: str, message: str) -> None:
        aid = alert_id(self.state.printer_id, None, rule)
        if aid in self.state.alerts:
            return
        severity = status_severity(rule)
        seq = self._remember(aid, rule, severity, None, message)
        self.events.append(
            ThresholdCrossed(
                **self._common(aid, seq, "raised"),
                alert_id=aid,
                rule=rule,
                severity=severity,
                message=message,
            )
        )

    def raise_supply(
        self,
        mem: SupplyMemory,
        rule: str,
        p: float | None,
        limits: Resolved,
        forecast: fc.Forecast | None,
    ) -> None:
        aid = alert_id(self.state.printer_id, mem.index, rule)
        low_rule, crit_rule = LEVEL_RULES[mem.supply_class]
        threshold = {low_rule: limits.low_percent, crit_rule: limits.critical_percent}.get(rule)
        days = forecast.days_to_empty if forecast else None
        message = _supply_message(mem, rule, p, threshold, forecast, limits)
        severity = RULE_SEVERITY.get(rule, "warning")
        seq = self._remember(aid, rule, severity, mem.index, message)
        self.events.append(
            ThresholdCrossed(
                **self._common(aid, seq, "raised"),
                alert_id=aid,
                rule=rule,
                severity=severity,
                supply_index=mem.index,
                supply_description=mem.description or None,
                part_number=mem.part_number,
                kind=str(mem.kind),
                colour=mem.colour,
                percent=p,
                threshold=threshold if rule != FORECAST else limits.lead_time_days,
                days_to_empty=None if days is None else round(days, 1),
                message=message,
            )
        )

    def resolve(self, aid: str, message: str) -> None:
        alert = self.state.alerts.pop(aid, None)
        if alert is None:
            return
        self.events.append(
            AlertResolved(
                **self._common(aid, alert.seq, "resolved"),
                alert_id=aid,
                rule=alert.rule,
                message=message,
            )
        )

    def replaced(self, mem: SupplyMemory, p: float, t: datetime) -> None:
        key = f"{self.state.printer_id}:{mem.index}:replaced"
        seq = self._next_seq(key)
        previous = mem.last_percent
        self.events.append(
            SupplyReplaced(
                **self._common(key, seq, "replaced"),
                supply_index=mem.index,
                description=mem.description,
                part_number=mem.part_number,
                previous_percent=previous,
                percent=p,
            )
        )
        change = f" ({previous:g}% → {p:g}%)" if previous is not None else ""
        for aid in [a.alert_id for a in self.state.alerts.values() if a.supply_index == mem.index]:
            self.resolve(aid, f"{_name(mem)} replaced{change}")
        mem.history = []
        mem.replacements += 1


def _supply_message(
    mem: SupplyMemory,
    rule: str,
    p: float | None,
    threshold: float | None,
    forecast: fc.Forecast | None,
    limits: Resolved,
) -> str:
    receptacle = mem.supply_class is SupplyClass.RECEPTACLE
    what = {
        "low": "low",
        "critical": "nearly empty",
        "almost_full": "almost full",
        "full": "full",
        "forecast": "full soon" if receptacle else "runs out soon",
    }.get(rule, rule)
    parts = [f"{_name(mem)} {what}"]
    if p is not None:
        left = "space left" if receptacle else "left"
        limit = f" (threshold {threshold:g}%)" if threshold is not None and rule != FORECAST else ""
        parts.append(f"{p:g}% {left}{limit}")
    else:
        parts.append("reported by the printer")
    if forecast is not None and forecast.days_to_empty is not None:
        band = ""
        if forecast.days_low is not None:
            high = f"{forecast.days_high:.0f}" if forecast.days_high is not None else "∞"
            band = f" ({forecast.days_low:.0f}–{high})"
        until = "full" if receptacle else "empty"
        parts.append(f"~{forecast.days_to_empty:.1f} days to {until}{band}")
        if rule == FORECAST:
            parts.append(f"reorder lead time {limits.lead_time_days:g} days")
    return ", ".join(parts)


__all__ = ["HANDLED", "Context", "Outcome", "evaluate", "new_state"]
