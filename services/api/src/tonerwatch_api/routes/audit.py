"""REST /audit: who changed what."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import AuditEntry
from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import (
    ERRORS,
    Admin,
    app_state,
    page_of,
)
from tonerwatch_api.listing import Listing, Page, field
from tonerwatch_api.routes.printers import _aware
from tonerwatch_api.schemas.common import (
    AuditOut,
    AuditPage,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")


# --- audit log -----------------------------------------------------------------------------------

AUDIT = Listing(
    fields={
        "id": field(col(AuditEntry.id), "int"),
        "at": field(col(AuditEntry.at), "datetime"),
        "action": field(col(AuditEntry.action), "str"),
        "username": field(col(AuditEntry.username), "str"),
        "target": field(col(AuditEntry.target), "str"),
    },
    default="-at",
)
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

    def work(s: Session) -> AuditPage:
        base = select(AuditEntry).where(AuditEntry.tenant_id == who.tenant_id)
        if action:
            what = col(AuditEntry.action)
            base = base.where(
                what.startswith(action, autoescape=True) if action.endswith(".") else what == action
            )
        if username:
            base = base.where(AuditEntry.username == username)
        if target:
            base = base.where(AuditEntry.target == target)
        if since:
            base = base.where(col(AuditEntry.at) >= _aware(since))
        if until:
            base = base.where(col(AuditEntry.at) < _aware(until))
        rows, nxt = AUDIT.fetch(s, base, page.order, page.cursor, page.limit)
        items = [
            AuditOut(
                id=e.id or 0,
                at=e.at,
                username=e.username,
                action=e.action,
                target=e.target,
                detail=e.detail,
            )
            for e in rows
        ]
        return AuditPage(items=items, next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)
