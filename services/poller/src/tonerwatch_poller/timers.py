"""When each printer of the partitions a replica holds is next polled: a heap of due times.

One timer per printer, keyed by its KV key; setting a timer again replaces it (the heap keeps
the old entry, skipped when it comes up). Slots lie on a 1 s grid (schedule.slot_offset), so
printers come due in groups and one wakeup of the replica starts several polls.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class Timers:
    """Each printer's next due time (Unix seconds), and the earliest of them at hand."""

    due: dict[str, float] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)

    def set(self, key: str, at: float) -> None:
        """Make key due at `at` (replacing its timer, if any)."""
        self.due[key] = at
        heapq.heappush(self._heap, (at, key))
        if len(self._heap) > 2 * len(self.due) + 64:
            self._compact()

    def cancel(self, key: str) -> None:
        """Forget key's timer."""
        self.due.pop(key, None)

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

    def next_at(self) -> float | None:
        """Return the earliest due time (None: no timer)."""
        heap = self._heap
        while heap and self.due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # replaced or cancelled
        return heap[0][0] if heap else None

    def _compact(self) -> None:
        self._heap = [(at, key) for key, at in self.due.items()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self.due)

    def __contains__(self, key: object) -> bool:
        return key in self.due


__all__ = ["Timers"]
