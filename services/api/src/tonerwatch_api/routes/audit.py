"""REST /audit: who changed what."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import ERRORS, Admin, app_state, aware, page_of
from tonerwatch_api.domain.audit import AUDIT, audit_page
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.common import AuditPage

router = APIRouter(prefix="/api/v1")


AuditAsked = Annotated[Page, page_of(AUDIT, "Entries", limit=200, most=1000)]


@router.get("/audit", response_model=AuditPage, tags=["users"], responses=ERRORS)
async def list_audit(
    request: Request,
    who: Admin,
    page: AuditAsked,
    action: Annotated[
        str | None,
        Query(max_length=64, description="An action ('printer.update') or a prefix ('printer.')"),
    ] = None,
    username: Annotated[
        str | None, Query(max_length=100, description="Who made the change")
    ] = None,
    target: Annotated[str | None, Query(max_length=255, description="What was changed")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; from this time")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; before this time")] = None,
) -> AuditPage:
    """Return who changed what in the caller's tenant, newest first unless sorted otherwise."""
    found_since = aware(since) if since else None
    found_until = aware(until) if until else None
    return await run_tx(
        app_state(request).engine,
        lambda s: audit_page(
            s,
            who.tenant_id,
            page,
            action=action,
            username=username,
            target=target,
            since=found_since,
            until=found_until,
        ),
    )
