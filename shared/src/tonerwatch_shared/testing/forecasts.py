"""Forecast helpers for tests: how many times a forecast was fitted."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tonerwatch_shared import forecast as fc


def count_fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Return a one-item counter of the fits fc.fit_of makes from now on (monkeypatched)."""
    fitted = [0]
    fit_of = fc.fit_of

    def counting(recent: Sequence[fc.Point]) -> fc.Fit:
        fitted[0] += 1
        return fit_of(recent)

    monkeypatch.setattr(fc, "fit_of", counting)
    return fitted
