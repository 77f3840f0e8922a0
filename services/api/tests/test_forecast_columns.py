"""A supply's forecast columns with its kept fit (projections.printers.FITS) against fitting afresh."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tonerwatch_api.projections import printers
from tonerwatch_shared.testing.forecasts import count_fits


def polls_with_a_new_cartridge() -> list[tuple[datetime, float | None]]:
    """70 days of 2-hourly polls of a 0.01 % reporter, uneven use, a new cartridge on day 40."""
    rnd = random.Random(40)
    start, level, out = datetime(2026, 9, 1, tzinfo=UTC), 81.0, []
    for poll in range(70 * 12):
        at = start + timedelta(hours=2 * poll)
        if poll == 40 * 12:
            level = 100.0
        level -= rnd.choice((0.0, 0.0, 0.05, 0.2, 0.6))
        shown = None if rnd.random() < 0.02 else round(level + rnd.gauss(0, 0.05), 2)
        out.append((at, shown))
    return out


def test_forecast_columns_with_the_supplys_kept_fit_equal_fitting_afresh_over_weeks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Readings as the projection stores them, one after another (an unknown level skipped as
    # _forecast does); every reading's columns the same with and without the kept fit, the fit
    # reused where the envelope gives the same points, the new cartridge's history its own.
    fitted = count_fits(monkeypatch)
    envelope: list[list[float]] | None = None
    last: float | None = None
    forecasts = refits = 0
    for at, percent in polls_with_a_new_cartridge():
        if percent is None:
            continue
        afresh = printers.forecast_columns(envelope, last, percent, at)
        n = fitted[0]
        kept = printers.forecast_columns(envelope, last, percent, at, supply=("p-test", "1.1"))
        refits += fitted[0] - n
        assert kept == afresh
        forecasts += afresh["use_per_day"] is not None
        envelope, last = kept["envelope"], percent
    assert envelope is not None and envelope[0][1] <= 100.0 and len(envelope) > 20
    assert forecasts > 300
    assert 0 < refits < forecasts
