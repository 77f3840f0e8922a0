"""When each printer is polled: its own slot in the interval, kept across hand-overs and restarts.

A replica polls the printers of the partitions it holds from a local timer; which replica that is
changes (one stops, dies, or another starts), so the next poll is decided from what every replica
can read: the printer's last poll time (in KV) and its slot. Each printer has a fixed phase in
its interval (from a hash of its id, on a 1 s grid so polls come due in small groups), so a
fleet's polls spread evenly over the interval and stay spread: a replica that takes a printer
over waits for its next slot rather than polling at once. A new printer (never polled) has no
slot to wait for: it is polled as soon as the replica has a slot free (timers.Timers.queue), so
one added by hand shows its levels within seconds and an imported fleet as fast as the poll
concurrency allows, and from its second poll on it keeps its slot.

Pure functions of (now, last poll, interval, printer id): times are Unix seconds.
"""

from __future__ import annotations

import functools
import hashlib

# Overdue printers (a partition taken from a replica that died) are polled within this window.
FIRST_POLL_WINDOW_S = 10.0
# Slots lie on this grid (at most a tenth of the interval): see slot_offset.
SLOT_GRID_S = 1.0
# Phases remembered (a SHA-256 each otherwise, twice a poll): a fleet of this size, about 1.5 MB.
PHASES_KEPT = 16384


@functools.lru_cache(maxsize=PHASES_KEPT)
def phase(printer_id: str) -> float:
    """Return the printer's fixed place in any interval, as a fraction in [0, 1)."""
    digest = hashlib.sha256(printer_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def tolerance(interval_s: float) -> float:
    """Return how early a job may arrive and still be polled (5% of the interval, 1-15 s)."""
    return min(15.0, max(1.0, interval_s * 0.05))


def slot_offset(interval_s: float, printer_id: str) -> float:
    """Return where the printer's slots lie in its interval: its phase, on a grid of SLOT_GRID_S.

    Printers whose slots share a grid point come due together, so the server hands their jobs
    out in one delivery and their readings and naks travel together: a wakeup of the poller and
    of nats-server serves several polls instead of one (issue 15; at 30 polls/s, CPU per poll
    fell by about a third with a 1 s grid). A printer polls at most one grid step earlier in its
    interval than its phase alone would say; its polls stay exactly one interval apart.
    """
    grid = min(SLOT_GRID_S, interval_s / 10)
    return float(phase(printer_id) * interval_s // grid * grid)


def next_slot(after: float, interval_s: float, printer_id: str) -> float:
    """Return the first time at or after `after` that is the printer's slot in its interval."""
    offset = slot_offset(interval_s, printer_id)
    cycles = -(-(after - offset) // interval_s)  # ceil
    return offset + cycles * interval_s


def due_after_poll(polled_at: float, interval_s: float, printer_id: str) -> float:
    """Return when the next poll is due: the printer's first slot at least half an interval on.

    Between 0.5 and 1.5 intervals after a first or off-slot poll, then exactly one interval.
    """
    return next_slot(polled_at + interval_s / 2, interval_s, printer_id)


def first_due(scheduled_at: float, interval_s: float, printer_id: str) -> float:
    """Return when an overdue printer's poll is due: spread over a short window after scheduling."""
    return scheduled_at + phase(printer_id) * min(interval_s, FIRST_POLL_WINDOW_S)


def overdue_after(interval_s: float, ack_wait_s: float) -> float:
    """Return how long after its last poll a printer counts as overdue.

    The longest regular gap is 1.5 intervals; a job held by a replica that died comes back after
    ack_wait. Anything later means nobody is polling the printer.
    """
    return 1.5 * interval_s + ack_wait_s


# A job arriving this share of an interval after the printer's slot is that slot's poll, late.
LATE_SHARE = 0.25


def assumed_last_poll(
    now: float, stored: float | None, refresh_s: float | None, interval_s: float, printer_id: str
) -> float | None:
    """Return the last poll time to decide from when the stored one may lag by up to refresh_s.

    A poller rewrites a healthy printer's last poll time only every refresh_s (not every poll:
    one NATS round trip less). While that record is current, the printer was polled on its
    slots: a job arriving shortly after a slot is that slot's poll (late), one arriving later
    finds that slot polled and waits for the next. A record past its refresh (polls stopped) is
    taken as it is: the printer is overdue.
    """
    if stored is None or not refresh_s or now - stored > refresh_s + 1.5 * interval_s:
        return stored
    previous = next_slot(now, interval_s, printer_id) - interval_s
    assumed = previous - interval_s if now - previous <= LATE_SHARE * interval_s else previous
    return max(stored, assumed)


def due_on_taking(
    now: float,
    *,
    last_poll_at: float | None,
    refresh_s: float | None,
    exact: bool,
    interval_s: float,
    printer_id: str,
) -> float | None:
    """Return when a printer is next due once a replica holds it (took its partition, or it was added).

    From its last poll (exact: this replica's own, else the stored one, which may lag: see
    assumed_last_poll): its next slot. Overdue (its holder died, polls stopped): soon, within the
    first-poll window, spread by its phase so a partition's printers are not polled in one
    instant. Never polled: None, as soon as a slot is free (its first poll sets its slot).
    """
    last = last_poll_at
    if not exact:
        last = assumed_last_poll(now, last_poll_at, refresh_s, interval_s, printer_id)
    if last is None:
        return None
    due = due_after_poll(last, interval_s, printer_id)
    return due if due >= now else first_due(now, interval_s, printer_id)


def polled_since(
    now: float, last_poll_at: float | None, interval_s: float, printer_id: str
) -> float | None:
    """Return the printer's next slot if a poll since its timer was set (one asked for) makes the
    timer's poll early, else None (poll now)."""
    if last_poll_at is None:
        return None
    due = due_after_poll(last_poll_at, interval_s, printer_id)
    return due if due - now > tolerance(interval_s) else None


__all__ = [
    "FIRST_POLL_WINDOW_S",
    "LATE_SHARE",
    "assumed_last_poll",
    "due_after_poll",
    "due_on_taking",
    "first_due",
    "next_slot",
    "overdue_after",
    "phase",
    "polled_since",
    "tolerance",
]
