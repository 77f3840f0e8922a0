"""REST /collectors: every site collector of the tenant, with its last-seen time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import ERRORS, Viewer, app_state, page_of
from tonerwatch_api.domain.collectors import COLLECTORS, collector_out, collectors_query
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.collectors import CollectorPage

router = APIRouter(prefix="/api/v1")

CollectorsAsked = Annotated[Page, page_of(COLLECTORS, "Collectors", limit=100, most=500)]


@router.get("/collectors", response_model=CollectorPage, tags=["sites"], responses=ERRORS)
async def list_collectors(
    request: Request,
    who: Viewer,
    page: CollectorsAsked,
    site: Annotated[str | None, Query(max_length=64, description="Only this site")] = None,
) -> CollectorPage:
    """Return the site collectors, by site unless sorted otherwise; stale ones say so."""
    st = app_state(request)
    now = datetime.now(UTC)

    def work(s: Session) -> CollectorPage:
        base = collectors_query(who.tenant_id, site_id=site)
        rows, nxt = COLLECTORS.fetch(s, base, page.order, page.cursor, page.limit)
        limit = st.settings.collector_offline_after_s
        return CollectorPage(items=[collector_out(r, now, limit) for r in rows], next_cursor=nxt)

    return await run_tx(st.engine, work)
