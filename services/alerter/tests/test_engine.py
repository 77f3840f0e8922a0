"""The pure evaluation: one event per crossing, hysteresis, swaps, sleep, status, forecast, ids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from tonerwatch_alerter.engine import Context, evaluate, new_state
from tonerwatch_alerter.rules import AlertRules, Layer
from tonerwatch_alerter.state import PrinterState
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    PrinterConfigured,
    PrinterReachable,
    PrinterUnreachable,
    SupplyReading,
    SupplyReplaced,
    ThresholdCrossed,
)
from tonerwatch_shared.printer.model import (
    PrinterIdentity,
    PrinterStatus,
    Supply,
    SupplyClass,
    SupplyKind,
    SupplyState,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PID = "hp-m252dw-01"
CTX = Context(source="alerter-test")


def black(percent: float | None, state: SupplyState | None = None) -> Supply:
    """HP Color LaserJet M252dw black cartridge as the poller reports it."""
    if state is None:
        # A sleeping printer answers -2 (unknown); the parser marks <= 10 % low.
        if percent is None:
            state = SupplyState.UNKNOWN
        else:
            state = SupplyState.OK if percent > 10 else SupplyState.LOW
    return Supply(
        index="1.1",
        description="Black Cartridge HP 201A",
        part_number="CF400A",
        kind=SupplyKind.TONER,
        colour="black",
        percent=percent,
        level=None if percent is None else int(percent),
        max_capacity=100,
        state=state,
    )


def cmyk(levels: dict[str, float]) -> tuple[Supply, ...]:
    return tuple(
        Supply(index=f"1.{i}", description=f"{c} toner", kind=SupplyKind.TONER, colour=c, percent=p)
        for i, (c, p) in enumerate(levels.items(), start=1)
    )


def reading(
    t: datetime, supplies: Sequence[Supply], errors: Iterable[str] = (), site: str = "hq"
) -> SupplyReading:
    return SupplyReading(
        source="poller-test",
        site_id=site,
        printer_id=PID,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="HP", model="HP Color LaserJet Pro M252dw"),
        supplies=tuple(supplies),
        status=PrinterStatus(errors=tuple(errors)),
        occurred_at=t,
    )


def run(
    levels: Iterable[float | None],
    *,
    state: PrinterState | None = None,
    start: datetime = T0,
    step: timedelta = timedelta(hours=1),
    ctx: Context = CTX,
) -> tuple[PrinterState, list[Event]]:
    """Feed one black-toner reading per level; return the final state and every event."""
    st = state or new_state(PID)
    events: list[Event] = []
    for i, level in enumerate(levels):
        out = evaluate(st, reading(start + i * step, [black(level)]), ctx)
        st = out.state
        events += out.events
    return st, events


def crossed(events: Iterable[Event], rule: str | None = None) -> list[ThresholdCrossed]:
    return [e for e in events if isinstance(e, ThresholdCrossed) and rule in (None, e.rule)]


def resolved(events: Iterable[Event]) -> list[AlertResolved]:
    return [e for e in events if isinstance(e, AlertResolved)]


def test_hp_m252dw_black_falls_through_twenty_percent_once() -> None:
    st, events = run([30, 25, 21, 19, 18, 17, 16])
    [low] = crossed(events)
    assert low.rule == "low" and low.severity == "warning"
    assert low.alert_id == f"{PID}:1.1:low"
    assert (low.percent, low.threshold) == (19, 20)
    assert low.part_number == "CF400A" and low.colour == "black" and low.kind == "toner"
    assert low.message == "Low toner: HP Color LaserJet Pro M252dw — Black 19%"
    assert set(st.alerts) == {f"{PID}:1.1:low"}
    assert resolved(events) == []


def test_flapping_level_raises_once() -> None:
    _, events = run([25, 19, 21, 19, 21, 19, 22, 20])
    assert len(crossed(events)) == 1
    assert resolved(events) == []


def test_low_clears_only_three_points_above_threshold() -> None:
    _, events = run([25, 19, 23, 24, 19])
    assert [e.rule for e in crossed(events)] == ["low", "low"]
    [res] = resolved(events)
    assert res.alert_id == f"{PID}:1.1:low"
    # Each crossing has its own event id; the alert id stays.
    first, second = crossed(events)
    assert first.alert_id == second.alert_id and first.event_id != second.event_id


def test_critical_supersedes_low_then_replacement_resolves_it() -> None:
    st, events = run([21, 19, 6, 5, 4, 100, 99])
    assert [e.rule for e in crossed(events)] == ["low", "critical"]
    low_resolution, crit_resolution = resolved(events)
    # Critical took low's place: one open alert for the supply, low resolved as superseded.
    assert low_resolution.superseded_by == f"{PID}:1.1:critical"
    assert crossed(events, "critical")[0].supersedes == f"{PID}:1.1:low"
    [swap] = [e for e in events if isinstance(e, SupplyReplaced)]
    assert (swap.previous_percent, swap.percent, swap.supply_index) == (4, 100, "1.1")
    assert crit_resolution.superseded_by is None and "replaced" in crit_resolution.message
    assert st.alerts == {}
    assert st.supplies["1.1"].history[0][1] == 100 and st.supplies["1.1"].replacements == 1
    # The swap comes before the resolution it causes.
    kinds = [type(e).__name__ for e in events[-2:]]
    assert kinds == ["SupplyReplaced", "AlertResolved"]


def test_first_reading_already_critical_raises_only_critical() -> None:
    _, events = run([3])
    assert [e.rule for e in crossed(events)] == ["critical"]
    assert crossed(events)[0].supersedes is None


def test_shaken_cartridge_is_not_a_replacement() -> None:
    st, events = run([40, 30, 19, 27, 18])
    assert not [e for e in events if isinstance(e, SupplyReplaced)]
    # History keeps only new lows: the shake left no trace.
    assert [p for _, p in st.supplies["1.1"].history] == [40, 30, 19, 18]


def test_sleeping_printer_keeps_last_level_and_raises_nothing() -> None:
    st, events = run([19])
    assert len(crossed(events)) == 1
    st, more = run([None, None], state=st, start=T0 + timedelta(hours=1))
    assert more == []
    assert st.supplies["1.1"].last_percent == 19
    assert f"{PID}:1.1:low" in st.alerts
    # Waking up lower than before: still the same crossing.
    st, more = run([18], state=st, start=T0 + timedelta(hours=5))
    assert more == []


def test_sleep_then_swap_while_asleep_is_still_seen() -> None:
    st, _ = run([4, None, None])
    _, events = run([100], state=st, start=T0 + timedelta(days=1))
    assert next(type(e).__name__ for e in events) == "SupplyReplaced"


def test_stale_and_replayed_readings_change_nothing() -> None:
    st, _ = run([30, 19])
    again = evaluate(st, reading(T0 + timedelta(hours=1), [black(19)]), CTX)
    assert again.events == [] and not again.changed
    older = evaluate(st, reading(T0, [black(2)]), CTX)
    assert older.events == [] and not older.changed


def test_event_ids_are_deterministic() -> None:
    st, _ = run([30])
    r = reading(T0 + timedelta(hours=1), [black(19)])
    a = evaluate(st, r, CTX).events
    b = evaluate(st, r, Context(source="another-replica")).events
    assert [e.event_id for e in a] == [e.event_id for e in b]
    assert len(a) == 1


def test_evaluate_does_not_mutate_the_input_state() -> None:
    st, _ = run([30])
    before = st.model_dump()
    evaluate(st, reading(T0 + timedelta(hours=1), [black(3)]), CTX)
    assert st.model_dump() == before


def test_jam_raises_once_and_resolves_when_cleared() -> None:
    st = new_state(PID)
    events: list[Event] = []
    for i, errors in enumerate([(), ("jammed",), ("jammed", "door_open"), ("jammed",), ()]):
        out = evaluate(st, reading(T0 + timedelta(minutes=5 * i), [black(80)], errors), CTX)
        st, events = out.state, events + out.events
    assert [(e.rule, e.severity) for e in crossed(events)] == [
        ("jammed", "critical"),
        ("door_open", "warning"),
    ]
    assert [r.rule for r in resolved(events)] == ["door_open", "jammed"]
    assert crossed(events)[0].alert_id == f"{PID}:printer:jammed"
    assert st.alerts == {}


def test_unreachable_then_reachable() -> None:
    st, _ = run([80])
    down = PrinterUnreachable(
        source="poller",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        consecutive_failures=3,
        reason="timeout",
        occurred_at=T0 + timedelta(hours=1),
    )
    out = evaluate(st, down, CTX)
    [alert] = crossed(out.events)
    assert (alert.rule, alert.alert_id) == ("unreachable", f"{PID}:printer:unreachable")
    again = down.model_copy(
        update={"occurred_at": T0 + timedelta(hours=2), "consecutive_failures": 4}
    )
    out2 = evaluate(out.state, again, CTX)
    assert out2.events == []
    up = PrinterReachable(
        source="poller",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        occurred_at=T0 + timedelta(hours=3),
    )
    out3 = evaluate(out2.state, up, CTX)
    assert [r.rule for r in resolved(out3.events)] == ["unreachable"]


def test_a_reading_also_ends_unreachable() -> None:
    st, _ = run([80])
    down = PrinterUnreachable(
        source="poller",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        consecutive_failures=3,
        reason="timeout",
        occurred_at=T0 + timedelta(hours=1),
    )
    st = evaluate(st, down, CTX).state
    _, events = run([80], state=st, start=T0 + timedelta(hours=2))
    assert [r.rule for r in resolved(events)] == ["unreachable"]


def test_colour_printer_low_toner_bit_printer_wide_until_a_supply_explains_it() -> None:
    st = new_state(PID)
    out = evaluate(
        st,
        reading(T0, cmyk({"cyan": 60, "magenta": 50, "yellow": 40, "black": 30}), ["low_toner"]),
        CTX,
    )
    [alert] = crossed(out.events)
    assert (alert.rule, alert.supply_index) == ("low_toner", None)
    # Now cyan drops below 20 %: the supply alert says it better; the printer-wide one resolves.
    out = evaluate(
        out.state,
        reading(
            T0 + timedelta(hours=1),
            cmyk({"cyan": 15, "magenta": 50, "yellow": 40, "black": 30}),
            ["low_toner"],
        ),
        CTX,
    )
    assert [e.rule for e in crossed(out.events)] == ["low"]
    assert [r.rule for r in resolved(out.events)] == ["low_toner"]


def test_mono_low_toner_bit_alerts_the_cartridge() -> None:
    out = evaluate(new_state(PID), reading(T0, [black(45)], ["low_toner"]), CTX)
    [alert] = crossed(out.events)
    assert (alert.rule, alert.supply_index, alert.percent) == ("low", "1.1", 45)


def test_waste_box_almost_full_then_emptied() -> None:
    def box(space: float) -> Supply:
        return Supply(
            index="1.5",
            description="Waste Toner Box",
            kind=SupplyKind.WASTE_TONER,
            supply_class=SupplyClass.RECEPTACLE,
            percent=space,
        )

    st = new_state(PID)
    events: list[Event] = []
    for i, space in enumerate([40, 25, 18, 12, 100]):
        out = evaluate(st, reading(T0 + timedelta(days=i), [box(space)]), CTX)
        st, events = out.state, events + out.events
    assert [e.rule for e in crossed(events)] == ["almost_full"]
    assert crossed(events)[0].message.startswith(
        "Waste toner box almost full: HP Color LaserJet Pro M252dw — Waste Toner Box 18% space left"
    )
    assert [type(e).__name__ for e in events[-2:]] == ["SupplyReplaced", "AlertResolved"]


def test_forecast_warns_before_the_low_threshold() -> None:
    # 5 %/day from a new cartridge, polled twice a day: 7 days' lead at 35 %.
    levels = [100 - 2.5 * i for i in range(0, 34)]
    _st, events = run(levels, step=timedelta(hours=12))
    rules = [e.rule for e in crossed(events)]
    assert rules[0] == "forecast"
    assert rules == ["forecast", "low"]
    fc_alert = crossed(events, "forecast")[0]
    assert fc_alert.percent is not None and fc_alert.percent > 20
    assert fc_alert.days_to_empty is not None and fc_alert.days_to_empty < 7
    assert fc_alert.severity == "info"
    assert "reorder lead time 7 days" in fc_alert.message
    # The low crossing carries the forecast too.
    low = crossed(events, "low")[0]
    assert low.days_to_empty is not None and 3 <= low.days_to_empty <= 5


def test_forecast_lead_time_per_site() -> None:
    levels = [100 - 2.5 * i for i in range(0, 14)]  # down to 67.5 % after 6.5 days
    _, events = run(levels, step=timedelta(hours=12))
    assert crossed(events) == []
    ctx = Context(rules=AlertRules(sites={"hq": Layer(lead_time_days=30)}), source="t")
    _, events = run(levels, step=timedelta(hours=12), ctx=ctx)
    [fc_alert] = crossed(events)
    assert fc_alert.rule == "forecast" and fc_alert.threshold == 30


def test_coarse_reporter_forecast_from_steps() -> None:
    # Reports in thirds: 100 → 67 → 33 every 4 days, polled every 6 h. Rate ~8.3 %/day,
    # so at 33 % (4 days left) the forecast alerts, but not on the plateaus before.
    levels = [100.0] * 16 + [67.0] * 16 + [33.0] * 4
    _, events = run(levels, step=timedelta(hours=6))
    [fc_alert] = crossed(events)
    assert fc_alert.rule == "forecast" and fc_alert.percent == 33
    assert fc_alert.days_to_empty is not None and 2 <= fc_alert.days_to_empty <= 5


def test_replacement_resets_forecast_and_its_alert() -> None:
    levels = [100 - 2.5 * i for i in range(0, 28)] + [100, 99.5]
    st, events = run(levels, step=timedelta(hours=12))
    assert "forecast" in [r.rule for r in resolved(events)]
    assert len(st.supplies["1.1"].history) == 2


def test_site_threshold_override_applies() -> None:
    ctx = Context(rules=AlertRules(printers={PID: Layer(low_percent=50)}), source="t")
    _, events = run([60, 49], ctx=ctx)
    [low] = crossed(events)
    assert low.threshold == 50


def test_state_round_trips_through_json() -> None:
    st, _ = run([30, 19, 4])
    assert PrinterState.from_bytes(st.to_bytes()) == st


def configured(t: datetime, name: str | None, location: str | None) -> PrinterConfigured:
    return PrinterConfigured(
        source="api-test",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        name=name,
        location=location,
        occurred_at=t,
    )


def test_configured_name_and_location_name_the_printer_in_messages() -> None:
    st = evaluate(new_state(PID), configured(T0, "HP M252dw", "Finance, 2nd floor"), CTX).state
    # 2.5 points a day: about 5 days left at the 12 % reading.
    levels = [30 - 2.5 * i for i in range(8)]
    _, events = run(levels, state=st, start=T0 + timedelta(hours=1), step=timedelta(days=1))
    low = crossed(events, "low")[0]
    assert low.message == (
        "Low toner: HP M252dw (Finance, 2nd floor) — Black 20%, about 8 days left"
    )


def test_configuration_is_not_stopped_by_the_reading_watermark() -> None:
    st, _ = run([50])
    # Configured an hour *before* the newest reading: still learnt (its own watermark).
    st = evaluate(st, configured(T0 - timedelta(hours=1), "Front desk", None), CTX).state
    assert st.label().title() == "Front desk"
    # An older configuration replayed after a newer one is ignored.
    st = evaluate(st, configured(T0 + timedelta(hours=2), "Reception", "Lobby"), CTX).state
    stale = evaluate(st, configured(T0 + timedelta(hours=1), "Front desk", None), CTX)
    assert not stale.changed and stale.state.label().title() == "Reception (Lobby)"


def test_sys_location_names_the_place_until_configured() -> None:
    r = reading(T0, [black(19)])
    r = r.model_copy(
        update={"printer": PrinterIdentity(vendor="HP", model="M404n", sys_location="Lab 3")}
    )
    out = evaluate(new_state(PID), r, CTX)
    [low] = crossed(out.events)
    assert low.message == "Low toner: HP M404n (Lab 3) — Black 19%"


def test_unreachable_message_names_printer_and_reason() -> None:
    st = evaluate(new_state(PID), configured(T0, "Accounts MFP", "Room 12"), CTX).state
    down = PrinterUnreachable(
        source="poller-test",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        consecutive_failures=3,
        reason="no answer in 3 polls",
        occurred_at=T0 + timedelta(minutes=5),
    )
    [alert] = evaluate(st, down, CTX).events
    assert isinstance(alert, ThresholdCrossed)
    assert alert.message == "Printer unreachable: Accounts MFP (Room 12) — no answer in 3 polls"


def test_sleeping_printer_after_configuration_raises_nothing_at_all() -> None:
    st = evaluate(new_state(PID), configured(T0, "HP M252dw", None), CTX).state
    st, events = run([60, None, None, None], state=st, start=T0 + timedelta(hours=1))
    assert events == [] and st.supplies["1.1"].last_percent == 60 and st.alerts == {}


def test_a_refused_snmpv3_key_raises_an_alert_saying_so_resolved_when_polls_answer() -> None:
    st, _ = run([80])
    down = PrinterUnreachable(
        source="poller",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        consecutive_failures=1,
        reason="the printer refused our SNMPv3 authentication (wrong auth key or protocol) "
        "(127.0.0.1:161 (SNMPv3): Wrong SNMP PDU digest)",
        failure="auth_failed",
        occurred_at=T0 + timedelta(hours=1),
    )
    out = evaluate(st, down, CTX)
    [alert] = crossed(out.events)
    assert alert.rule == "unreachable" and alert.message.startswith("SNMP access refused: ")
    assert "wrong auth key" in alert.message
    up = PrinterReachable(
        source="poller",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        occurred_at=T0 + timedelta(hours=2),
    )
    assert [r.rule for r in resolved(evaluate(out.state, up, CTX).events)] == ["unreachable"]


def sequenced(seq: int, t: datetime, percent: float) -> SupplyReading:
    return reading(t, [black(percent)]).model_copy(update={"seq": seq})


def test_seq_orders_readings_against_a_skewed_clock() -> None:
    """Seq decides, not occurred_at: a replica's clock behind must neither block nor let in."""
    st = evaluate(new_state(PID), sequenced(100, T0, 50), CTX).state
    # Newer by seq, stamped 10 minutes earlier by a replica whose clock is behind: applied.
    low = evaluate(st, sequenced(101, T0 - timedelta(minutes=10), 15), CTX)
    [alert] = crossed(low.events)
    assert alert.seq == 101, "an alert event carries its cause's seq"
    assert low.state.watermark_seq == 101
    # Older by seq but with a later time (delivered late after an outage): stale, nothing.
    late = evaluate(low.state, sequenced(99, T0 + timedelta(minutes=5), 90), CTX)
    assert not late.changed and late.events == []


