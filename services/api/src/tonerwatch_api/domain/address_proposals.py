"""A device found elsewhere claiming a printer's identity: a person confirms the move or dismisses it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Printer
from tonerwatch_api.domain.access import Principal, audit
from tonerwatch_api.domain.errors import Conflict
from tonerwatch_api.domain.printers import get_printer
from tonerwatch_api.projections.outbox import add_to_outbox
from tonerwatch_api.projections.printers import configured_event
from tonerwatch_api.projections.status import refresh_status


def confirm_address(session: Session, who: Principal, printer_id: str, source: str) -> Printer:
    """Move the printer to its proposed address and tell the poller; Conflict when none is proposed."""
    printer = get_printer(session, who.tenant_id, printer_id)
    if printer.proposed_address is None or printer.proposed_port is None:
        raise Conflict(f"printer {printer.id!r} has no proposed address")
    address, port = printer.proposed_address, printer.proposed_port
    clash = session.exec(
        select(Printer).where(
            Printer.site_id == printer.site_id,
            Printer.address == address,
            Printer.port == port,
            Printer.id != printer.id,
            col(Printer.removed_at).is_(None),
        )
    ).first()
    if clash is not None:
        raise Conflict(f"printer {clash.id!r} already has address {address}:{port}")
    before = (printer.address, printer.port)
    printer.address, printer.port = address, port
    printer.proposed_address = printer.proposed_port = printer.proposed_at = None
    # A person chose this address: from now on only a person moves it.
    printer.person_edited = True
    printer.reachable = None
    printer.updated_at = datetime.now(UTC)
    if printer.monitored:
        event = configured_event(printer, source=source, site_id=printer.site_id)
        printer.config_at = event.occurred_at
        add_to_outbox(session, event)
    session.add(printer)
    refresh_status(session, printer)
    audit(
        session,
        who,
        "printer.address.confirm",
        printer.id,
        before=f"{before[0]}:{before[1]}",
        after=f"{address}:{port}",
    )
    return printer


def dismiss_proposal(session: Session, who: Principal, printer_id: str) -> Printer:
    """Forget the proposed address (the printer stays where it is); Conflict when none is proposed."""
    printer = get_printer(session, who.tenant_id, printer_id)
    if printer.proposed_address is None:
        raise Conflict(f"printer {printer.id!r} has no proposed address")
    dismissed = f"{printer.proposed_address}:{printer.proposed_port}"
    printer.proposed_address = printer.proposed_port = printer.proposed_at = None
    printer.updated_at = datetime.now(UTC)
    session.add(printer)
    audit(session, who, "printer.address.dismiss", printer.id, dismissed=dismissed)
    return printer
