"""Forecast on synthetic histories with known answers: steady use, coarse steps, swaps, shakes, noise."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from typing import Any

import pytest

from tonerwatch_shared import forecast as fc
from tonerwatch_shared.testing.forecasts import count_fits

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


def forecast_as_before(history: list[fc.Point], now: float) -> fc.Forecast | None:
    """The forecast as it was computed before fits were kept (fc.forecast at 1699867, verbatim but its comments)."""
    recent = [p for p in history if p[0] >= now - fc.WINDOW_DAYS * DAY]
    if len(recent) < fc.MIN_POINTS:
        recent = list(history[-fc.MIN_POINTS :])
    if len(recent) > fc.MAX_FIT_POINTS:
        n = len(recent)
        picks = {round(i * (n - 1) / (fc.MAX_FIT_POINTS - 1)) for i in range(fc.MAX_FIT_POINTS)}
        recent = [recent[i] for i in sorted(picks)]
    if len(recent) < fc.MIN_POINTS or (recent[-1][0] - recent[0][0]) < fc.MIN_SPAN_DAYS * DAY:
        return None
    t0 = recent[0][0]
    pts = [((t - t0) / DAY, p) for t, p in recent]
    slope, intercept, slope_lo, slope_hi = fc.theil_sen(pts)
    drops = [a[1] - b[1] for a, b in itertools.pairwise(recent)]
    step = statistics.median(drops)
    last_t, last_p = pts[-1]
    now_d = (now - t0) / DAY
    level_now = min(last_p, max(last_p - step, intercept + slope * now_d))
    rate, rate_fast, rate_slow = -slope, -slope_lo, -slope_hi
    since = now_d - last_t
    if since > 0:
        dip = max(0.0, *((intercept + slope * t) - p for t, p in pts))
        cap = (step + fc.NOISE_MARGIN * dip) / since
        rate, rate_fast, rate_slow = min(rate, cap), min(rate_fast, cap), min(rate_slow, cap)
    return fc.Forecast(
        rate_per_day=rate,
        level_now=level_now,
        days_to_empty=fc._days(level_now, rate),
        days_low=fc._days(level_now, rate_fast),
        days_high=fc._days(level_now, rate_slow),
        points=len(pts),
        step=step,
        coarse=step >= fc.COARSE_STEP,
    )


def fine_reporter_polls() -> list[tuple[float, float]]:
    """90 days of 4-hourly polls of a 0.01 % reporter: busy weeks, idle ones, noise, shakes."""
    rnd = random.Random(15)
    level, out = 100.0, []
    for poll in range(90 * 6):
        day = poll / 6
        busy = 1.6 if (day // 14) % 3 != 2 else 0.05  # every third fortnight nearly idle
        level -= busy / 6 * rnd.uniform(0.3, 1.7)
        shown = level + (rnd.gauss(0, 0.4) if rnd.random() < 0.2 else 0.0)
        if rnd.random() < 0.01:
            shown += 6  # shaken: reads higher for a poll
        out.append((day, round(max(shown, 0.0), 2)))
    return out


def coarse_reporter_polls() -> list[tuple[float, float]]:
    """70 days of hourly polls of a 10 %-step reporter (rounded up), 2.2 %/day then idle 20 days."""
    out = []
    for hour in range(70 * 24):
        day = hour / 24
        used = 2.2 * min(day, 40.0)
        out.append((day, 10 * math.ceil((100 - used) / 10)))
    return out


def _dense_at(history: list[fc.Point], now: float) -> bool:
    """Whether more lows than are fitted, over a week or more, lie in the window before now's hour."""
    hour = now - now % fc.REFIT_S
    window = [t for t, _ in history if hour - fc.WINDOW_DAYS * DAY <= t < hour]
    return len(window) > fc.MAX_FIT_POINTS and window[-1] - window[0] >= fc.DENSE_SPAN_DAYS * DAY