def test_reordered_delivery_neither_resolves_nor_re_raises() -> None:
    """Readings low, new cartridge, low again delivered new-cartridge last: no flapping."""
    t = [T0 + timedelta(hours=i) for i in range(3)]
    st = evaluate(new_state(PID), sequenced(1, t[0], 15), CTX).state  # low raised
    out = evaluate(st, sequenced(3, t[2], 12), CTX)  # still low: nothing new
    assert out.events == []
    late = evaluate(out.state, sequenced(2, t[1], 95), CTX)  # the swap, delivered last
    assert not late.changed and late.events == [], "a stale reading resolves nothing"
    assert set(late.state.alerts) == {f"{PID}:1.1:low"}


def test_an_event_without_seq_keeps_the_sequence() -> None:
    """A removal or an older poller's reading (no seq) is ordered by time and keeps the last seq."""
    st = evaluate(new_state(PID), sequenced(500, T0, 50), CTX).state
    unsequenced = evaluate(st, reading(T0 + timedelta(minutes=1), [black(40)]), CTX)
    assert unsequenced.changed and unsequenced.state.watermark_seq == 500
    assert not evaluate(unsequenced.state, reading(T0, [black(30)]), CTX).changed
    later = evaluate(unsequenced.state, sequenced(501, T0 - timedelta(minutes=1), 15), CTX)
    assert later.changed and crossed(later.events)


