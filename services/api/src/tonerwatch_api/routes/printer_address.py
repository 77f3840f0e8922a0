"""REST /printers/{id}/address: confirm or dismiss where a device claiming the printer was found."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlmodel import Session

from tonerwatch_api.deps import CONFLICT, ERRORS, Operator, PrinterId, app_state, change
from tonerwatch_api.domain.address_proposals import confirm_address, dismiss_proposal
from tonerwatch_api.domain.printers import printers_out
from tonerwatch_api.schemas.printers import PrinterOut

router = APIRouter(prefix="/api/v1")


@router.post(
    "/printers/{printer_id}/address/confirm",
    response_model=PrinterOut,
    tags=["printers"],
    responses={**ERRORS, **CONFLICT},
)
async def confirm_printer_address(
    request: Request, printer_id: PrinterId, who: Operator
) -> PrinterOut:
    """Move the printer to the address proposed for it (a device there claimed its serial or MAC); the poller is told."""
    st = app_state(request)

    def work(s: Session) -> PrinterOut:
        return printers_out(s, [confirm_address(s, who, printer_id, st.source)])[0]

    return await change(st, work)


@router.delete(
    "/printers/{printer_id}/address/proposal",
    response_model=PrinterOut,
    tags=["printers"],
    responses={**ERRORS, **CONFLICT},
)
async def dismiss_printer_address(
    request: Request, printer_id: PrinterId, who: Operator
) -> PrinterOut:
    """Dismiss the proposed address: the printer stays where it is (the claimant is not polled)."""
    st = app_state(request)

    def work(s: Session) -> PrinterOut:
        return printers_out(s, [dismiss_proposal(s, who, printer_id)])[0]

    return await change(st, work)
