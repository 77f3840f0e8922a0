"""When each printer of the partitions a replica holds is next polled: a heap of due times, and a
queue of printers never polled, served as soon as a slot is free.

One timer per printer, keyed by its KV key; setting a timer again replaces it (the heap keeps
the old entry, skipped when it comes up). Slots lie on a 1 s grid (schedule.slot_offset), so
printers come due in groups and one wakeup of the replica starts several polls.

A printer never polled has no slot to keep yet: it waits in `waiting` (oldest first, by when it
was configured) for a free slot of the replica rather than for a time, and takes its slot on the
grid from its first poll on (schedule.due_after_poll).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class Timers:
    """Each printer's next due time (Unix seconds), and the printers waiting for their first poll."""

    due: dict[str, float] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)
    # Printers never polled, by KV key: since when they wait (their configuration's time).
    waiting: dict[str, float] = field(default_factory=dict)
    _queue: list[tuple[float, str]] = field(default_factory=list)

    def set(self, key: str, at: float) -> None:
        """Make key due at `at` (replacing its timer or its place in the queue, if any)."""
        self.waiting.pop(key, None)
        self.due[key] = at
        heapq.heappush(self._heap, (at, key))
        if len(self._heap) > 2 * len(self.due) + 64:
            self._heap = _compacted(self.due)

    def queue(self, key: str, since: float) -> None:
        """Make key wait for a free slot, after those waiting since before `since` (a key already
        waiting keeps its place; a timer of it is cancelled)."""
        if key in self.waiting:
            return
        self.due.pop(key, None)
        self.waiting[key] = since
        heapq.heappush(self._queue, (since, key))
        if len(self._queue) > 2 * len(self.waiting) + 64:
            self._queue = _compacted(self.waiting)

    def cancel(self, key: str) -> None:
        """Forget key's timer or its place in the queue."""
        self.due.pop(key, None)
        self.waiting.pop(key, None)

    def pop_due(self, now: float) -> list[str]:
        """Return the keys due at or before now, forgetting their timers."""
        out: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            if self.due.get(key) == at:
                del self.due[key]
                out.append(key)
        return out

    def pop_waiting(self) -> str | None:
        """Return the key waiting longest (None: none waits), taking it off the queue."""
        queue = self._queue
        while queue:
            since, key = heapq.heappop(queue)
            if self.waiting.get(key) == since:
                del self.waiting[key]
                return key
        return None

    def next_at(self) -> float | None:
        """Return the earliest due time (None: no timer)."""
        heap = self._heap
        while heap and self.due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # replaced or cancelled
        return heap[0][0] if heap else None

    def __len__(self) -> int:
        return len(self.due) + len(self.waiting)

    def __contains__(self, key: object) -> bool:
        return key in self.due or key in self.waiting


def _compacted(entries: dict[str, float]) -> list[tuple[float, str]]:
    heap = [(at, key) for key, at in entries.items()]
    heapq.heapify(heap)
    return heap


__all__ = ["Timers"]