def test_a_changed_failure_reason_announces_the_open_alert_again_with_it() -> None:
    st, _ = run([80])
    down = PrinterUnreachable(
        source="poller",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        consecutive_failures=3,
        reason="no answer in 3 polls",
        occurred_at=T0 + timedelta(hours=1),
    )
    out = evaluate(st, down, CTX)
    [first] = crossed(out.events)
    assert first.message.startswith("Printer unreachable: ")
    # Still down, now for a reason retrying will not mend: the poller says so once.
    refused = down.model_copy(
        update={
            "occurred_at": T0 + timedelta(hours=2),
            "consecutive_failures": 4,
            "reason": "the printer refused our SNMPv3 authentication (wrong auth key or protocol)",
            "failure": "auth_failed",
        }
    )
    out2 = evaluate(out.state, refused, CTX)
    [again] = crossed(out2.events)
    assert again.alert_id == first.alert_id and again.severity == first.severity
    assert again.message.startswith("SNMP access refused: ") and "wrong auth key" in again.message
    assert again.event_id != first.event_id
    assert out2.state.alerts[first.alert_id].message == again.message
    # The same reason once more: nothing new to say.
    same = refused.model_copy(update={"occurred_at": T0 + timedelta(hours=3)})
    assert crossed(evaluate(out2.state, same, CTX).events) == []


