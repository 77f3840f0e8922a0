"""Stream configs merged, never downgraded: what TonerWatch needs, on top of what an operator set.

At every start each replica of each service declares the streams it needs. An operator may have
raised a stream since (R3 in a cluster, a bigger byte limit, a longer age): the merge keeps the
larger of each limit (unlimited counts as largest), adds subjects we need, and never changes
retention, discard or storage — a difference there is reported, not "fixed".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from nats.js.api import StreamConfig

# Limits where 0 or a negative number (nats-server's -1) or None means "no limit".
_LIMITS = ("max_bytes", "max_msgs", "max_age")
# Policies an operator may have chosen on purpose: reported when they differ, left as they are.
_POLICIES = ("retention", "discard", "storage")


@dataclass(frozen=True)
class StreamMerge:
    """The config to apply (None: the stream already has all we need) and what differs but stays."""

    config: StreamConfig | None
    kept: tuple[str, ...]


def _limit(value: float | None) -> float:
    """Return a limit as a number where unlimited is infinity."""
    if value is None or value <= 0:
        return math.inf
    return float(value)


def larger_limit(current: float | None, wanted: float | None) -> float | None:
    """Return the larger of two limits (unlimited is largest); wanted None means no requirement."""
    if wanted is None:
        return current
    return current if _limit(current) >= _limit(wanted) else wanted


def merge_stream_config(existing: StreamConfig, wanted: StreamConfig) -> StreamMerge:
    """Return existing raised to at least wanted (replicas, limits, subjects), never lowered."""
    changes: dict[str, object] = {}
    replicas = max(existing.num_replicas or 1, wanted.num_replicas or 1)
    if replicas != (existing.num_replicas or 1):
        changes["num_replicas"] = replicas
    for name in _LIMITS:
        current, need = getattr(existing, name), getattr(wanted, name)
        merged = larger_limit(current, need)
        if _limit(merged) != _limit(current):
            changes[name] = merged
    if wanted.duplicate_window and (existing.duplicate_window or 0) < wanted.duplicate_window:
        changes["duplicate_window"] = wanted.duplicate_window
    missing = [s for s in wanted.subjects or [] if s not in (existing.subjects or [])]
    if missing:
        changes["subjects"] = [*(existing.subjects or []), *missing]
    kept = tuple(
        f"{name} is {_show(getattr(existing, name))}, TonerWatch would use {_show(getattr(wanted, name))}"
        for name in _POLICIES
        if getattr(wanted, name) is not None and getattr(existing, name) != getattr(wanted, name)
    )
    if not changes:
        return StreamMerge(None, kept)
    return StreamMerge(dataclasses.replace(existing, **changes), kept)  # type: ignore[arg-type]


def _show(value: object) -> str:
    return str(getattr(value, "value", value))


__all__ = ["StreamMerge", "larger_limit", "merge_stream_config"]
