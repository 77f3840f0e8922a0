"""The alerter's rules on what real printers reported (../shared/printer-walks recordings)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tonerwatch_alerter.engine import Context, evaluate, new_state
from tonerwatch_alerter.rules import AlertRules, Layer
from tonerwatch_shared.events import SupplyReading, ThresholdCrossed
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.snmp.snmprec import load_snmprec

WALKS = Path(__file__).resolve().parents[3].parent / "shared" / "printer-walks"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

pytestmark = pytest.mark.recordings


def recorded(name: str, printer_id: str | None = None) -> SupplyReading:
    """Return the SupplyReading a poll of the recorded printer yields."""
    path = WALKS / f"{name}.snmprec"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"recording {path} missing in CI")
        pytest.skip(f"recording {path} not present")
    snap = parse_snapshot(load_snmprec(path))
    return SupplyReading(
        source="poller-test",
        site_id="hq",
        printer_id=printer_id or name,
        address="127.0.0.1",
        printer=snap.printer,
        supplies=snap.supplies,
        trays=snap.trays,
        counters=snap.counters,
        status=snap.status,
        missing=snap.missing,
        occurred_at=T0,
    )


def crossings(reading: SupplyReading, ctx: Context | None = None) -> list[ThresholdCrossed]:
    out = evaluate(new_state(reading.printer_id), reading, ctx or Context(source="t"))
    return [e for e in out.events if isinstance(e, ThresholdCrossed)]


def test_ricoh_mpc3002_cyan_at_twenty_percent_is_low_waste_box_fine() -> None:
    [low] = crossings(recorded("ricoh_mpc3002"))
    assert (low.rule, low.supply_index, low.percent, low.colour) == ("low", "1.3", 20.0, "cyan")
    assert low.alert_id == "ricoh_mpc3002:1.3:low"


def test_brother_dcp_9020cdw_private_mib_toner_at_twenty_percent_is_low() -> None:
    [low] = crossings(recorded("brother_dcp-9020cdw"))
    assert (low.rule, low.supply_index, low.kind) == ("low", "brother.72", "toner")


def test_brother_mfc_l2710dw_some_remaining_toner_raises_nothing() -> None:
    # RFC 3805 -3 on the toner: not empty, no figure; the drum is at 95.84 %.
    reading = recorded("brother")
    assert reading.supplies[0].state.value == "some_remaining"
    assert crossings(reading) == []


def test_konica_c250i_service_requested_is_a_printer_alert() -> None:
    [alert] = crossings(recorded("konica_c250i"))
    assert (alert.rule, alert.severity, alert.supply_index) == (
        "service_requested",
        "warning",
        None,
    )


def test_samsung_m4080fx_low_paper_alone_is_not_alerted() -> None:
    reading = recorded("samsungprinter_m4080fx")
    assert reading.status.errors == ("low_paper",)
    assert crossings(reading) == []


def test_hp_m252dw_yellow_at_36_percent_low_only_with_a_site_threshold_of_40() -> None:
    reading = recorded("jetdirect_m252dw")
    assert crossings(reading) == []
    ctx = Context(rules=AlertRules(sites={"hq": Layer(low_percent=40)}), source="t")
    [low] = crossings(reading, ctx)
    assert (low.supply_index, low.percent, low.threshold) == ("1.4", 36.0, 40)
    assert low.message.startswith("Low toner: HP Color LaserJet Pro M252dw")
    assert low.message.endswith(" — Yellow 36%")
