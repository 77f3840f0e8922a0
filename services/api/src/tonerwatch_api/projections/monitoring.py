"""Continuous monitoring of a printer (service coverage): where its current run of readings starts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from tonerwatch_api.db.models import Printer
from tonerwatch_shared.coverage import CoverageRule, extend_run, rule_for


def monitoring_run(
    printer: Printer, at: datetime, rules: Mapping[str, CoverageRule]
) -> datetime | None:
    """Return the start of the printer's continuous monitoring after a reading at `at`.

    Called before the reading updates last_seen_at; the vendor's rule says the longest gap.
    """
    gap = rule_for(printer.vendor, rules).max_gap
    return extend_run(printer.monitoring_since, printer.last_seen_at, at, gap)