def test_readings_overtaken_by_an_unreachable_still_alert_but_do_not_end_it() -> None:
    """Readings and reachability come through different consumers: after an outage the
    unreachable (seq 6) may be applied before the backlog of readings (seq 1-5). Those readings
    still count for their supplies (one low crossing), and none of them says the printer answers
    again: it went unreachable after them."""
    down = PrinterUnreachable(
        source="poller",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        consecutive_failures=3,
        reason="timeout",
        occurred_at=T0 + timedelta(hours=6),
        seq=6,
    )
    out = evaluate(new_state(PID), down, CTX)
    st, events = out.state, list(out.events)
    for n, level in enumerate([30, 19, 18, 17, 16], start=1):
        step = evaluate(st, sequenced(n, T0 + timedelta(hours=n), level), CTX)
        assert step.changed
        st, events = step.state, events + step.events
    assert [(e.rule, e.seq) for e in crossed(events)] == [("unreachable", 6), ("low", 2)]
    assert resolved(events) == []
    assert set(st.alerts) == {f"{PID}:printer:unreachable", f"{PID}:1.1:low"}
    assert (st.watermark_seq, st.readings_seq) == (6, 5)
    # A reading replayed once more is stale for its supplies too.
    assert not evaluate(st, sequenced(4, T0 + timedelta(hours=4), 17), CTX).changed
    # The next poll (seq 7) answers: the printer is back.
    back = evaluate(st, sequenced(7, T0 + timedelta(hours=7), 15), CTX)
    assert [r.rule for r in resolved(back.events)] == ["unreachable"]
