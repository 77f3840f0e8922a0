"""Evaluate one event against a printer's state: the new state and the events to publish. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tonerwatch_alerter import text
from tonerwatch_alerter.rules import (
    CRITICAL,
    EMPTY,
    FORECAST,
    LEVEL_RULES,
    LOW,
    MARKING_KINDS,
    RULE_SEVERITY,
    SUPPLY_LADDER,
    UNREACHABLE,
    AlertRules,
    Resolved,
    Severity,
    marker_signals,
    status_message,
    status_severity,
    wanted_level_rules,
    wanted_status_rules,
    worst_rule,
)
from tonerwatch_alerter.state import (
    ActiveAlert,
    PrinterState,
    SupplyMemory,
    alert_id,
    event_id,
)
from tonerwatch_shared import failures
from tonerwatch_shared import forecast as fc
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    PrinterConfigured,
    PrinterReachable,
    PrinterRemoved,
    PrinterUnreachable,
    SupplyReading,
    SupplyReplaced,
    ThresholdCrossed,
)
from tonerwatch_shared.ordering import Position, is_newer, position_of
from tonerwatch_shared.printer.model import Supply, SupplyClass, SupplyKind

# A forecast alert clears once the estimate is this much beyond the lead time (hysteresis).
FORECAST_CLEAR_FACTOR = 1.5


# Resolved thresholds a context keeps (printers x supply kinds) before starting afresh.
LIMITS_KEPT = 100_000

HANDLED = (SupplyReading, PrinterUnreachable, PrinterReachable, PrinterRemoved, PrinterConfigured)


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
    # What the web UI configured for the event's site (AlertSettingsConfigured): wins over rules.
    configured: AlertRules = field(default_factory=AlertRules)

    # Resolved thresholds per (site, printer, kind): the same for every reading of the printer
    # while this context lives (not copied by dataclasses.replace: a new context starts empty).
    _limits: dict[tuple[str, str, SupplyKind], Resolved] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def limits(self, site_id: str, printer_id: str, kind: SupplyKind) -> Resolved:
        """Return the thresholds of one supply kind: env rules, then the configured ones on top."""
        key = (site_id, printer_id, kind)
        known = self._limits.get(key)
        if known is None:
            env = self.rules.resolve(self.base, site_id, printer_id, kind)
            known = self.configured.resolve(env, site_id, printer_id, kind)
            if len(self._limits) >= LIMITS_KEPT:
                self._limits.clear()
            self._limits[key] = known
        return known


def new_state(printer_id: str, site_id: str | None = None) -> PrinterState:
    """Return the state of a printer never seen before."""
    return PrinterState(printer_id=printer_id, site_id=site_id)


def evaluate(state: PrinterState, event: Event, ctx: Context) -> Outcome:
    """Return the state after event and the events it causes; stale or foreign events change nothing."""
    if not isinstance(event, HANDLED):
        return Outcome(state)
    if isinstance(event, PrinterConfigured):
        return _configure(state, event)
    # Replayed, late or overtaken (another replica applied something newer) events change
    # nothing: by the printer's seq when both carry one (tonerwatch_shared.ordering), else by
    # occurred_at. Readings and reachability come through different consumers, so a reading is
    # judged against the readings applied (its supplies), and changes the printer's status
    # (unreachable, status bits) only if it is newer than every event applied.
    reading = isinstance(event, SupplyReading)
    status = is_newer(watermark(state), event)
    if not (is_newer(readings_watermark(state), event) if reading else status):
        return Outcome(state)
    work = _working_copy(state)
    seq = position_of(event).seq
    if status:
        work.watermark = event.occurred_at
        # An event outside the poller's sequence (no seq: removal, an older poller) keeps the
        # last seq, so the sequence still orders the readings after it.
        work.watermark_seq = seq if seq is not None else work.watermark_seq
    if reading:
        work.readings_at = event.occurred_at
        work.readings_seq = seq if seq is not None else work.readings_seq
    work.site_id = event.site_id
    out = Outcome(work, changed=True)
    ev = _Emitter(work, event, ctx, out.events)
    title = work.label().title()
    if isinstance(event, PrinterUnreachable):
        known = failures.KINDS.get(event.failure or "")
        heading = "SNMP access refused" if known and known.credentials else "Printer unreachable"
        ev.raise_printer(UNREACHABLE, text.message(heading, title, event.reason))
    elif isinstance(event, PrinterReachable):
        ev.resolve(alert_id(work.printer_id, None, UNREACHABLE), _answers_again(title))
    elif isinstance(event, PrinterRemoved):
        # Nobody watches it any more: its open alerts would never resolve otherwise.
        for aid in sorted(work.alerts):
            ev.resolve(aid, text.message("No longer monitored", title))
    else:
        _apply_reading(ev, event, ctx, status=status)
    return out


def _working_copy(state: PrinterState) -> PrinterState:
    """Return a copy of state that evaluation may change without touching state.

    Evaluation reassigns the state's fields, its containers' entries and each supply's fields,
    and replaces (never changes) active alerts and histories: copying those levels is enough,
    and 5-10x cheaper than a deep copy for every reading.
    """
    return state.model_copy(
        update={
            "supplies": {k: m.model_copy() for k, m in state.supplies.items()},
            "alerts": dict(state.alerts),
            "seqs": dict(state.seqs),
            "outbox": list(state.outbox),
        }
    )


def watermark(state: PrinterState) -> Position | None:
    """Return the position of the newest event applied to the printer (None: none yet)."""
    if state.watermark is None:
        return None
    return Position(state.watermark_seq, state.watermark)


def readings_watermark(state: PrinterState) -> Position | None:
    """Return the position of the newest reading applied (None: none yet)."""
    if state.readings_at is None:
        # Saved before readings had their own watermark: the one of every event, if any reading
        # was applied (it has supplies), stands in.
        return watermark(state) if state.supplies else None
    return Position(state.readings_seq, state.readings_at)


def _configure(state: PrinterState, event: PrinterConfigured) -> Outcome:
    """Learn the printer's name and location; configuration has its own watermark (no alerts)."""
    if state.configured_at is not None and event.occurred_at <= state.configured_at:
        return Outcome(state)
    work = state.model_copy(
        update={
            "name": event.name or None,
            "location": event.location or None,
            "configured_at": event.occurred_at,
            "site_id": state.site_id or event.site_id,
        }
    )
    return Outcome(work, changed=True)


