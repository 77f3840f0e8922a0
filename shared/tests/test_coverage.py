"""Service coverage (eConcierge's rule): 30 days monitored, then the second order; lapses."""

from __future__ import annotations

import datetime as dt

from tonerwatch_shared.coverage import ECONCIERGE, CoverageRule, evaluate, extend_run, rule_for

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


def test_a_gap_longer_than_allowed_restarts_continuous_monitoring() -> None:
    gap = ECONCIERGE.max_gap  # 7 days
    run: dt.datetime | None = None
    last: dt.datetime | None = None
    # Readings every 6 hours for 20 days, silent for 8 days, then every 6 hours again.
    times = [day(h / 4) for h in range(0, 80)] + [day(28 + h / 4) for h in range(0, 60)]
    for at in times:
        run = extend_run(run, last, at, gap)
        last = at if last is None else max(last, at)
    assert run == day(28)  # the 8-day silence broke the run: 30 days count from day 28
    assert evaluate(ECONCIERGE, run, [day(40), day(44)], day(45), last).status == "monitoring"
    # Without the gap the same orders would have covered it.
    assert evaluate(ECONCIERGE, T0, [day(40), day(44)], day(45), last).status == "covered"
    # A late reading inside the run changes nothing, one just before its start extends it back
    # (history sent newest first), one further back does not; a gap under the limit keeps the run.
    assert extend_run(run, last, day(30), gap) == day(28)
    assert extend_run(run, last, day(22), gap) == day(22)
    assert extend_run(run, last, day(20), gap) == day(28)
    assert extend_run(T0, day(10), day(16.9), gap) == T0
    # A printer silent for longer than the gap up to now is not being monitored any more.
    silent = evaluate(ECONCIERGE, T0, [day(32), day(40)], day(60), last_seen=day(50))
    assert silent.status == "monitoring" and silent.monitored_since is None
    assert evaluate(ECONCIERGE, T0, [day(32), day(40)], day(60), last_seen=day(55)).status == (
        "covered"
    )
