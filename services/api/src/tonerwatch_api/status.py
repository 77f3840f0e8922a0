"""A printer's status from its supplies' states and alerts, and how statuses rank."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

# hrPrinterDetectedErrorState bits that stop printing: the printer needs action (red), as the
# alerter's rules say (a jam, a missing cartridge, no toner).
CRITICAL_ERRORS = frozenset({"jammed", "marker_supply_missing", "no_toner"})

# Status of a printer, most urgent first; the dashboard sorts by this rank.
STATUS_RANK = {"offline": 0, "critical": 1, "attention": 2, "pending": 3, "ok": 4, "paused": 5}


def printer_status(
    *,
    monitored: bool,
    reachable: bool | None,
    last_seen_at: datetime | None,
    supply_states: Iterable[str],
    alert_severities: Iterable[str],
    device_status: str | None,
    status_errors: Sequence[str] | None,
) -> str:
    """Return offline, critical, attention, pending (no data), ok or paused."""
    if not monitored:
        return "paused"
    if reachable is False:
        return "offline"
    states = set(supply_states)
    severities = set(alert_severities)
    if (
        "empty" in states
        or "full" in states
        or "critical" in severities
        or device_status == "down"
        or CRITICAL_ERRORS.intersection(status_errors or ())
    ):
        return "critical"
    if (
        states & {"low", "almost_full"}
        or "warning" in severities
        or status_errors
        or device_status == "warning"
    ):
        return "attention"
    if last_seen_at is None or not states:
        # Nothing reported (never answered, or answered without a single supply level): "no
        # data", never a green OK.
        return "pending"
    return "ok"


def attention_key(status: str, name: str) -> tuple[int, str]:
    """Return the sort key that puts printers needing attention first, then by name."""
    return (STATUS_RANK.get(status, 9), name.lower())
