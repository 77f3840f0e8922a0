"""Dead letter bodies: events a consumer set aside, and the request to replay one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_LETTER: dict[str, Any] = {
    "id": 118,
    "consumer": "alerter-mail",
    "subject": "tw.acme-hq.alert.crossed.p-3f2a9c01de",
    "site_id": "acme-hq",
    "event_type": "tonerwatch.threshold_crossed.v1",
    "event_id": "0b7d3c1e-5a2f-4f8e-9c61-2d4b8a7e9f10",
    "error": "Poison('550 5.1.1 mailbox unavailable')",
    "deliveries": 1,
    "dead_at": "2025-03-14T09:31:02+00:00",
}


class DeadLetterOut(BaseModel):
    """An event its consumer could not handle and set aside; replay it once the cause is fixed."""

    model_config = ConfigDict(json_schema_extra={"examples": [_LETTER]})
    id: int = Field(description="The dead letter's id (its sequence in the dead-letter stream)")
    consumer: str = Field(description="The consumer (durable) that set it aside, and replays it")
    subject: str = Field(description="The NATS subject the event was published on")
    site_id: str | None = Field(description="The event's site (None: unreadable, unknown)")
    event_type: str | None = Field(description="Versioned event type (None: unreadable)")
    event_id: str | None
    error: str = Field(description="Why it was set aside (the handler's error, shortened)")
    deliveries: int = Field(description="Deliveries before it was set aside")
    dead_at: datetime


class DeadLetterList(BaseModel):
    """The newest dead letters the caller may see, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_LETTER]}]})
    items: list[DeadLetterOut]


class ReplayOut(BaseModel):
    """A replay was asked for: the owning consumer handles the event again and, once it is
    taken, removes the dead letter (if it fails again, the dead letter stays)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"id": 118, "consumer": "alerter-mail", "replay_requested": True}]
        }
    )
    id: int
    consumer: str
    replay_requested: bool
