"""Which printers a replica polls: partitions of the fleet, each leased through one JetStream job.

A job per poll cost nats-server a redelivery and a nak for every poll (0.5-0.8 ms: bench/E2E.md,
"The floor"). Instead the fleet is cut into a fixed number of partitions (a printer's partition:
a hash of its KV key), and the work-queue stream holds one job per partition. A replica holds
the jobs it received unacknowledged, saying "in progress" well inside the ack wait, and polls
those partitions' printers on their slots from a local timer (timers.py). Its jobs go back at once
when it stops (nak), after the ack wait when it dies.

Replicas announce themselves in a small KV bucket (a Beat per replica, rewritten every round):
each takes at most its share of a consumer's partitions (ceil(partitions / live replicas)) and
hands back what it holds beyond, so a replica that starts gets work from those running. A Beat
also names the partitions its replica holds and since when: a replica that missed its ack wait
(stalled) sees a partition it thinks it holds taken later by another, and lets it go.

Pure functions and records: times are Unix seconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

# Partitions per consumer (a site's, or the whole fleet's): more than replicas ever share one.
DEFAULT_PARTITIONS = 16


def partition_of(key: str, partitions: int) -> int:
    """Return the partition of the printer with this KV key (stable: a hash, not the phase's bytes)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[8:16], "big") % partitions


def share(partitions: int, replicas: int) -> int:
    """Return how many partitions one of `replicas` live replicas may hold."""
    return -(-partitions // max(1, replicas))


@dataclass(frozen=True)
class Beat:
    """One replica's heartbeat: when it was written, what it serves and which partitions it holds."""

    replica: str
    at: float
    durables: tuple[str, ...]
    # Partition subject -> when this replica received it.
    leases: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "replica": self.replica,
                "at": self.at,
                "durables": list(self.durables),
                "leases": self.leases,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Beat | None:
        """Return the beat written as data (None: unreadable)."""
        try:
            raw = json.loads(data)
            return cls(
                replica=str(raw["replica"]),
                at=float(raw["at"]),
                durables=tuple(str(d) for d in raw["durables"]),
                leases={str(k): float(v) for k, v in raw.get("leases", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def live(beats: Iterable[Beat], now: float, max_age_s: float) -> list[Beat]:
    """Return the beats written within max_age_s (their replicas are alive)."""
    return [b for b in beats if now - b.at <= max_age_s]


def replicas_on(beats: Iterable[Beat], durable: str) -> int:
    """Return how many of beats' replicas take jobs from durable."""
    return sum(1 for b in beats if durable in b.durables)


def taken_by_others(held: dict[str, float], others: Iterable[Beat]) -> set[str]:
    """Return the partitions held here that another replica received later (this one's lapsed)."""
    lost: set[str] = set()
    for beat in others:
        for subject, taken_at in beat.leases.items():
            if subject in held and taken_at > held[subject]:
                lost.add(subject)
    return lost


__all__ = [
    "DEFAULT_PARTITIONS",
    "Beat",
    "live",
    "partition_of",
    "replicas_on",
    "share",
    "taken_by_others",
]
