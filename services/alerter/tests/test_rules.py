"""Threshold resolution and level rules: layers, hysteresis, the printer's own signals, receptacles."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tonerwatch_alerter.rules import (
    AlertRules,
    Layer,
    Limits,
    Resolved,
    marker_signals,
    wanted_level_rules,
    wanted_status_rules,
)
from tonerwatch_shared.printer.model import Supply, SupplyClass, SupplyKind, SupplyState

BASE = Resolved()


def toner(percent: float | None, state: SupplyState = SupplyState.OK, index: str = "1.1") -> Supply:
    return Supply(
        index=index,
        description="Black Cartridge HP CF217A",
        kind=SupplyKind.TONER,
        colour="black",
        percent=percent,
        state=state,
    )


def waste(percent: float | None, state: SupplyState = SupplyState.OK) -> Supply:
    return Supply(
        index="1.5",
        description="Waste Toner Box",
        kind=SupplyKind.WASTE_TONER,
        supply_class=SupplyClass.RECEPTACLE,
        percent=percent,
        state=state,
    )


def test_defaults_are_twenty_and_five_percent() -> None:
    r = AlertRules().resolve(BASE, "hq", "p1", SupplyKind.TONER)
    assert (r.low_percent, r.critical_percent, r.lead_time_days) == (20.0, 5.0, 7.0)


def test_layers_kind_then_site_then_printer() -> None:
    rules = AlertRules(
        defaults=Layer(kinds={SupplyKind.DRUM: Limits(low_percent=10)}),
        sites={"branch": Layer(low_percent=30, lead_time_days=14)},
        printers={
            "p9": Layer(kinds={SupplyKind.TONER: Limits(low_percent=40, critical_percent=15)})
        },
    )
    assert rules.resolve(BASE, "hq", "p1", SupplyKind.DRUM).low_percent == 10
    assert rules.resolve(BASE, "hq", "p1", SupplyKind.TONER).low_percent == 20
    branch = rules.resolve(BASE, "branch", "p1", SupplyKind.TONER)
    assert (branch.low_percent, branch.lead_time_days) == (30, 14)
    # The site's flat 30 % overrides the global drum 10 %: the later layer wins.
    assert rules.resolve(BASE, "branch", "p1", SupplyKind.DRUM).low_percent == 30
    p9 = rules.resolve(BASE, "branch", "p9", SupplyKind.TONER)
    assert (p9.low_percent, p9.critical_percent, p9.lead_time_days) == (40, 15, 14)


def test_critical_above_low_is_clamped() -> None:
    rules = AlertRules(printers={"p1": Layer(critical_percent=25)})
    r = rules.resolve(BASE, "hq", "p1", SupplyKind.TONER)
    assert r.critical_percent == r.low_percent == 20


def test_rules_json_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        AlertRules.model_validate_json('{"defaults": {"low_pct": 10}}')
    ok = AlertRules.model_validate_json(
        '{"sites": {"hq": {"low_percent": 25, "kinds": {"ink": {"low_percent": 30}}}}}'
    )
    assert ok.resolve(BASE, "hq", "x", SupplyKind.INK).low_percent == 30


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        (50, set()),
        (20.5, set()),
        (20, {"low"}),
        (12, {"low"}),
        (5, {"low", "critical"}),
        (0, {"low", "critical", "empty"}),
    ],
)
def test_toner_level_thresholds(percent: float, expected: set[str]) -> None:
    assert wanted_level_rules(toner(percent), BASE, set()) == expected


def test_hysteresis_keeps_low_until_three_points_above() -> None:
    assert wanted_level_rules(toner(21), BASE, {"low"}) == {"low"}
    assert wanted_level_rules(toner(23), BASE, {"low"}) == {"low"}
    assert wanted_level_rules(toner(23.5), BASE, {"low"}) == set()
    assert wanted_level_rules(toner(7), BASE, {"low", "critical"}) == {"low", "critical"}
    assert wanted_level_rules(toner(8.5), BASE, {"low", "critical"}) == {"low"}


def test_sleeping_supply_unknown_keeps_everything() -> None:
    assert wanted_level_rules(toner(None, SupplyState.UNKNOWN), BASE, {"low"}) is None
    assert wanted_level_rules(toner(None, SupplyState.UNKNOWN), BASE, set()) is None


def test_printer_state_without_percent_is_its_own_signal() -> None:
    assert wanted_level_rules(toner(None, SupplyState.LOW), BASE, set()) == {"low"}
    assert wanted_level_rules(toner(None, SupplyState.EMPTY), BASE, set()) == {
        "low",
        "critical",
        "empty",
    }
    # RFC 3805 -3 "some remaining": not empty, not necessarily fine.
    some = toner(None, SupplyState.SOME_REMAINING)
    assert wanted_level_rules(some, BASE, {"low", "critical"}) == {"low"}
    assert wanted_level_rules(some, BASE, set()) == set()
    assert wanted_level_rules(toner(None, SupplyState.OK), BASE, {"low"}) == set()


def test_parser_state_does_not_override_configured_percent() -> None:
    # The parser marks <= 10 % as "low"; with a percent the alerter's thresholds decide.
    tight = Resolved(low_percent=5, critical_percent=1)
    assert wanted_level_rules(toner(8, SupplyState.LOW), tight, set()) == set()


def test_waste_box_almost_full_and_full_on_space_left() -> None:
    assert wanted_level_rules(waste(60), BASE, set()) == set()
    assert wanted_level_rules(waste(15), BASE, set()) == {"almost_full"}
    assert wanted_level_rules(waste(3), BASE, set()) == {"almost_full", "full"}
    assert wanted_level_rules(waste(None, SupplyState.FULL), BASE, set()) == {"almost_full", "full"}
    assert wanted_level_rules(waste(None, SupplyState.ALMOST_FULL), BASE, set()) == {"almost_full"}


def test_low_toner_bit_on_mono_printer_goes_to_its_cartridge() -> None:
    supplies = [
        toner(60),
        Supply(index="1.2", description="Drum", kind=SupplyKind.DRUM, percent=80),
    ]
    per_supply, printer_wide = marker_signals(supplies, ("low_toner",))
    assert per_supply == {"1.1": {"low"}}
    assert printer_wide == set()
    assert wanted_level_rules(supplies[0], BASE, set(), per_supply["1.1"]) == {"low"}


def test_no_toner_bit_on_colour_printer_is_printer_wide() -> None:
    supplies = [toner(60, index=f"1.{i}") for i in range(1, 5)]
    per_supply, printer_wide = marker_signals(supplies, ("no_toner", "door_open"))
    assert per_supply == {}
    assert printer_wide == {"no_toner"}


def test_status_bits_that_alert() -> None:
    errors = (
        "jammed",
        "door_open",
        "low_paper",
        "no_paper",
        "service_requested",
        "offline",
        "input_tray_empty",
    )
    assert wanted_status_rules(errors) == {
        "jammed",
        "door_open",
        "no_paper",
        "service_requested",
        "offline",
    }
