"""The audit log: who changed what in a tenant, newest first unless sorted otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from tonerwatch_api.db.groups import PrinterGroup
from tonerwatch_api.db.models import ApiToken, AuditEntry, Printer, Site, User
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


# What an entry's target (and its detail's "groups") name, by the action's first word: the UI shows
# the name of the printer, group, site or token, with the id kept for the API's target filter.
_TARGET_KINDS = {"printer": "printer", "group": "group", "site": "site", "token": "token"}


def target_names(session: Session, tenant_id: str, entries: Sequence[AuditEntry]) -> dict[int, str]:
    """Return, per entry id, the name of what the entry's target id stands for (where it has one).

    A target deleted since keeps its id (there is no name left to show); users are audited by
    name already.
    """
    wanted: dict[str, set[str]] = {k: set() for k in _TARGET_KINDS.values()}
    for e in entries:
        kind = _TARGET_KINDS.get(e.action.split(".", 1)[0])
        if kind and e.target:
            wanted[kind].add(e.target)
    names: dict[str, dict[str, str]] = {k: {} for k in wanted}
    if wanted["printer"]:
        q = (
            select(Printer.id, Printer.name, Printer.address)
            .join(Site, col(Site.id) == col(Printer.site_id))
            .where(Site.tenant_id == tenant_id, col(Printer.id).in_(sorted(wanted["printer"])))
        )
        names["printer"] = {pid: name or address for pid, name, address in session.exec(q)}
    group_ids = [int(t) for t in wanted["group"] if t.isdigit()]
    if group_ids:
        gq = select(PrinterGroup.id, PrinterGroup.name).where(
            PrinterGroup.tenant_id == tenant_id, col(PrinterGroup.id).in_(group_ids)
        )
        names["group"] = {str(gid): name for gid, name in session.exec(gq)}
    if wanted["site"]:
        sq = select(Site.id, Site.name).where(
            Site.tenant_id == tenant_id, col(Site.id).in_(sorted(wanted["site"]))
        )
        names["site"] = {sid: name for sid, name in session.exec(sq) if name and name != sid}
    token_ids = [int(t) for t in wanted["token"] if t.isdigit()]
    if token_ids:
        tq = (
            select(ApiToken.id, ApiToken.name)
            .join(User, col(User.id) == col(ApiToken.user_id))
            .where(User.tenant_id == tenant_id, col(ApiToken.id).in_(token_ids))
        )
        names["token"] = {str(tid): name for tid, name in session.exec(tq) if name}
    out: dict[int, str] = {}
    for e in entries:
        kind = _TARGET_KINDS.get(e.action.split(".", 1)[0])
        if kind and e.target and e.id is not None and (name := names[kind].get(e.target)):
            out[e.id] = name
    return out


def group_names(session: Session, tenant_id: str, entries: Sequence[AuditEntry]) -> dict[int, str]:
    """Return the names of the tenant's groups entries' details name by id (user.alerting)."""
    ids = {
        g
        for e in entries
        for g in ((e.detail or {}).get("groups") or [])
        if isinstance(g, int) and not isinstance(g, bool)
    }
    if not ids:
        return {}
    q = select(PrinterGroup.id, PrinterGroup.name).where(
        PrinterGroup.tenant_id == tenant_id, col(PrinterGroup.id).in_(sorted(ids))
    )
    return {gid: name for gid, name in session.exec(q) if gid is not None}
