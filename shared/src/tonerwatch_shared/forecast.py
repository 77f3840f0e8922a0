"""Consumption forecast: days until a supply is empty (or a waste bin full), with an uncertainty band.

Shared by the alerter (forecast alerts) and the api (days to empty on every supply), so both say
the same number.

Pure. The history kept per supply is its *envelope*: each new low with the time it was first seen
(a level only falls between replacements, so a rise is a shaken cartridge or noise and says nothing
about consumption). For a coarse reporter (steps of 10-33 %) those points are the times of the step
changes, not the plateaus. The rate is the Theil–Sen slope (median of pairwise slopes, robust to
bursts and outliers) over a recent window; the band is Sen's rank-based confidence interval of that
slope. A plateau that has lasted longer than the fitted rate allows caps the rate (the level has
not dropped one step in that time), so an idle printer is not forecast empty.

At most 80 points are fitted (an even pick). A dense envelope, with more lows in the window than
that over a week or more (a fine reporter: a new low every few polls), is fitted from the lows
before the current hour began, so its fit stands for the hour rather than being redone at every new
low; its newest low still gives the level now. How far that is from a refit at every low, for
5-minute and 4-hourly polls: test_forecast.py.

The fit depends on the points fitted only, not on the time asked: a reading that brings no new low
(most readings) fits the same points again. Fits keeps each supply's last fit and gives it back
while its points are the same; the api asks it by the stored envelope's digest, without decoding.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import statistics
import struct
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

DAY_S = 86400.0
WINDOW_DAYS = 60.0  # consumption from two months ago says little about this month's
MIN_POINTS = 3
MIN_SPAN_DAYS = 2.0  # one big job in an afternoon is not a rate
MAX_POINTS = 200  # per supply in the stored state
MAX_FIT_POINTS = 80
REFIT_S = 3600.0  # a dense envelope's fit holds for the hour (fit_points)
DENSE_SPAN_DAYS = 7.0  # ... once its lows before the hour span this long: an hour is then a sliver
Z_90 = 1.645  # two-sided 90 % band
COARSE_STEP = 5.0
NOISE_MARGIN = 2.0  # times the deepest dip below trend seen: how far noise may have hidden a drop  # median drop per step at or above this: a coarse reporter

Point = tuple[float, float]  # (unix seconds, percent)


@dataclass(frozen=True)
class Forecast:
    """A consumption estimate: rate in points per day, days to empty with a band (None = unbounded)."""

    rate_per_day: float
    level_now: float
    days_to_empty: float | None
    days_low: float | None
    days_high: float | None
    points: int
    step: float
    coarse: bool


def add_point(history: Sequence[Point], t: float, percent: float) -> list[Point]:
    """Return history with (t, percent) added if it is a new low (the envelope), thinned to MAX_POINTS."""
    out = list(history)
    if out and (t <= out[-1][0] or percent >= out[-1][1]):
        return out
    out.append((t, percent))
    if len(out) > MAX_POINTS:
        # Keep the recent half whole (it drives the forecast); thin the older half 2:1.
        half = len(out) // 2
        out = out[:half:2] + out[half:]
    return out


def theil_sen(points: Sequence[Point], z: float = Z_90) -> tuple[float, float, float, float]:
    """Return (slope, intercept, slope_low, slope_high) of the Theil–Sen fit with Sen's confidence band."""
    slopes = sorted(
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(points)
        for x2, y2 in points[i + 1 :]
        if x2 != x1
    )
    if not slopes:
        raise ValueError("need two points at different times")
    slope = statistics.median(slopes)
    intercept = statistics.median(y - slope * x for x, y in points)
    n, m = len(points), len(slopes)
    # Sen (1968): ranks of the band from the variance of Kendall's S (no ties assumed).
    c = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    lo = max(0, math.floor((m - c) / 2))
    hi = min(m - 1, math.ceil((m + c) / 2))
    return slope, intercept, slopes[lo], slopes[hi]


class Fit(NamedTuple):
    """What forecast takes from the points it fits (days counted from the first, t0)."""

    t0: float
    slope: float
    intercept: float
    slope_lo: float
    slope_hi: float
    step: float
    dip: float  # deepest low below the fitted line (0 if none)
    points: int


class _Kept(NamedTuple):
    """A supply's last fit: the points' digest, and the history it came from (forecast_kept)."""

    digest: bytes  # of the points fitted (their exact floats)
    fit: Fit | None  # None: too little data in those points
    token: Hashable = None  # the caller's name for the whole history (a digest of its stored form)
    hour: float = math.nan  # fitted in (a dense envelope's fit stands for the hour: fit_points)
    dense: bool = False
    sparse_on: bool = False  # no later hour can find it dense: too few lows left in any window
    out_t: float = -math.inf  # the newest point outside the window at the fit (-inf: none)
    in_t: float = math.inf  # the oldest inside (inf: the window's set cannot lose a point)
    last: Point = (math.nan, math.nan)  # the history's newest low


