"""Service coverage earned by continuous use (eConcierge's rule by default), per vendor, pure.

eConcierge's rule: after 30 days of continuous monitoring, the second supplies order for a
printer placed through TonerWatch makes it covered; coverage continues while orders keep coming
(it lapses when none came for `lapse_days`). Rules are data: one per vendor, a default for others.

Continuous means no gap between a printer's readings longer than the rule's `max_gap_days`: a
longer silence ends the run, and monitoring counts again from the next reading (`extend_run`,
kept per printer by the api's projections and the syncer's fleet bucket, so no history is needed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CoverageRule(BaseModel):
    """When a printer earns service coverage from the orders placed through TonerWatch."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"monitoring_days": 30, "orders_needed": 2, "lapse_days": 180, "max_gap_days": 7}
            ]
        },
    )
    monitoring_days: float = Field(default=30.0, ge=0, description="Monitored this long first")
    orders_needed: int = Field(default=2, ge=1, description="Then this many orders (the 2nd)")
    lapse_days: float | None = Field(
        default=180.0, gt=0, description="Coverage lapses after this long without an order"
    )
    max_gap_days: float = Field(
        default=7.0,
        gt=0,
        description="Readings further apart than this break continuous monitoring (it restarts)",
    )

    @property
    def max_gap(self) -> dt.timedelta:
        """Return max_gap_days as a timedelta."""
        return dt.timedelta(days=self.max_gap_days)


ECONCIERGE = CoverageRule()


class Coverage(BaseModel):
    """A printer's coverage as our records show it."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "status": "covered",
                    "monitored_since": "2026-10-01T09:00:00Z",
                    "orders_counted": 2,
                    "covered_since": "2026-11-10T10:12:00Z",
                    "rule": {
                        "monitoring_days": 30,
                        "orders_needed": 2,
                        "lapse_days": 180,
                        "max_gap_days": 7,
                    },
                }
            ]
        },
    )
    status: Literal["monitoring", "eligible", "covered", "lapsed"] = Field(
        description="monitoring: not yet the monitoring days of continuous monitoring (or its "
        "readings stopped for longer than max_gap_days); eligible: monitored long enough, orders "
        "still to come; covered; lapsed: no order for lapse_days"
    )
    monitored_since: dt.datetime | None = Field(
        description="Start of the current continuous monitoring (no gap over max_gap_days)"
    )
    orders_counted: int = Field(description="Orders placed after the monitoring days")
    covered_since: dt.datetime | None = None
    rule: CoverageRule


def rule_for(vendor: str | None, rules: Mapping[str, CoverageRule]) -> CoverageRule:
    """Return the rule of vendor (case-insensitive), else rules['*'], else eConcierge's."""
    by_name = {k.casefold(): v for k, v in rules.items()}
    return by_name.get((vendor or "").casefold()) or by_name.get("*") or ECONCIERGE


def extend_run(
    run_since: dt.datetime | None,
    last_seen: dt.datetime | None,
    at: dt.datetime,
    max_gap: dt.timedelta,
) -> dt.datetime | None:
    """Return where the printer's continuous monitoring starts after a reading at `at`.

    run_since and last_seen are the run's start and the newest reading so far (None: none yet).
    A reading more than max_gap after the newest one starts a new run. An older (late) one
    inside the run changes nothing; one before the run's start but within max_gap of it (history
    sent late, newest first) extends the run back to it.
    """
    if last_seen is None or run_since is None:
        return at if last_seen is None else min(last_seen, at)
    if at < run_since:
        return at if run_since - at <= max_gap else run_since
    if at <= last_seen:
        return run_since
    return at if at - last_seen > max_gap else run_since


def evaluate(
    rule: CoverageRule,
    monitored_since: dt.datetime | None,
    orders_at: Sequence[dt.datetime],
    now: dt.datetime,
    last_seen: dt.datetime | None = None,
) -> Coverage:
    """Return a printer's coverage from its continuous monitoring and when its orders were placed.

    monitored_since: the start of the current run (extend_run); last_seen: its newest reading,
    when known: silent for longer than the rule's gap, the run is over (status monitoring).
    """
    if last_seen is not None and now - last_seen > rule.max_gap:
        monitored_since = None
    if monitored_since is None:
        return Coverage(status="monitoring", monitored_since=None, orders_counted=0, rule=rule)
    qualifies = monitored_since + dt.timedelta(days=rule.monitoring_days)
    counted = sorted(t for t in orders_at if t >= qualifies)
    if now < qualifies:
        status: Literal["monitoring", "eligible", "covered", "lapsed"] = "monitoring"
        return Coverage(status=status, monitored_since=monitored_since, orders_counted=0, rule=rule)
    if len(counted) < rule.orders_needed:
        return Coverage(
            status="eligible",
            monitored_since=monitored_since,
            orders_counted=len(counted),
            rule=rule,
        )
    since = counted[rule.orders_needed - 1]
    lapsed = rule.lapse_days is not None and now - counted[-1] > dt.timedelta(days=rule.lapse_days)
    return Coverage(
        status="lapsed" if lapsed else "covered",
        monitored_since=monitored_since,
        orders_counted=len(counted),
        covered_since=since,
        rule=rule,
    )


__all__ = ["ECONCIERGE", "Coverage", "CoverageRule", "evaluate", "extend_run", "rule_for"]
