"""Service coverage earned by continuous use (eConcierge's rule by default), per vendor, pure.

eConcierge's rule: after 30 days of continuous monitoring, the second supplies order for a
printer placed through TonerWatch makes it covered; coverage continues while orders keep coming
(it lapses when none came for `lapse_days`). Rules are data: one per vendor, a default for others.
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
            "examples": [{"monitoring_days": 30, "orders_needed": 2, "lapse_days": 180}]
        },
    )
    monitoring_days: float = Field(default=30.0, ge=0, description="Monitored this long first")
    orders_needed: int = Field(default=2, ge=1, description="Then this many orders (the 2nd)")
    lapse_days: float | None = Field(
        default=180.0, gt=0, description="Coverage lapses after this long without an order"
    )


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
                    "rule": {"monitoring_days": 30, "orders_needed": 2, "lapse_days": 180},
                }
            ]
        },
    )
    status: Literal["monitoring", "eligible", "covered", "lapsed"] = Field(
        description="monitoring: not yet the monitoring days; eligible: monitored long enough, "
        "orders still to come; covered; lapsed: no order for lapse_days"
    )
    monitored_since: dt.datetime | None
    orders_counted: int = Field(description="Orders placed after the monitoring days")
    covered_since: dt.datetime | None = None
    rule: CoverageRule


def rule_for(vendor: str | None, rules: Mapping[str, CoverageRule]) -> CoverageRule:
    """Return the rule of vendor (case-insensitive), else rules['*'], else eConcierge's."""
    by_name = {k.casefold(): v for k, v in rules.items()}
    return by_name.get((vendor or "").casefold()) or by_name.get("*") or ECONCIERGE


def evaluate(
    rule: CoverageRule,
    monitored_since: dt.datetime | None,
    orders_at: Sequence[dt.datetime],
    now: dt.datetime,
) -> Coverage:
    """Return a printer's coverage from when monitoring began and when its orders were placed."""
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


__all__ = ["ECONCIERGE", "Coverage", "CoverageRule", "evaluate", "rule_for"]