class Fits:
    """Each supply's last fit, given back while the points it was fitted over are the same.

    One entry per supply key (the caller's: the api's (printer id, supply index)), replaced when
    the points change: as many entries as supplies with a forecast, ~0.9 KB each. Two ways in:
    - fit(key, recent): by a digest (BLAKE2b, 128 bits) of the points' exact floats, so a fit is
      given back only for the same points (two different lists with the same digest: a 2^-128
      chance);
    - forecast_kept(key, token, now) after forecast_and_keep(key, token, history, now): by the
      caller's token for the whole history (the api: a digest of the stored envelope's text),
      while the window still holds the same points at now, so a reading that brings no new low
      neither decodes the history nor picks its points again.
    Safe to share between threads: an entry is replaced whole.
    """

    def __init__(self) -> None:
        self._last: dict[Hashable, _Kept] = {}

    def fit(self, key: Hashable, recent: Sequence[Point]) -> Fit:
        """Return the fit of recent, the supply's last one when its points are the same."""
        digest, found = self._fitted(key, recent)
        self._last[key] = _Kept(digest, found)
        return found

    def _fitted(self, key: Hashable, recent: Sequence[Point]) -> tuple[bytes, Fit]:
        """Return (the points' digest, their fit): the kept fit when they are the kept points."""
        digest = _digest(recent)
        last = self._last.get(key)
        if last is not None and last.digest == digest and last.fit is not None:
            return digest, last.fit
        return digest, fit_of(recent)

    def forecast_kept(
        self, key: Hashable, token: Hashable, now: float
    ) -> tuple[bool, Forecast | None]:
        """Return (known, forecast(history, now)) from what was kept for token; known False: not kept.

        Known while the kept history is token's, within the hour it was fitted in, and the window
        at now holds the same points as at the fit (a dense envelope's are those before the hour):
        its points only leave it as now passes, so the fit and the "too little data" answer
        stand until the oldest of them leaves (or one outside would come back).
        """
        last = self._last.get(key)
        if last is None or last.token is None or last.token != token:
            return False, None
        hour = _hour(now)
        if not (hour == last.hour or (last.sparse_on and hour > last.hour)):
            return False, None
        cutoff = now - WINDOW_DAYS * DAY_S  # as fit_points computes it: the same comparisons
        if not (last.dense or (last.out_t < cutoff and last.in_t >= cutoff)):
            return False, None
        return True, None if last.fit is None else forecast_from(last.fit, now, last.last)

    def forecast_and_keep(
        self, key: Hashable, token: Hashable, history: Sequence[Point], now: float
    ) -> Forecast | None:
        """Return forecast(history, now), kept under token for forecast_kept (history in time order)."""
        recent, dense = _fit_selection(history, now, WINDOW_DAYS)
        cutoff = now - WINDOW_DAYS * DAY_S
        inside = [t for t, _ in history if t >= cutoff]
        out_t = max((t for t, _ in history if t < cutoff), default=-math.inf)
        # Fewer than MIN_POINTS inside: fit_points takes the last three, and as now passes the
        # window only loses points, so the same three stand.
        in_t = min(inside) if len(inside) >= MIN_POINTS else math.inf
        hour = _hour(now)
        # A later hour's window holds at most the lows this hour's does, old or new.
        sparse_on = sum(1 for t, _ in history if t >= hour - WINDOW_DAYS * DAY_S) <= MAX_FIT_POINTS
        if recent is None:
            self._last[key] = _Kept(b"", None, token, hour, dense, sparse_on, out_t, in_t)
            return None
        digest, found = self._fitted(key, recent)
        self._last[key] = _Kept(
            digest, found, token, hour, dense, sparse_on, out_t, in_t, history[-1]
        )
        return forecast_from(found, now, history[-1])

    def __len__(self) -> int:
        return len(self._last)


def _digest(points: Sequence[Point]) -> bytes:
    flat = list(itertools.chain.from_iterable(points))
    return hashlib.blake2b(struct.pack(f"{len(flat)}d", *flat), digest_size=16).digest()


def fit_points(
    history: Sequence[Point], now: float, window_days: float = WINDOW_DAYS
) -> list[Point] | None:
    """Return the points a forecast at now fits from history (in time order), or None with too little data."""
    return _fit_selection(history, now, window_days)[0]


