"""Why a printer needs attention, in words (pure): the fleet's cards and table say it."""

from __future__ import annotations

from datetime import UTC, datetime

from tonerwatch_api.attention import (
    ERROR_TEXT,
    AlertFacts,
    SupplyFacts,
    clean_name,
    days_left,
    level_text,
    reasons,
    worst_supply,
)
from tonerwatch_api.status import CRITICAL_ERRORS, printer_status

SEEN = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def toner(index: str, colour: str, percent: float | None, state: str = "ok") -> SupplyFacts:
    return SupplyFacts(index, f"{colour} Cartridge", "toner", "consumed", colour, percent, state)


def why(**kw: object) -> list[tuple[str, str]]:
    fields: dict[str, object] = {
        "monitored": True,
        "reachable": True,
        "last_seen_at": SEEN,
        "last_error": None,
        "device_status": "running",
        "status_errors": [],
        "supplies": [toner("1", "Black", 60.0)],
        "alerts": [],
    }
    fields.update(kw)
    return [(r.text, r.severity) for r in reasons(**fields)]  # type: ignore[arg-type]


def test_a_jammed_brother_says_paper_jam_not_needs_action() -> None:
    assert why(status_errors=["jammed"], alerts=[AlertFacts("jammed", "critical", None)]) == [
        ("Paper jam", "critical")
    ]


def test_door_open_and_low_paper_are_named_worst_first() -> None:
    assert why(status_errors=["low_paper", "door_open"]) == [
        ("Door open", "warning"),
        ("Low paper", "info"),
    ]


def test_a_supply_with_a_critical_alert_is_critical_even_when_the_printer_only_says_low() -> None:
    got = why(
        supplies=[toner("1", "Black", 3.0, "low")],
        alerts=[AlertFacts("critical", "critical", "1")],
    )
    assert got == [("Black toner 3%", "critical")]


def test_low_toner_without_an_alert_is_a_warning() -> None:
    assert why(supplies=[toner("4", "Yellow", 8.0, "low")]) == [("Yellow toner 8%", "warning")]


def test_an_unreachable_printer_is_offline_with_the_pollers_reason() -> None:
    got = why(
        reachable=False,
        last_error="no SNMP answer in 3 tries",
        alerts=[AlertFacts("unreachable", "warning", None)],
    )
    assert got == [("Offline: no SNMP answer in 3 tries", "critical")]


def test_a_printer_that_reported_nothing_is_no_data_never_ok() -> None:
    assert why(last_seen_at=None, supplies=[], device_status=None) == [
        ("No data yet: not polled successfully", "info")
    ]
    assert why(supplies=[]) == [("No supply levels reported", "info")]
    for seen in (None, SEEN):
        status = printer_status(
            monitored=True,
            reachable=True,
            last_seen_at=seen,
            supply_states=[],
            alert_severities=[],
            device_status="running",
            status_errors=[],
        )
        assert status == "pending"


def test_some_remaining_reads_some_left_never_minus_three() -> None:
    s = SupplyFacts("1", "Black Toner", "toner", "consumed", "black", None, "some_remaining")
    assert level_text(s) == "some left"
    bin_ = SupplyFacts(
        "5", "Waste Toner Box", "waste_toner", "receptacle", None, 15.0, "almost_full"
    )
    assert level_text(bin_) == "85% full"
    assert why(supplies=[bin_]) == [("Waste toner bin 85% full", "warning")]


def test_a_serial_number_after_a_supply_name_is_not_shown() -> None:
    assert clean_name("Black Toner Cartridge;SN0000000") == "Black Toner Cartridge"
    assert clean_name("Imaging Unit, PN 108R00865;SN 12ab") == "Imaging Unit, PN 108R00865"
    assert clean_name("Cyan Cartridge HP W2031A") == "Cyan Cartridge HP W2031A"


def test_worst_supply_and_days_left() -> None:
    supplies = [
        toner("1", "Black", 42.0),
        toner("4", "Yellow", 8.0, "low"),
        SupplyFacts("5", "Waste", "waste_toner", "receptacle", None, 90.0, "ok"),
    ]
    worst = worst_supply(supplies)
    assert worst is not None and worst[0].index == "4" and worst[1] == 8.0
    assert worst_supply([]) is None
    assert (
        days_left(
            [AlertFacts("forecast", "info", "1", 9.4), AlertFacts("low", "warning", "4", 4.2)]
        )
        == 4.2
    )
    assert days_left([AlertFacts("jammed", "critical", None)]) is None


def test_a_paused_printer_gives_no_reason() -> None:
    assert why(monitored=False, status_errors=["jammed"]) == []


def test_the_bits_that_make_a_printer_critical_are_the_reasons_said_in_red() -> None:
    red = {bit for bit, (_, severity) in ERROR_TEXT.items() if severity == "critical"}
    assert red == CRITICAL_ERRORS
    jammed = printer_status(
        monitored=True,
        reachable=True,
        last_seen_at=SEEN,
        supply_states=["ok"],
        alert_severities=[],
        device_status="warning",
        status_errors=["jammed"],
    )
    assert jammed == "critical"
