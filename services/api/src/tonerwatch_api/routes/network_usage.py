"""REST /network/usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from tonerwatch_api.db.tx import run_read_tx
from tonerwatch_api.deps import ERRORS, Viewer, app_state
from tonerwatch_api.domain.network_usage import usage
from tonerwatch_api.schemas.network_usage import UsageOut

router = APIRouter(prefix="/api/v1")


@router.get("/network/usage", response_model=UsageOut, tags=["network"], responses=ERRORS)
async def network_usage(
    request: Request,
    who: Viewer,
    days: Annotated[int, Query(ge=1, le=366, description="Days up to today (UTC)")] = 30,
    site: Annotated[str | None, Query(max_length=64, description="Only this site")] = None,
) -> UsageOut:
    """Return measured bytes on the wire per day, site and printer: polling, discovery, sync."""
    return await run_read_tx(
        app_state(request).engine, lambda s: usage(s, who.tenant_id, days, site_id=site)
    )
