"""Per-printer order in the read models (issue 16): what each last applied, and what is stale.

The position (tonerwatch_shared.ordering: the printer's seq, else occurred_at) of the newest event
applied is kept with the state it set: printers.status_seq/status_at for readings and
(un)reachable, supply_states.seq (with updated_at) per supply, alert_order per alert id. An older
event does not overwrite that state (readings still go into the history).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from tonerwatch_api.db.models import AlertOrder, Printer
from tonerwatch_shared.events import AlertResolved, ThresholdCrossed
from tonerwatch_shared.ordering import Position, is_stale, position_of


def status_position(printer: Printer) -> Position | None:
    """Return the position of the newest reading or (un)reachable applied to printer's status.

    Rows from before positions were kept fall back to last_seen_at (the newest reading's time).
    """
    at = printer.status_at or printer.last_seen_at
    return None if at is None else Position(printer.status_seq, at)


def status_applied(printer: Printer, position: Position) -> dict[str, Any]:
    """Return the columns recording that the event at position set printer's status.

    An event without seq (an older poller) keeps the last seq: the sequence goes on ordering the
    events that carry one.
    """
    seq = position.seq if position.seq is not None else printer.status_seq
    return {"status_seq": seq, "status_at": position.at}


def mark_status(printer: Printer, position: Position) -> bool:
    """Record position as the newest applied to printer's status and return True, or return False
    (changing nothing) when it is stale."""
    if is_stale(status_position(printer), position):
        return False
    for name, value in status_applied(printer, position).items():
        setattr(printer, name, value)
    return True


def reading_status(printer: Printer, position: Position) -> dict[str, Any]:
    """Return the status columns a reading at position sets: the printer answered, if nothing
    newer (an unreachable after it) told the status already; else none."""
    if is_stale(status_position(printer), position):
        return {}
    return {
        **status_applied(printer, position),
        "reachable": True,
        "last_error": None,
        "poll_failure": None,
    }


def reading_position(printer: Printer) -> Position | None:
    """Return the position of the newest reading applied to printer (None: none yet)."""
    return (
        None if printer.last_seen_at is None else Position(printer.read_seq, printer.last_seen_at)
    )


def reading_applied(printer: Printer, position: Position) -> dict[str, Any] | None:
    """Return the columns recording a reading at position as the newest, or None if it is stale.

    Readings and (un)reachable come through different consumers: a reading overtaken by an
    unreachable still sets what it says of the printer (trays, counters) if no newer reading did.
    """
    if is_stale(reading_position(printer), position):
        return None
    seq = position.seq if position.seq is not None else printer.read_seq
    return {"read_seq": seq, "last_seen_at": position.at}


def stale_alert_event(session: Session, event: ThresholdCrossed | AlertResolved) -> bool:
    """Return whether event is older than the crossed/resolved last applied for its alert; if
    not, record it as the newest (kept even when it changes no row: a "resolved" that arrives
    before its "crossed" still stops that "crossed" from opening the alert)."""
    position = position_of(event)
    order = session.get(AlertOrder, event.alert_id, with_for_update=True)
    if order is not None and is_stale(Position(order.seq, order.at), position):
        return True
    if order is None:
        order = AlertOrder(alert_id=event.alert_id, at=position.at)
    order.seq = position.seq if position.seq is not None else order.seq
    order.at = position.at
    session.add(order)
    return False
