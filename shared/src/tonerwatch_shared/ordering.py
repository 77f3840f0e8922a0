"""Per-printer order: the sequence number a printer's events carry, and the one rule for "stale".

The poller (a site collector's too) stamps every event it publishes about a printer (readings,
unreachable, reachable) with `seq`, a number that only grows for that printer: microseconds since
the epoch, or one more than the printer's last `seq` when the clock is behind it (a hybrid clock,
kept in the poller's KV next to the printer's health, so replicas and restarts continue it). Gaps
are normal; equal numbers are the same event. The alerter copies the `seq` of the event that
caused an alert onto its crossed/resolved events.

Every receiver keeps, per printer (or per alert), the position of what it last applied and drops an
event that is older (`is_stale`): a late or replayed reading never rolls levels or status back, a
late "crossed" never re-opens an alert that was resolved after it. An event without `seq` (an
older producer, the api's own events) is ordered by `occurred_at`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict

# seq fits a signed 64-bit column (and a JavaScript number: microseconds stay below 2**53 until 2255).
SEQ_MAX = 2**63 - 1


@dataclass(frozen=True)
class Position:
    """Where an event stands in its printer's order: its seq (if it has one) and its time."""

    seq: int | None
    at: datetime


class StoredPosition(BaseModel):
    """A Position as kept in KV or JSON state."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    seq: int | None = None
    at: AwareDatetime

    def position(self) -> Position:
        """Return the position."""
        return Position(self.seq, self.at)

    @classmethod
    def of(cls, position: Position) -> StoredPosition:
        """Return position for storing."""
        return cls(seq=position.seq, at=position.at)


def position_of(event: object) -> Position:
    """Return an event's position: its `seq` (None when it has none) and its `occurred_at`."""
    seq = getattr(event, "seq", None)
    at = getattr(event, "occurred_at")  # noqa: B009 - every event has one; a typo should fail
    assert isinstance(at, datetime)
    return Position(seq if isinstance(seq, int) else None, at)


def _older(a: Position, b: Position) -> bool:
    """Return whether a comes strictly before b (by seq when both have one, else by time)."""
    if a.seq is not None and b.seq is not None:
        return a.seq < b.seq
    return a.at < b.at


def is_stale(last_applied: Position | None, event: Position | object) -> bool:
    """Return whether event is older than what was last applied (then it must not overwrite it).

    Equal is not stale: a redelivery of the applied event is harmless (event ids dedupe it).
    """
    if last_applied is None:
        return False
    pos = event if isinstance(event, Position) else position_of(event)
    return _older(pos, last_applied)


def is_newer(last_applied: Position | None, event: Position | object) -> bool:
    """Return whether event comes strictly after what was last applied (None: anything is newer)."""
    if last_applied is None:
        return True
    pos = event if isinstance(event, Position) else position_of(event)
    return _older(last_applied, pos)


def newest(a: Position | None, b: Position) -> Position:
    """Return the later of two positions (b when a is None or they are equal)."""
    return a if a is not None and _older(b, a) else b


def next_seq(last: int | None, now: float | None = None) -> int:
    """Return a printer's next seq: microseconds since the epoch, or last + 1 if that is not more."""
    clock = int((time.time() if now is None else now) * 1_000_000)
    return min(SEQ_MAX, max(clock, (last or 0) + 1))


__all__ = [
    "SEQ_MAX",
    "Position",
    "StoredPosition",
    "is_newer",
    "is_stale",
    "newest",
    "next_seq",
    "position_of",
]