def _answers_again(title: str) -> str:
    return text.message("Printer answers again", title)


def _apply_reading(ev: _Emitter, reading: SupplyReading, ctx: Context, *, status: bool) -> None:
    """Apply a reading's supplies; status: it is the newest event, its printer status counts too."""
    st = ev.state
    pid = st.printer_id
    st.model = text.model_name(reading.printer.vendor, reading.printer.model) or st.model
    st.sys_location = (reading.printer.sys_location or "").strip() or st.sys_location
    title = st.label().title()
    if status:
        ev.resolve(alert_id(pid, None, UNREACHABLE), _answers_again(title))
    per_supply, printer_bits = marker_signals(reading.supplies, reading.status.errors)
    t = reading.occurred_at
    for supply in reading.supplies:
        limits = ctx.limits(reading.site_id, pid, supply.kind)
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
        # One open alert per supply: the worst rule that holds; the one it replaces is resolved
        # as superseded (the condition goes on), not as cleared.
        top = worst_rule(mem.supply_class, wanted)
        gone = sorted(active - {top}, key=lambda r: _rank(mem, r), reverse=True)
        if top is None or top in active:
            for rule in gone:
                ev.resolve(alert_id(pid, supply.index, rule), _cleared_message(mem, rule, p, title))
            continue
        new_aid = alert_id(pid, supply.index, top)
        previous = alert_id(pid, supply.index, gone[0]) if gone else None
        ev.raise_supply(mem, top, p, limits, forecast, supersedes=previous)
        headline = text.supply_headline(top, mem.kind, mem.supply_class, p)
        for rule in gone:
            ev.resolve(
                alert_id(pid, supply.index, rule),
                text.message(f"Now {headline[:1].lower()}{headline[1:]}", title, _short(mem)),
                superseded_by=new_aid,
            )
    if not status:
        return  # an unreachable (or removal) after it already told the printer's status
    # Printer-wide: status bits, plus marker bits not attributable to one supply (colour
    # printers) unless a supply alert already says the same.
    wanted_printer = wanted_status_rules(reading.status.errors)
    marking_alerting = any(
        a.rule in (LOW, CRITICAL, EMPTY)
        and a.supply_index in st.supplies
        and st.supplies[a.supply_index].kind in MARKING_KINDS
        for a in st.alerts.values()
    )
    if not marking_alerting:
        wanted_printer |= printer_bits
    for rule in sorted(ev.active_rules(None) - {UNREACHABLE} - wanted_printer):
        ev.resolve(
            alert_id(pid, None, rule), text.message(_cap(status_message(rule)) + " cleared", title)
        )
    for rule in sorted(wanted_printer - ev.active_rules(None)):
        ev.raise_printer(rule, text.message(_cap(status_message(rule)), title))


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