@pytest.mark.parametrize("polls", [fine_reporter_polls, coarse_reporter_polls])
def test_a_supplys_kept_fit_gives_the_forecast_fitted_afresh_at_every_poll(
    polls: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every poll of weeks of service: the forecast with the supply's kept fit and the forecast
    # fitted afresh are the same, and the computation as it was before fits were kept too
    # while the envelope is not dense (then fitted as of the hour: the next test); the kept fit
    # is reused at polls that bring no new low and leave no point behind the window.
    fitted = count_fits(monkeypatch)
    fits, history, forecasts, refits, as_before = fc.Fits(), list[fc.Point](), 0, 0, 0
    for day, pct in polls():
        now = T0 + day * DAY
        history = fc.add_point(history, now, pct)
        afresh = fc.forecast(history, now)
        if not _dense_at(history, now):
            assert afresh == forecast_as_before(history, now)
            as_before += 1
        n = fitted[0]
        assert fc.forecast(history, now, fits=fits, supply=("p1", "1.1")) == afresh
        refits += fitted[0] - n
        forecasts += afresh is not None
    assert len(fits) == 1
    assert forecasts > 400 and as_before > 80
    assert 0 < refits < forecasts


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_a_dense_envelope_fitted_as_of_the_hour_moves_less_than_refitting_at_every_low() -> None:
    # The fine reporter's 90 days (up to ~300 lows in the window, 80 fitted): fitted from the
    # lows before the hour, the rate differs from refitting at every low by less than that
    # rate itself moves from one new low to the next (which lows the even pick takes shifts).
    history: list[fc.Point] = []
    apart, jumps, last = [], [], None
    for day, pct in fine_reporter_polls():
        now = T0 + day * DAY
        grown = fc.add_point(history, now, pct)
        before = forecast_as_before(grown, now)
        if before is not None and last is not None and len(grown) > len(history):
            jumps.append(abs(before.rate_per_day - last.rate_per_day) / last.rate_per_day)
        history, last = grown, before
        now_fc = fc.forecast(history, now)
        if before is None or not _dense_at(history, now):
            continue
        assert now_fc is not None and now_fc.points == fc.MAX_FIT_POINTS
        apart.append(abs(now_fc.rate_per_day - before.rate_per_day) / before.rate_per_day)
    assert len(apart) > 200
    assert _quantile(apart, 0.5) <= _quantile(jumps, 0.5)
    assert _quantile(apart, 0.9) <= _quantile(jumps, 0.9) < 0.02
    assert max(apart) < 0.1


def office_hours_polls(seed: int) -> list[tuple[float, float]]:
    """20 days of 5-minute polls (the default interval) of a 0.01 % reporter used in office hours, in bursts."""
    rnd, out, level = random.Random(seed), [], 95.0
    for poll in range(20 * 288):
        day = poll / 288
        if 8 <= (day % 1) * 24 < 18 and int(day) % 7 < 5:
            level -= rnd.choice((0.0, 0.0, 0.01, 0.02, 0.05, 0.3))
        out.append((day, round(level, 2)))
    return out


@pytest.mark.parametrize("seed", [2, 3])
def test_at_five_minute_polls_a_dense_envelope_is_as_far_from_a_refit_as_the_refit_moves_in_an_hour(
    seed: int,
) -> None:
    # Polled every 5 minutes, a busy fine reporter's lows come by the dozen an hour. While they
    # span less than a week (a new cartridge's first days, when the rate moves most) the forecast
    # is the refit at every low, exactly; after that, fitted as of the hour, its rate is as far
    # from the refit's as the refit's own rate moves from one hour to the next, and never far.
    history: list[fc.Point] = []
    young = dense = 0
    apart, hourly, rate_at = [], [], dict[float, float]()
    for day, pct in office_hours_polls(seed):
        now = T0 + day * DAY
        history = fc.add_point(history, now, pct)
        before, now_fc = forecast_as_before(history, now), fc.forecast(history, now)
        assert (before is None) == (now_fc is None)  # no forecast appears later than it did
        if before is None or now_fc is None:
            continue
        rate_at[now] = before.rate_per_day
        if now - 3600.0 in rate_at:
            hour_ago = rate_at[now - 3600.0]
            hourly.append(abs(before.rate_per_day - hour_ago) / hour_ago)
        if not _dense_at(history, now):
            assert now_fc == before
            young += history[-1][0] - history[0][0] < fc.DENSE_SPAN_DAYS * DAY
            continue
        dense += 1
        apart.append(abs(now_fc.rate_per_day - before.rate_per_day) / before.rate_per_day)
    assert young > 1000 and dense > 2000
    assert _quantile(apart, 0.5) < 0.02
    assert _quantile(apart, 0.9) <= 1.25 * _quantile(hourly, 0.9)
    assert max(apart) < 0.2 < max(hourly)


def test_a_dense_envelope_is_refitted_once_an_hour_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    # A day of 5-minute polls of a 0.01 % reporter at 1 %/day (a new low every third poll)
    # after a month of them: the kept fit is redone once an hour, not at every new low.
    fits, history, lows, refits, level = fc.Fits(), list[fc.Point](), 0, 0, 90.0
    for poll in range(31 * 288):
        t = T0 + poll * 300.0
        level -= 1.0 / 288
        grown = fc.add_point(history, t, math.floor(level * 100) / 100)
        if poll == 30 * 288:
            fitted = count_fits(monkeypatch)
        if poll >= 30 * 288:
            lows += len(grown) != len(history)
            n = fitted[0]
            found = fc.forecast(grown, t, fits=fits, supply="s")
            refits += fitted[0] - n
            assert found is not None and found == fc.forecast(grown, t)
        history = grown
    assert lows > 80 and refits <= 25


def test_kept_fits_are_each_supplys_own() -> None:
    # Two supplies fitted over the same points and then one over others: each gets its own.
    fits = fc.Fits()
    a = [(T0 + d * DAY, 90.0 - 2 * d) for d in range(6)]
    b = [(T0 + d * DAY, 90.0 - 5 * d) for d in range(6)]
    now = T0 + 6 * DAY
    assert fc.forecast(a, now, fits=fits, supply="a") == fc.forecast(a, now)
    assert fc.forecast(a, now, fits=fits, supply="b") == fc.forecast(a, now)
    assert fc.forecast(b, now, fits=fits, supply="b") == fc.forecast(b, now)
    assert fc.forecast(a, now, fits=fits, supply="a") == fc.forecast(a, now)
    assert fc.forecast(a, now, fits=fits, supply="a") != fc.forecast(b, now)


def _history_with_a_long_idle_spell() -> list[tuple[float, float]]:
    """20-minute polls (time, percent): 20 days of use, 65 idle (its lows leave the window), use again."""
    rnd = random.Random(80)
    out, level = [], 90.0
    for poll in range(120 * 72):
        day = poll / 72
        if day < 20 or day > 85:
            level -= rnd.choice((0.0, 0.0, 0.0, 0.02, 0.04, 0.1))
        out.append((T0 + poll * 1200.0, round(level + rnd.gauss(0, 0.01), 2)))
    return out


def test_the_forecast_kept_for_a_history_is_the_forecast_at_every_time_while_its_window_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every poll of 120 days (a long idle spell whose lows leave the 60-day window one by one,
    # so the kept fit must be let go as each leaves), and each poll's history asked again at
    # earlier and later times (late readings; times exactly on the window's edge): what
    # forecast_kept knows is forecast(history, now), and it knows it at most polls.
    fitted = count_fits(monkeypatch)
    fits, history = fc.Fits(), list[fc.Point]()
    shifted = known_count = refits = slid = 0
    last_token: object = None
    for i, (now, pct) in enumerate(_history_with_a_long_idle_spell()):
        history = fc.add_point(history, now, pct)
        token = (len(history), history[-1])  # stands for the history (the api: its text's digest)
        n = fitted[0]
        known, kept = fits.forecast_kept("s", token, now)
        assert fitted[0] == n  # what is kept is never fitted again
        if not known:
            slid += (
                token == last_token
            )  # the same history: a low left the window, or the hour turned
            last_token = token
            n = fitted[0]
            found = fits.forecast_and_keep("s", token, history, now)
            refits += fitted[0] - n
            assert found == fc.forecast(history, now)
            continue
        assert kept == fc.forecast(history, now)
        known_count += 1
        if known_count % 8:
            continue
        edges = [t + fc.WINDOW_DAYS * fc.DAY_S for t, _ in history[:3]]
        hour = now - now % fc.REFIT_S  # and within the hour: a dense envelope's fit stands
        within = (hour, hour + fc.REFIT_S / 2, hour + fc.REFIT_S - 0.001)
        for at in (now - 3 * DAY, now - 0.5 * DAY, now + 2 * DAY, now + 40 * DAY, *edges, *within):
            known, kept = fits.forecast_kept("s", token, at)
            if known:
                assert kept == fc.forecast(history, at), (i, at)
                shifted += 1
    assert known_count > 3000 and shifted > 1000 and slid > 1000
    # Not known: a new low (a refit), or the same lows when the hour turned or a low left the
    # window, most of them fitted over the same points as before (their fit reused).
    assert refits < (120 * 72 - known_count) / 2


def test_a_kept_forecast_is_not_given_for_another_history_or_supply() -> None:
    fits = fc.Fits()
    a = [(T0 + d * DAY, 90.0 - 2 * d) for d in range(6)]
    b = [*a, (T0 + 6.5 * DAY, 70.0)]
    now = T0 + 7 * DAY
    assert fits.forecast_kept("s", "a", now) == (False, None)
    assert fits.forecast_and_keep("s", "a", a, now) == fc.forecast(a, now)
    assert fits.forecast_kept("s", "a", now) == (True, fc.forecast(a, now))
    assert fits.forecast_kept("s", "b", now) == (False, None)
    assert fits.forecast_kept("t", "a", now) == (False, None)
    assert fits.forecast_and_keep("s", "b", b, now) == fc.forecast(b, now)
    assert fits.forecast_kept("s", "a", now) == (False, None)
    # Too little data is known too: two points, and a span under two days.
    short = [(T0, 90.0), (T0 + DAY, 89.0), (T0 + 1.5 * DAY, 88.0)]
    assert fits.forecast_and_keep("u", "short", short, T0 + 1.5 * DAY) is None
    assert fits.forecast_kept("u", "short", T0 + 3 * DAY) == (True, None)
