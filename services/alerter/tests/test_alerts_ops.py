"""One open alert per supply: low → critical → empty supersede each other; empty has its own words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tonerwatch_alerter.channels.base import ChannelConfig
from tonerwatch_alerter.engine import Context, evaluate, new_state
from tonerwatch_alerter.rules import Severity
from tonerwatch_alerter.state import ActiveAlert, PrinterState
from tonerwatch_alerter.text import percent_text, supply_detail
from tonerwatch_shared.events import AlertResolved, Event, SupplyReading, ThresholdCrossed
from tonerwatch_shared.printer.model import (
    PrinterIdentity,
    PrinterStatus,
    Supply,
    SupplyClass,
    SupplyKind,
    SupplyState,
)

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
PID = "kyocera-m2540dn-02"
CTX = Context(source="alerter-test")


def tk1170(percent: float | None, state: SupplyState = SupplyState.OK) -> Supply:
    """Kyocera ECOSYS M2540dn TK-1170 toner as the poller reports it."""
    return Supply(
        index="1.1",
        description="TK-1170",
        kind=SupplyKind.TONER,
        colour="black",
        percent=percent,
        state=state,
    )


def waste_box(percent: float) -> Supply:
    """Its waste toner box: percent is the space left."""
    return Supply(
        index="1.2",
        description="Waste Toner Box",
        kind=SupplyKind.WASTE_TONER,
        supply_class=SupplyClass.RECEPTACLE,
        percent=percent,
    )


def feed(
    readings: list[list[Supply]], state: PrinterState | None = None, start: int = 0
) -> tuple[PrinterState, list[Event]]:
    st = state or new_state(PID)
    events: list[Event] = []
    for i, supplies in enumerate(readings):
        r = SupplyReading(
            source="poller-test",
            site_id="branch-7",
            printer_id=PID,
            address="127.0.0.1",
            printer=PrinterIdentity(vendor="Kyocera", model="ECOSYS M2540dn"),
            supplies=tuple(supplies),
            status=PrinterStatus(),
            occurred_at=T0 + timedelta(hours=start + i),
        )
        out = evaluate(st, r, CTX)
        st, events = out.state, events + out.events
    return st, events


def open_rules(st: PrinterState) -> list[str]:
    return sorted(a.rule for a in st.alerts.values())


def test_toner_running_out_keeps_one_open_alert_low_then_critical_then_empty() -> None:
    st, events = feed([[tk1170(p)] for p in (30, 18, 12, 4, 2, 0)])
    raised = [e for e in events if isinstance(e, ThresholdCrossed)]
    gone = [e for e in events if isinstance(e, AlertResolved)]
    assert [e.rule for e in raised] == ["low", "critical", "empty"]
    assert [(e.rule, e.superseded_by) for e in gone] == [
        ("low", f"{PID}:1.1:critical"),
        ("critical", f"{PID}:1.1:empty"),
    ]
    assert [e.supersedes for e in raised] == [None, f"{PID}:1.1:low", f"{PID}:1.1:critical"]
    assert open_rules(st) == ["empty"]
    empty = raised[-1]
    assert empty.severity == "critical" and empty.threshold == 0
    assert empty.message == "Toner empty: Kyocera ECOSYS M2540dn — Black 0%"
    # The superseded alert's resolution names what took its place, not "cleared".
    assert gone[1].message == "Now toner empty: Kyocera ECOSYS M2540dn — Black"


def test_printer_saying_empty_without_a_figure_raises_empty() -> None:
    st, events = feed([[tk1170(None, SupplyState.EMPTY)]])
    [raised] = [e for e in events if isinstance(e, ThresholdCrossed)]
    assert raised.rule == "empty" and raised.supersedes is None
    assert open_rules(st) == ["empty"]


def test_level_recovering_part_way_steps_back_down_the_ladder() -> None:
    # A shaken cartridge: 3 % → 10 % is not a new one, but no longer nearly empty.
    st, events = feed([[tk1170(p)] for p in (30, 3, 10)])
    last_two = events[-2:]
    assert isinstance(last_two[0], ThresholdCrossed) and last_two[0].rule == "low"
    assert isinstance(last_two[1], AlertResolved) and last_two[1].rule == "critical"
    assert last_two[1].superseded_by == f"{PID}:1.1:low"
    assert open_rules(st) == ["low"]


def test_waste_box_full_supersedes_almost_full() -> None:
    st, events = feed([[tk1170(80), waste_box(p)] for p in (50, 15, 3)])
    assert [e.rule for e in events if isinstance(e, ThresholdCrossed)] == ["almost_full", "full"]
    [gone] = [e for e in events if isinstance(e, AlertResolved)]
    assert gone.superseded_by == f"{PID}:1.2:full"
    assert open_rules(st) == ["full"]


def test_flapping_around_empty_raises_empty_once() -> None:
    _, events = feed([[tk1170(p)] for p in (3, 0, 1, 0, 2, 0)])
    assert [e.rule for e in events if isinstance(e, ThresholdCrossed)] == ["critical", "empty"]


def test_state_saved_before_the_ladder_with_two_open_alerts_collapses_to_one() -> None:
    # An alerter state from an older release had low and critical open together.
    st, _ = feed([[tk1170(30)]])
    legacy = st.model_copy(deep=True)
    ladder: tuple[tuple[str, Severity], ...] = (("low", "warning"), ("critical", "critical"))
    for rule, sev in ladder:
        aid = f"{PID}:1.1:{rule}"
        legacy.alerts[aid] = legacy.alerts.get(aid) or _active(aid, rule, sev)
    st, events = feed([[tk1170(0)]], state=legacy, start=5)
    gone = sorted((e.rule, e.superseded_by) for e in events if isinstance(e, AlertResolved))
    assert gone == [("critical", f"{PID}:1.1:empty"), ("low", f"{PID}:1.1:empty")]
    assert open_rules(st) == ["empty"]


def _active(aid: str, rule: str, severity: Severity) -> ActiveAlert:
    return ActiveAlert(
        alert_id=aid, rule=rule, severity=severity, supply_index="1.1", raised_at=T0, seq=1
    )


def test_levels_are_rounded_for_people() -> None:
    assert [percent_text(p) for p in (0, 0.390625, 7.5, 19.6, 99.5, 100)] == [
        "0%",
        "<1%",
        "8%",
        "20%",
        ">99%",
        "100%",
    ]
    assert supply_detail("Cyan", 7.8125, False, days=4.6) == "Cyan 8%, about 5 days left"


def test_mail_and_webhook_channels_skip_superseded_resolutions() -> None:
    channel = ChannelConfig(name="ops")
    common = {"source": "t", "site_id": "branch-7", "printer_id": PID, "rule": "low"}
    superseded = AlertResolved(alert_id="a", superseded_by="b", **common)  # type: ignore[arg-type]
    cleared = AlertResolved(alert_id="a", **common)  # type: ignore[arg-type]
    assert not channel.wants(superseded)
    assert channel.wants(cleared)
    # A reader that predates superseded_by still reads the event.
    assert AlertResolved.model_validate_json(superseded.model_dump_json()).superseded_by == "b"