def _hour(now: float) -> float:
    return now - now % REFIT_S


def _fit_selection(
    history: Sequence[Point], now: float, window_days: float
) -> tuple[list[Point] | None, bool]:
    """Return (the points to fit, or None; whether the envelope is dense: fitted as of the hour)."""
    hour = _hour(now)
    settled = [p for p in history if hour - window_days * DAY_S <= p[0] < hour]
    dense = (
        len(settled) > MAX_FIT_POINTS and settled[-1][0] - settled[0][0] >= DENSE_SPAN_DAYS * DAY_S
    )
    if dense:
        # More lows in the window than are fitted (a fine reporter: a new low every few polls),
        # over a week or more: the even pick is taken from the lows before this hour began, so
        # the fit stands for the hour instead of being redone at every new low (each ~0.3 ms);
        # the newest low still gives the level and the time since (forecast_from). An hour is
        # then at most 1/168 of the span fitted and one of the 80 picks. A younger envelope
        # (a new cartridge's first week, when the rate moves most) is refitted at every low.
        recent = settled
    else:
        recent = [p for p in history if p[0] >= now - window_days * DAY_S]
        if len(recent) < MIN_POINTS:
            # Slow supplies may take longer than the window for three steps: use the last three.
            recent = list(history[-MIN_POINTS:])
    if len(recent) > MAX_FIT_POINTS:
        # Theil–Sen is O(n²): an even pick of 80 (always the newest) keeps it near 1 ms.
        n = len(recent)
        picks = {round(i * (n - 1) / (MAX_FIT_POINTS - 1)) for i in range(MAX_FIT_POINTS)}
        recent = [recent[i] for i in sorted(picks)]
    if len(recent) < MIN_POINTS or (recent[-1][0] - recent[0][0]) < MIN_SPAN_DAYS * DAY_S:
        return None, dense
    return recent, dense


def fit_of(recent: Sequence[Point]) -> Fit:
    """Return the Theil–Sen fit of points (unix seconds, percent), its step and deepest dip."""
    t0 = recent[0][0]
    pts = [((t - t0) / DAY_S, p) for t, p in recent]
    slope, intercept, slope_lo, slope_hi = theil_sen(pts)
    drops = [a[1] - b[1] for a, b in itertools.pairwise(recent)]
    step = statistics.median(drops)
    dip = max(0.0, *((intercept + slope * t) - p for t, p in pts))
    return Fit(t0, slope, intercept, slope_lo, slope_hi, step, dip, len(pts))


def forecast(
    history: Sequence[Point],
    now: float,
    *,
    window_days: float = WINDOW_DAYS,
    fits: Fits | None = None,
    supply: Hashable = None,
) -> Forecast | None:
    """Return the forecast for an envelope history at time now, or None with too little data.

    fits: the supply's last fit is reused when its points are the same (the same result).
    """
    recent = fit_points(history, now, window_days)
    if recent is None:
        return None
    f = fits.fit(supply, recent) if fits is not None else fit_of(recent)
    return forecast_from(f, now, history[-1])


def forecast_from(f: Fit, now: float, last: Point) -> Forecast:
    """Return the forecast at now from a fit of the supply's points and its newest low, last.

    last is the fit's own last point but for a dense envelope (fit_points), whose newest lows
    are fitted when the hour turns: the fit keeps none of its points, the caller gives it.
    """
    step, slope, last_p = f.step, f.slope, last[1]
    now_d = (now - f.t0) / DAY_S
    # The reporter shows last_p; the truth is within one step below it (floor or round).
    level_now = min(last_p, max(last_p - step, f.intercept + slope * now_d))
    rate, rate_fast, rate_slow = -slope, -f.slope_lo, -f.slope_hi
    since = now_d - (last[0] - f.t0) / DAY_S
    if since > 0:
        # No new low for `since` days: less than one step was used in that time, give or take
        # the noise (the last low may itself be a dip below the trend).
        cap = (step + NOISE_MARGIN * f.dip) / since
        rate, rate_fast, rate_slow = min(rate, cap), min(rate_fast, cap), min(rate_slow, cap)
    return Forecast(
        rate_per_day=rate,
        level_now=level_now,
        days_to_empty=_days(level_now, rate),
        days_low=_days(level_now, rate_fast),
        days_high=_days(level_now, rate_slow),
        points=f.points,
        step=step,
        coarse=step >= COARSE_STEP,
    )


def _days(level: float, rate: float) -> float | None:
    if level <= 0:
        return 0.0
    if rate <= 0:
        return None
    return level / rate
