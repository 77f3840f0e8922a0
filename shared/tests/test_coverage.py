"""Service coverage (eConcierge's rule): 30 days monitored, then the second order; lapses."""

from __future__ import annotations

import datetime as dt

from tonerwatch_shared.coverage import ECONCIERGE, CoverageRule, evaluate, rule_for

T0 = dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC)


def day(n: float) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def test_the_second_order_after_thirty_days_of_monitoring_flips_coverage() -> None:
    assert evaluate(ECONCIERGE, T0, [], day(10)).status == "monitoring"
    # An order in the first 30 days does not count.
    assert evaluate(ECONCIERGE, T0, [day(5)], day(31)).status == "eligible"
    first = evaluate(ECONCIERGE, T0, [day(5), day(32)], day(33))
    assert first.status == "eligible" and first.orders_counted == 1
    second = evaluate(ECONCIERGE, T0, [day(5), day(32), day(40)], day(41))
    assert second.status == "covered" and second.covered_since == day(40)
    # Continues while orders keep coming; lapses after 180 days without one.
    assert evaluate(ECONCIERGE, T0, [day(32), day(40), day(200)], day(300)).status == "covered"
    assert evaluate(ECONCIERGE, T0, [day(32), day(40)], day(221)).status == "lapsed"


def test_rules_are_per_vendor_with_a_default() -> None:
    rules = {"Xerox": ECONCIERGE, "*": CoverageRule(monitoring_days=0, orders_needed=1)}
    assert rule_for("XEROX", rules) is ECONCIERGE
    other = rule_for("HP", rules)
    assert evaluate(other, T0, [day(1)], day(2)).status == "covered"
    assert rule_for("HP", {}) is ECONCIERGE
