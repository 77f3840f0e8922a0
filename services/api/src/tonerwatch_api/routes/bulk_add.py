"""REST /printers/bulk: add many printers from a CSV or a list of addresses."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlmodel import Session

from tonerwatch_api.deps import ERRORS, Operator, app_state, change
from tonerwatch_api.domain.bulk_add import bulk_add
from tonerwatch_api.schemas.bulk_add import BulkAddIn, BulkAddOut

router = APIRouter(prefix="/api/v1")


@router.post("/printers/bulk", response_model=BulkAddOut, tags=["printers"], responses=ERRORS)
async def add_printers_in_bulk(request: Request, body: BulkAddIn, who: Operator) -> BulkAddOut:
    """Add printers from a CSV (header row naming an `address` column) or one address per line.

    Every line that is not blank gets a result: added, known (the site has a printer at that
    address and port already, or an earlier line named it) or invalid, with the reason. The
    printers added are announced to the poller (PrinterConfigured) like one added alone.
    """
    st = app_state(request)

    def work(s: Session) -> BulkAddOut:
        return bulk_add(
            s, who, body, st.settings.default_site, st.source, st.settings.default_interval_s
        )

    return await change(st, work)