def _rank(mem: SupplyMemory, rule: str) -> int:
    ladder = SUPPLY_LADDER[mem.supply_class]
    return ladder.index(rule) if rule in ladder else -1


def _describe(mem: SupplyMemory, supply: Supply) -> None:
    mem.description = supply.description
    mem.kind = supply.kind
    mem.supply_class = supply.supply_class
    mem.colour = supply.colour
    mem.part_number = supply.part_number


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _short(mem: SupplyMemory) -> str:
    return text.supply_name(mem.kind, mem.colour, mem.description, mem.index)


def _cleared_message(mem: SupplyMemory, rule: str, p: float | None, title: str) -> str:
    headline = text.supply_headline(rule, mem.kind, mem.supply_class, p)
    detail = f"{_short(mem)} {text.percent_text(p)}" if p is not None else _short(mem)
    return text.message(f"{headline} cleared", title, detail)


class _Emitter:
    """Raises and resolves alerts on the working state, appending the events that announce them."""

    def __init__(self, state: PrinterState, cause: Event, ctx: Context, events: list[Event]):
        self.state = state
        self.cause = cause
        self.ctx = ctx
        self.events = events
        self.at: datetime = cause.occurred_at
        # Alert events carry their cause's seq: mail, webhooks, the api and the syncer drop a
        # crossed or resolved older than what they applied for the alert.
        self.cause_seq = position_of(cause).seq

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
            "seq": self.cause_seq,
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
        active = self.state.alerts.get(aid)
        if active is not None:
            if active.message == message:
                return
            # Still down, for another reason (the poller says so once: a timeout became a refused
            # SNMPv3 login): the open alert is announced again with what is wrong now.
            seq = self._next_seq(aid)
            self.state.alerts[aid] = active.model_copy(update={"seq": seq, "message": message})
            self.events.append(
                ThresholdCrossed(
                    **self._common(aid, seq, "raised"),
                    alert_id=aid,
                    rule=rule,
                    severity=active.severity,
                    message=message,
                )
            )
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
        supersedes: str | None = None,
    ) -> None:
        aid = alert_id(self.state.printer_id, mem.index, rule)
        low_rule, crit_rule = LEVEL_RULES[mem.supply_class]
        threshold = {
            low_rule: limits.low_percent,
            crit_rule: limits.critical_percent,
            EMPTY: 0.0,
        }.get(rule)
        days = forecast.days_to_empty if forecast else None
        message = _supply_message(mem, rule, p, forecast, limits, self.state.label().title())
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
                supersedes=supersedes,
            )
        )

    def resolve(self, aid: str, message: str, superseded_by: str | None = None) -> None:
        alert = self.state.alerts.pop(aid, None)
        if alert is None:
            return
        self.events.append(
            AlertResolved(
                **self._common(aid, alert.seq, "resolved"),
                alert_id=aid,
                rule=alert.rule,
                message=message,
                superseded_by=superseded_by,
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
        pct = text.percent_text
        change = f" {pct(previous)} → {pct(p)}" if previous is not None else f" {pct(p)}"
        noun = _cap(text.KIND_NOUN.get(mem.kind, "supply"))
        msg = text.message(f"{noun} replaced", self.state.label().title(), _short(mem) + change)
        for aid in [a.alert_id for a in self.state.alerts.values() if a.supply_index == mem.index]:
            self.resolve(aid, msg)
        mem.history = []
        mem.replacements += 1


def _supply_message(
    mem: SupplyMemory,
    rule: str,
    p: float | None,
    forecast: fc.Forecast | None,
    limits: Resolved,
    title: str,
) -> str:
    receptacle = mem.supply_class is SupplyClass.RECEPTACLE
    days = band = None
    if forecast is not None and forecast.days_to_empty is not None:
        days = forecast.days_to_empty
        if rule == FORECAST:
            band = (forecast.days_low, forecast.days_high)
    detail = text.supply_detail(
        _short(mem),
        p,
        receptacle,
        days,
        band,
        limits.lead_time_days if rule == FORECAST else None,
    )
    return text.message(text.supply_headline(rule, mem.kind, mem.supply_class, p), title, detail)


__all__ = ["HANDLED", "Context", "Outcome", "evaluate", "new_state"]
