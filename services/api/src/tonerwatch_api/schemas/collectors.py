"""Site collector bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_COLLECTOR: dict[str, Any] = {
    "id": "collector-acme-hq",
    "site_id": "acme-hq",
    "version": "0.1.0",
    "printers": 42,
    "queue_depth": 0,
    "started_at": "2025-03-14T06:00:00+00:00",
    "last_seen": "2025-03-14T09:29:30+00:00",
    "offline_since": None,
    "stale": False,
}


class CollectorOut(BaseModel):
    """A site collector as the hub last heard it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_COLLECTOR]})
    id: str
    site_id: str
    version: str
    printers: int = Field(description="Printers it polls at its site")
    queue_depth: int | None = Field(
        description="Poll partitions at the site that no poller holds (0: every printer has a poller)"
    )
    started_at: datetime
    last_seen: datetime = Field(description="occurred_at of its newest status")
    offline_since: datetime | None = Field(
        description="When the alerter raised the site-offline alert (None: not offline)"
    )
    stale: bool = Field(
        description="Offline, or not heard for longer than TONERWATCH_COLLECTOR_OFFLINE_AFTER_S"
    )


class CollectorPage(BaseModel):
    """One page of collectors; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [_COLLECTOR],
                    "next_cursor": "eyJzIjoic2l0ZV9pZCIsInYiOlsiYWNtZS1ocSIsImNvbGxlY3Rvci1hY21lLWhxIl19",
                }
            ]
        }
    )
    items: list[CollectorOut]
    next_cursor: str | None
