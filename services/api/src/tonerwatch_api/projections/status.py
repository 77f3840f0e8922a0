"""A printer's stored status, refreshed from its supplies' states and open alerts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Alert, Printer, SupplyStateRow
from tonerwatch_api.status import printer_status


def refresh_status(session: Session, printer: Printer, states: Sequence[str] | None = None) -> None:
    """Recompute printer.status (status.printer_status) from its supplies and open alerts.

    states: the printer's supply states when the caller has them all at hand (saves a query).
    """
    if states is None:
        states = session.exec(
            select(SupplyStateRow.state).where(SupplyStateRow.printer_id == printer.id)
        ).all()
    severities = session.exec(
        select(Alert.severity).where(
            Alert.printer_id == printer.id, col(Alert.resolved_at).is_(None)
        )
    ).all()
    printer.status = status_of(printer, states, severities)
    session.add(printer)


def status_of(printer: Printer, states: Sequence[str], severities: Sequence[str]) -> str:
    return printer_status(
        monitored=printer.monitored,
        reachable=printer.reachable,
        last_seen_at=printer.last_seen_at,
        supply_states=states,
        alert_severities=severities,
        device_status=printer.device_status,
        status_errors=printer.status_errors,
    )


def refresh_statuses_batch(session: Session, after: str, batch: int) -> str | None:
    """Recompute the status of up to batch printers with id > after; return the last id, or None."""
    printers = list(
        session.exec(
            select(Printer).where(col(Printer.id) > after).order_by(col(Printer.id)).limit(batch)
        ).all()
    )
    if not printers:
        return None
    ids = [p.id for p in printers]
    states: dict[str, list[str]] = {i: [] for i in ids}
    severities: dict[str, list[str]] = {i: [] for i in ids}
    for pid, state in session.exec(
        select(SupplyStateRow.printer_id, SupplyStateRow.state).where(
            col(SupplyStateRow.printer_id).in_(ids)
        )
    ).all():
        states[pid].append(state)
    for alerted, severity in session.exec(
        select(Alert.printer_id, Alert.severity).where(
            col(Alert.printer_id).in_(ids), col(Alert.resolved_at).is_(None)
        )
    ).all():
        if alerted is not None:  # always, by the where; site-wide alerts have no printer
            severities[alerted].append(severity)
    for p in printers:
        status = status_of(p, states[p.id], severities[p.id])
        if status != p.status:
            p.status = status
            session.add(p)
    return printers[-1].id
