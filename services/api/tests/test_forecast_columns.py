"""A supply's forecast columns with its kept fit (projections.forecasts.FITS) against fitting afresh."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tonerwatch_api.projections import forecasts
from tonerwatch_api.projections.arrays import JsonText
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


def known_levels(
    polls: list[tuple[datetime, float | None]],
) -> Iterator[tuple[datetime, float]]:
    """Yield the polls with a level: an unknown one leaves the forecast as it stood (_forecast)."""
    for at, percent in polls:
        if percent is not None:
            yield at, percent


def test_forecast_columns_with_the_supplys_kept_fit_equal_fitting_afresh_over_weeks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Readings as the projection stores them, one after another (an unknown level skipped as
    # _forecast does); every reading's columns the same with and without the kept fit, the fit
    # reused where the envelope gives the same points, the new cartridge's history its own.
    fitted = count_fits(monkeypatch)
    envelope: list[list[float]] | None = None
    last: float | None = None
    forecasted = refits = 0
    for at, percent in known_levels(polls_with_a_new_cartridge()):
        afresh = forecasts.forecast_columns(envelope, last, percent, at)
        n = fitted[0]
        kept = forecasts.forecast_columns(envelope, last, percent, at, supply=("p-test", "1.1"))
        refits += fitted[0] - n
        assert kept == afresh
        forecasted += afresh["use_per_day"] is not None
        envelope, last = kept["envelope"], percent
    assert envelope is not None and envelope[0][1] <= 100.0 and len(envelope) > 20
    assert forecasted > 300
    assert 0 < refits < forecasted


def polls_of_a_fine_reporter_for_months() -> list[tuple[datetime, float | None]]:
    """120 days of 20-minute polls of a 0.01 % reporter: busy, idle 65 days, a new cartridge, late polls."""
    rnd = random.Random(200)
    start, level, out = datetime(2026, 3, 1, tzinfo=UTC), 64.0, []
    for poll in range(120 * 72):
        at = start + timedelta(minutes=20 * poll)
        day = poll / 72
        if poll == 100 * 72:
            level = 100.0
        if day < 20 or day > 85:
            level -= rnd.choice((0.0, 0.0, 0.0, 0.01, 0.03, 0.1))
        shown = None if rnd.random() < 0.01 else round(level + rnd.gauss(0, 0.01), 2)
        out.append((at, shown))
        if rnd.random() < 0.01:
            out.append((at - timedelta(minutes=30), shown))  # a late reading: no new low
    return out


def test_forecast_columns_from_the_stored_text_equal_fitting_afresh_and_decode_at_new_lows_and_hours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The batch path's readings (the envelope as its stored JSON text) over months: the busy
    # weeks thin the envelope past 200 points, the idle spell lets its lows leave the window
    # with the text unchanged, a new cartridge starts its own. Every reading's columns are those
    # fitted afresh from the decoded envelope, the text is json.dumps of it byte for byte, and
    # a reading with no new low hands back the stored text itself, decoding it at most when the
    # hour turns (a dense envelope's fit: fc.fit_points) or a low leaves the window.
    # Decodes counted at pydantic-core's parser: any of more than one point (the last point's
    # read, a few characters, is not one).
    decoded = [0]
    from_json = forecasts.from_json

    def counting(text: str) -> Any:
        decoded[0] += text.count("[") > 2
        return from_json(text)

    monkeypatch.setattr(forecasts, "from_json", counting)
    text: JsonText | None = None
    envelope: list[list[float]] | None = None
    last: float | None = None
    readings = same = thinned = in_hour = decoded_in_hour = 0
    hour_before: datetime | None = None
    for at, percent in known_levels(polls_of_a_fine_reporter_for_months()):
        afresh = forecasts.forecast_columns(envelope, last, percent, at)
        n = decoded[0]
        stored = forecasts.forecast_columns(text, last, percent, at, supply=("p-text", "1.1"))
        written = stored["envelope"]
        if text is None:  # a new supply's first reading: no stored text, a list as before
            written = JsonText(json.dumps(written))
        assert type(written) is JsonText
        assert written == json.dumps(afresh["envelope"])
        assert {k: v for k, v in stored.items() if k != "envelope"} == {
            k: v for k, v in afresh.items() if k != "envelope"
        }
        hour = at.replace(minute=0, second=0, microsecond=0)
        if written is text:
            same += 1
            assert decoded[0] - n <= 1
            if hour == hour_before:  # not the first of its hour (a dense envelope's fit turns)
                in_hour += 1
                decoded_in_hour += decoded[0] - n
        hour_before = hour
        thinned += envelope is not None and len(afresh["envelope"]) < len(envelope)
        readings += 1
        text, envelope, last = written, afresh["envelope"], percent
    assert readings > 8000 and same > 6000 and thinned > 3 and in_hour > 3000
    # A reading with no new low is decoded when the hour turns (a dense envelope is fitted as
    # of the hour), and within the hour only as a low leaves the window (the idle spell's).
    assert decoded_in_hour < in_hour / 10


@pytest.mark.parametrize(
    "stored",
    ["[[1772323200.0,64.0],[1772409600.0,63.5]]", "[[1772323200, 64], [1772409600, 63.5]]"],
)
def test_a_stored_envelope_json_dumps_would_not_write_is_written_back_as_json_dumps_writes_it(
    stored: str,
) -> None:
    # Compact separators or integers (not what this code writes, but a JSON column may hold them):
    # a new low is not appended to that text but the whole envelope dumped, as the one-by-one
    # path dumps it, and the forecast is the one fitted afresh.
    at = datetime(2026, 3, 3, tzinfo=UTC)
    decoded = json.loads(stored)
    afresh = forecasts.forecast_columns(decoded, 63.5, 62.0, at)
    kept = forecasts.forecast_columns(JsonText(stored), 63.5, 62.0, at, supply=("p-odd", "1"))
    assert kept["envelope"] == json.dumps(afresh["envelope"])
    assert {k: v for k, v in kept.items() if k != "envelope"} == {
        k: v for k, v in afresh.items() if k != "envelope"
    }
