"""A supply's envelope and forecast columns after a reading (the api's days to empty).

The envelope is the supply's history of lows (tonerwatch_shared.forecast); the batch path
(readings.apply_readings) reads it as its stored JSON text and, for a reading with no new low (most),
forecasts from the fit FITS kept under the text's digest without decoding it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable
from datetime import datetime
from typing import Any, cast

from pydantic_core import from_json

from tonerwatch_api.projections.arrays import JsonText
from tonerwatch_shared import forecast as fc

# A rise of more than this is a new cartridge (the alerter's default TONERWATCH_REPLACEMENT_JUMP_POINTS).
REPLACEMENT_JUMP_POINTS = 15.0


# Each supply's last fit, reused while its envelope gives the same points (most readings bring no
# new low): the same forecast without refitting up to 80 points every reading (fc.Fits).
FITS = fc.Fits()


def forecast_columns(
    envelope_now: list[list[float]] | JsonText | None,
    last_percent: float | None,
    percent: float,
    at: datetime,
    *,
    supply: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Return a supply's envelope and forecast columns after a reading of percent at at.

    envelope_now: the stored envelope, decoded or as its JSON text (JsonText: the batch path),
    which then comes back as JSON text (JsonText), the stored one itself when the reading adds
    no point (no new low: most readings). supply: (printer id, supply index), whose last fit
    FITS keeps; None fits every time.
    """
    if type(envelope_now) is JsonText and supply is not None:
        kept = _kept_columns(envelope_now, last_percent, percent, at, supply)
        if kept is not None:
            return kept
    stored = envelope_now if type(envelope_now) is JsonText else None
    # pydantic-core's parser: the same floats as json.loads, in a third of its time.
    points_now: list[list[float]] | None = (
        from_json(stored) if stored is not None else cast(list[list[float]] | None, envelope_now)
    )
    envelope = [(float(t), float(p)) for t, p in points_now or []]
    floor = envelope[-1][1] if envelope else last_percent
    if floor is not None and percent - floor > REPLACEMENT_JUMP_POINTS:
        envelope = []  # a new cartridge: its own history starts now
        stored = None
    points = len(envelope)
    envelope = fc.add_point(envelope, at.timestamp(), percent)
    found = fc.forecast(envelope, at.timestamp(), fits=FITS if supply else None, supply=supply)
    # add_point gives the points back as they were unless it adds one (added and thinned, a
    # full envelope's 201 become 151): as many points is the same envelope.
    unchanged = stored is not None and len(envelope) == points
    written: list[list[float]] | JsonText = (
        stored
        if unchanged and stored is not None
        # Text for the batch path (JSON text is what it writes; a tuple dumps as a list).
        else JsonText(json.dumps(envelope))
        if type(envelope_now) is JsonText
        else [[t, p] for t, p in envelope]
    )
    return {"envelope": written, **_forecast_values(found)}


def _forecast_values(found: fc.Forecast | None) -> dict[str, float | None]:
    return {
        "use_per_day": found.rate_per_day if found else None,
        "days_to_empty": found.days_to_empty if found else None,
        "days_to_empty_low": found.days_low if found else None,
        "days_to_empty_high": found.days_high if found else None,
    }


def _kept_columns(
    stored: JsonText, last_percent: float | None, percent: float, at: datetime, supply: Hashable
) -> dict[str, Any] | None:
    """forecast_columns from the stored text and the supply's kept fit; None: take the long way.

    A reading with no new low (most) reads the envelope's last point only and, while the
    window holds the same points, forecasts from the fit FITS kept under the text's digest: no
    decode of up to 200 points, no new list. A new low is appended to the text as json.dumps
    writes it (the same bytes as dumping the whole list), unless the envelope thins.
    """
    last = _last_point(stored)
    if last is None:
        return None  # empty, null or not as json.dumps writes it: decoded the long way
    t = at.timestamp()
    if percent - last[1] > REPLACEMENT_JUMP_POINTS:
        return None  # a new cartridge
    if t <= last[0] or percent >= last[1]:  # no new low: add_point keeps the envelope
        token = _text_digest(stored)
        known, found = FITS.forecast_kept(supply, token, t)
        if not known:
            found = FITS.forecast_and_keep(supply, token, _points(stored), t)
        return {"envelope": stored, **_forecast_values(found)}
    envelope = _points(stored)
    added = fc.add_point(envelope, t, percent)
    if len(added) == len(envelope) + 1:
        # Not thinned: the text with the point appended, as json.dumps separates items.
        text = JsonText(f"{stored[:-1]}, {json.dumps([t, percent])}]")
    else:
        text = JsonText(json.dumps(added))
    found = FITS.forecast_and_keep(supply, _text_digest(text), added, t)
    return {"envelope": text, **_forecast_values(found)}


def _last_point(text: str) -> tuple[float, float] | None:
    """Return the last point of an envelope's JSON text as json.dumps writes it, or None.

    None too for a text json.dumps would not have written so (compact separators, integers):
    a point appended to it would not be the bytes a dump of the whole envelope gives.
    """
    if not (text.startswith("[[") and text.endswith("]]")):
        return None
    try:
        tail = text[text.rindex("[", 0, len(text) - 1) : -1]
        t, p = from_json(tail)
        point = float(t), float(p)
    except (ValueError, TypeError):
        return None
    return point if json.dumps(list(point)) == tail else None


def _points(text: str) -> list[fc.Point]:
    """Return the envelope's points from its JSON text (pydantic-core: json.loads' floats, faster)."""
    return [(float(t), float(p)) for t, p in from_json(text)]


def _text_digest(text: str) -> bytes:
    """Return the BLAKE2b digest (128 bits) that stands for a stored envelope's text."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()
