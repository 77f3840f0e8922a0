"""The audit log: who changed what in a tenant, newest first unless sorted otherwise."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import AuditEntry
from tonerwatch_api.listing import Listing, Page, field
from tonerwatch_api.schemas.common import AuditOut, AuditPage

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


def audit_page(
    session: Session,
    tenant_id: str,
    page: Page,
    *,
    action: str | None = None,
    username: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditPage:
    """Return one page of the tenant's audit entries matching the filters (an action ending in
    '.' is a prefix); since and until must carry a time zone."""
    base = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
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
        base = base.where(col(AuditEntry.at) >= since)
    if until:
        base = base.where(col(AuditEntry.at) < until)
    rows, nxt = AUDIT.fetch(session, base, page.order, page.cursor, page.limit)
    items = [
        AuditOut(
            id=e.id or 0,
            at=e.at,
            username=e.username,
            acting_from=e.actor_tenant_id,
            action=e.action,
            target=e.target,
            detail=e.detail,
        )
        for e in rows
    ]
    return AuditPage(items=items, next_cursor=nxt)


def latest_changes(session: Session, tenant_id: str, limit: int) -> list[AuditEntry]:
    """Return the tenant's latest audit entries, newest first."""
    q = (
        select(AuditEntry)
        .where(AuditEntry.tenant_id == tenant_id)
        .order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
        .limit(limit)
    )
    return list(session.exec(q).all())
