"""When the daily snapshot and the month-end meter reads are due (pure: the clock is passed in)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

# Month-end reads still sent this many days into the new month (the syncer was down at the turn).
MONTH_END_CATCH_UP_DAYS = 3


def snapshot_due(now_local: datetime, at: time, last_day: str | None) -> date | None:
    """Return the day whose snapshot is due now (at or after `at`, not yet sent), else None."""
    today = now_local.date()
    if now_local.time() < at or last_day == today.isoformat():
        return None
    return today


def previous_period(day: date) -> str:
    """Return the month before day's, as YYYY-MM."""
    last_of_previous = day.replace(day=1) - timedelta(days=1)
    return f"{last_of_previous.year:04d}-{last_of_previous.month:02d}"


def meter_reads_due(now_local: datetime, last_period: str | None) -> str | None:
    """Return the month (YYYY-MM) whose meter reads are due now, else None.

    Due from local midnight of the 1st (the reads are the meters at the turn), for a few days
    so an outage at the turn does not skip a month; never twice for one month.
    """
    day = now_local.date()
    if day.day > MONTH_END_CATCH_UP_DAYS:
        return None
    period = previous_period(day)
    return None if last_period is not None and last_period >= period else period
