"""Forecast on synthetic histories with known answers: steady use, coarse steps, swaps, shakes, noise."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from tonerwatch_shared import forecast as fc

DAY = fc.DAY_S
T0 = 1_750_000_000.0


def envelope(samples: list[tuple[float, float]]) -> list[fc.Point]:
    """Return the stored history for raw (day, percent) samples, as the engine keeps it."""
    history: list[fc.Point] = []
    for day, pct in samples:
        history = fc.add_point(history, T0 + day * DAY, pct)
    return history


def test_steady_two_percent_a_day_fine_reporter() -> None:
    # Sampled every 6 h, 1 % resolution (rounded down, as the Printer MIB's integer level does).
    samples = [(d / 4, math.floor(90 - 2 * d / 4)) for d in range(0, 4 * 20)]
    history = envelope(samples)
    now = T0 + 20 * DAY
    f = fc.forecast(history, now)
    assert f is not None
    assert f.rate_per_day == pytest.approx(2.0, rel=0.05)
    # True level at day 20 is 50 % → 25 days to empty.
    assert f.days_to_empty == pytest.approx(25.0, abs=1.0)
    assert f.days_low is not None and f.days_high is not None
    assert f.days_low <= f.days_to_empty <= f.days_high
    assert not f.coarse


def test_coarse_reporter_uses_step_times_not_plateaus() -> None:
    # A Brother-style reporter: levels in steps of 20 %, real use 4 %/day from 100 % at day 0,
    # polled hourly. A fit through the plateaus would see flat lines; step times give the rate.
    samples = [(h / 24, 20 * math.ceil((100 - 4 * h / 24) / 20)) for h in range(0, 24 * 16)]
    history = envelope(samples)
    assert [p for _, p in history] == [100, 80, 60, 40]
    now = T0 + 16 * DAY
    f = fc.forecast(history, now)
    assert f is not None
    assert f.coarse
    assert f.step == pytest.approx(20.0)
    assert f.rate_per_day == pytest.approx(4.0, rel=0.05)
    # Truth at day 16: 36 % → 9 days. Stepped data can only place it within one step.
    assert f.days_to_empty is not None
    assert 5.0 <= f.days_to_empty <= 10.0


def test_thirds_reporter_three_steps_is_enough() -> None:
    history = envelope([(0, 100), (10, 67), (20, 33)])
    f = fc.forecast(history, T0 + 21 * DAY)
    assert f is not None
    assert f.rate_per_day == pytest.approx(3.35, rel=0.02)
    assert f.days_to_empty is not None and f.days_to_empty < 33 / 3.35


def test_too_little_history_gives_no_forecast() -> None:
    assert fc.forecast(envelope([(0, 80), (1, 78)]), T0 + 2 * DAY) is None
    # Three points within an afternoon (one big job) are not a rate.
    assert fc.forecast(envelope([(0, 80), (0.1, 78), (0.2, 75)]), T0 + 0.3 * DAY) is None


def test_shaken_cartridge_small_rise_ignored() -> None:
    # 1 %/day; at day 10 the user shakes it and it reads 6 points higher for a while.
    samples = [(d, 60.0 - d) for d in range(0, 11)]
    samples += [(d, 56.0 - (d - 10)) for d in range(11, 21)]
    history = envelope(samples)
    assert all(b[1] < a[1] for a, b in itertools.pairwise(history))
    f = fc.forecast(history, T0 + 20 * DAY)
    assert f is not None
    assert f.rate_per_day == pytest.approx(1.0, rel=0.25)


def test_noise_does_not_break_the_rate() -> None:
    rnd = random.Random(7)
    samples = [(h / 24, round(80 - 1.5 * h / 24 + rnd.gauss(0, 1.0))) for h in range(0, 24 * 30, 3)]
    f = fc.forecast(envelope(samples), T0 + 30 * DAY)
    assert f is not None
    assert f.rate_per_day == pytest.approx(1.5, rel=0.15)
    # Truth: 35 % at day 30 → ~23 days; the envelope is conservative (earlier, not later).
    assert f.days_to_empty is not None
    assert 18 <= f.days_to_empty <= 25
    assert f.days_low is not None and f.days_high is not None
    assert f.days_low < f.days_to_empty < f.days_high


def test_idle_printer_plateau_caps_the_rate() -> None:
    # Used 5 %/day for 6 days, then idle for 30 days at 70 %.
    history = envelope([(d, 100 - 5 * d) for d in range(0, 7)])
    busy = fc.forecast(history, T0 + 6 * DAY)
    idle = fc.forecast(history, T0 + 36 * DAY)
    assert busy is not None and idle is not None
    assert busy.days_to_empty == pytest.approx(14, abs=1)
    # No 5-point drop in 30 days: less than 5/30 per day.
    assert idle.rate_per_day <= 5 / 30 + 1e-9
    assert idle.days_to_empty is not None and idle.days_to_empty > 300


def test_empty_supply_has_zero_days() -> None:
    history = envelope([(0, 30), (2, 20), (4, 10), (6, 0)])
    f = fc.forecast(history, T0 + 6 * DAY)
    assert f is not None
    assert f.days_to_empty == 0.0


def test_old_history_outside_window_ignored() -> None:
    # Slow use long ago (0.2 %/day), fast use in the last 30 days (2 %/day).
    slow = [(d, 100 - 0.2 * d) for d in range(0, 100, 5)]
    fast = [(100 + d, 80 - 2 * d) for d in range(0, 30)]
    f = fc.forecast(envelope(slow + fast), T0 + 130 * DAY, window_days=45)
    assert f is not None
    assert f.rate_per_day == pytest.approx(2.0, rel=0.1)


def test_history_is_bounded() -> None:
    # 0.01 % resolution over a long life: many distinct lows.
    history: list[fc.Point] = []
    for i in range(5000):
        history = fc.add_point(history, T0 + i * 600, 100 - i * 0.01)
    assert len(history) <= fc.MAX_POINTS
    assert history[-1][1] == pytest.approx(100 - 4999 * 0.01)
    assert history == sorted(history)
    f = fc.forecast(history, T0 + 5000 * 600)
    assert f is not None
    assert f.rate_per_day == pytest.approx(0.01 * DAY / 600, rel=0.05)


def test_theil_sen_resists_an_outlier() -> None:
    pts = [(float(x), 50 - 2.0 * x) for x in range(10)]
    pts[4] = (4.0, 0.0)  # one absurd reading
    slope, intercept, lo, hi = fc.theil_sen(pts)
    assert slope == pytest.approx(-2.0)
    assert intercept == pytest.approx(50.0)
    assert lo <= slope <= hi


def test_add_point_ignores_older_time_and_plateaus() -> None:
    h = fc.add_point([], T0, 50)
    assert fc.add_point(h, T0 + 10, 50) == h
    assert fc.add_point(h, T0 - 10, 40) == h
    assert fc.add_point(h, T0 + 10, 49) == [(T0, 50), (T0 + 10, 49)]
