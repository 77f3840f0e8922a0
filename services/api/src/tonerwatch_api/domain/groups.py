"""Printer groups: named sets of printers a user can be responsible for."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import func
from sqlmodel import Session, col, select

from tonerwatch_api.db.alerting import UserAlerting
from tonerwatch_api.db.groups import PrinterGroup, PrinterGroupMember
from tonerwatch_api.db.models import Printer, Site, User
from tonerwatch_api.domain.access import Principal, audit, sites_of_groups
from tonerwatch_api.domain.alert_settings import reannounce
from tonerwatch_api.domain.errors import Conflict, NotFound
from tonerwatch_api.domain.printers import get_printer
from tonerwatch_api.domain.tenancy import tenant_sites
from tonerwatch_api.listing import Listing, Page, field
from tonerwatch_api.schemas.groups import (
    MAX_MEMBERS,
    GroupDetailOut,
    GroupIn,
    GroupOut,
    GroupPage,
    GroupPatch,
)

# --- queries -------------------------------------------------------------------------------------


def tenant_groups(session: Session, tenant_id: str) -> list[PrinterGroup]:
    """Return the tenant's groups by name."""
    q = select(PrinterGroup).where(PrinterGroup.tenant_id == tenant_id)
    return list(session.exec(q.order_by(col(PrinterGroup.name), col(PrinterGroup.id))).all())


def get_group(session: Session, tenant_id: str, group_id: int) -> PrinterGroup:
    """Return the tenant's group, or raise NotFound."""
    group = session.get(PrinterGroup, group_id)
    if group is None or group.tenant_id != tenant_id:
        raise NotFound(f"group {group_id} not found")
    return group


def member_counts(session: Session, group_ids: Sequence[int]) -> dict[int, int]:
    """Return the live printers in each of group_ids."""
    if not group_ids:
        return {}
    q = (
        select(PrinterGroupMember.group_id, func.count())
        .join(Printer, col(Printer.id) == col(PrinterGroupMember.printer_id))
        .where(col(PrinterGroupMember.group_id).in_(list(group_ids)))
        .where(col(Printer.removed_at).is_(None))
        .group_by(col(PrinterGroupMember.group_id))
    )
    return {gid: int(n) for gid, n in session.exec(q).all()}


def member_ids(session: Session, group_id: int) -> list[str]:
    """Return the ids of a group's live printers, sorted."""
    q = (
        select(PrinterGroupMember.printer_id)
        .join(Printer, col(Printer.id) == col(PrinterGroupMember.printer_id))
        .where(PrinterGroupMember.group_id == group_id, col(Printer.removed_at).is_(None))
        .order_by(col(PrinterGroupMember.printer_id))
    )
    return list(session.exec(q).all())


def printer_groups(session: Session, printer_ids: Sequence[str]) -> dict[str, list[int]]:
    """Return the groups each of printer_ids is in."""
    out: dict[str, list[int]] = {}
    if not printer_ids:
        return out
    q = select(PrinterGroupMember.printer_id, PrinterGroupMember.group_id).where(
        col(PrinterGroupMember.printer_id).in_(list(printer_ids))
    )
    for pid, gid in session.exec(q.order_by(col(PrinterGroupMember.group_id))).all():
        out.setdefault(pid, []).append(gid)
    return out


def _followed(session: Session, group: PrinterGroup) -> bool:
    """Return whether an enabled user with an alert address answers for group (mail depends on it)."""

    q = (
        select(UserAlerting.groups)
        .join(User, col(User.id) == col(UserAlerting.user_id))
        .where(User.tenant_id == group.tenant_id, col(User.disabled).is_(False))
        .where(col(UserAlerting.email).is_not(None))
    )
    return any(group.id in (groups or []) for groups in session.exec(q).all())


def _reannounce(session: Session, tenant_id: str, site_ids: Iterable[str], source: str) -> None:
    """Tell the alerter the recipients of these sites of the tenant again."""

    wanted = set(site_ids)
    if wanted:
        sites = tenant_sites(session, tenant_id)
        reannounce(session, [site for site in sites if site.id in wanted], source)


def _check_printers(session: Session, tenant_id: str, printer_ids: Sequence[str]) -> list[str]:
    """Return printer_ids once each, in order; NotFound names the first not the tenant's (live)."""
    wanted = list(dict.fromkeys(printer_ids))
    known: set[str] = set()
    for i in range(0, len(wanted), 1000):
        chunk = wanted[i : i + 1000]
        q = (
            select(Printer.id)
            .join(Site, col(Site.id) == col(Printer.site_id))
            .where(Site.tenant_id == tenant_id, col(Printer.removed_at).is_(None))
            .where(col(Printer.id).in_(chunk))
        )
        known.update(session.exec(q).all())
    for pid in wanted:
        if pid not in known:
            raise NotFound(f"printer {pid!r} not found")
    return wanted


def _name_taken(session: Session, tenant_id: str, name: str, other_than: int | None) -> None:
    q = select(PrinterGroup.id).where(
        PrinterGroup.tenant_id == tenant_id,
        func.lower(col(PrinterGroup.name)) == name.lower(),
    )
    if other_than is not None:
        q = q.where(col(PrinterGroup.id) != other_than)
    if session.exec(q).first() is not None:
        raise Conflict(f"a group named {name!r} exists")


def group_out(session: Session, group: PrinterGroup) -> GroupDetailOut:
    """Return the API view of a group with its printers."""
    assert group.id is not None
    ids = member_ids(session, group.id)
    return GroupDetailOut(
        id=group.id,
        name=group.name,
        description=group.description,
        printers=len(ids),
        created_at=group.created_at,
        printer_ids=ids,
    )


# --- changes -------------------------------------------------------------------------------------


def create_group(session: Session, who: Principal, body: GroupIn, source: str) -> PrinterGroup:
    """Store a new group (with its first printers); raise Conflict when the name is taken."""
    _name_taken(session, who.tenant_id, body.name, None)
    printer_ids = _check_printers(session, who.tenant_id, body.printer_ids)
    group = PrinterGroup(tenant_id=who.tenant_id, name=body.name, description=body.description)
    session.add(group)
    session.flush()
    assert group.id is not None
    for pid in printer_ids:
        session.add(PrinterGroupMember(group_id=group.id, printer_id=pid))
    # No one answers for a new group yet: nothing to announce.
    audit(session, who, "group.create", str(group.id), name=group.name)
    return group


def patch_group(session: Session, who: Principal, group_id: int, body: GroupPatch) -> PrinterGroup:
    """Rename a group or change its description."""
    group = get_group(session, who.tenant_id, group_id)
    changed = sorted(body.model_fields_set)
    if body.name is not None and body.name != group.name:
        _name_taken(session, who.tenant_id, body.name, group.id)
        group.name = body.name
    if "description" in body.model_fields_set:
        group.description = body.description
    session.add(group)
    audit(session, who, "group.update", str(group.id), fields=changed, name=group.name)
    return group


def set_members(
    session: Session, who: Principal, group_id: int, printer_ids: Sequence[str], source: str
) -> PrinterGroup:
    """Make printer_ids the group's printers; re-announce the sites whose printers' mail changes."""
    group = get_group(session, who.tenant_id, group_id)
    assert group.id is not None
    wanted = _check_printers(session, who.tenant_id, printer_ids)
    rows = session.exec(
        select(PrinterGroupMember).where(PrinterGroupMember.group_id == group.id)
    ).all()
    current = {r.printer_id: r for r in rows}
    added = [pid for pid in wanted if pid not in current]
    removed = [pid for pid in current if pid not in set(wanted)]
    for pid in removed:
        session.delete(current[pid])
    for pid in added:
        session.add(PrinterGroupMember(group_id=group.id, printer_id=pid))
    _members_changed(session, who, group, added, removed, source)
    return group


def change_member(
    session: Session, who: Principal, group_id: int, printer_id: str, member: bool, source: str
) -> PrinterGroup:
    """Add printer_id to the group (member) or take it out; doing it twice changes nothing."""
    group = get_group(session, who.tenant_id, group_id)
    assert group.id is not None
    get_printer(session, who.tenant_id, printer_id)  # another tenant's: 404
    row = session.get(PrinterGroupMember, (group.id, printer_id))
    if member == (row is not None):
        return group
    if row is not None:
        session.delete(row)
        _members_changed(session, who, group, [], [printer_id], source)
        return group
    if member_counts(session, [group.id]).get(group.id, 0) >= MAX_MEMBERS:
        raise Conflict(f"a group holds at most {MAX_MEMBERS:,} printers")
    session.add(PrinterGroupMember(group_id=group.id, printer_id=printer_id))
    _members_changed(session, who, group, [printer_id], [], source)
    return group


def _members_changed(
    session: Session,
    who: Principal,
    group: PrinterGroup,
    added: Sequence[str],
    removed: Sequence[str],
    source: str,
) -> None:
    """Re-announce the sites whose printers' mail changes, and audit the change."""
    if (added or removed) and _followed(session, group):
        changed = [*added, *removed]
        sites = set(session.exec(select(Printer.site_id).where(col(Printer.id).in_(changed))).all())
        _reannounce(session, who.tenant_id, sites, source)
    audit(session, who, "group.members", str(group.id), added=len(added), removed=len(removed))


def delete_group(session: Session, who: Principal, group_id: int, source: str) -> None:
    """Delete a group: its printers stay, users stop answering for it, their sites re-announced."""

    group = get_group(session, who.tenant_id, group_id)
    assert group.id is not None
    sites = sites_of_groups(session, [group.id]) if _followed(session, group) else set()
    profiles = session.exec(
        select(UserAlerting, User.username)
        .join(User, col(User.id) == col(UserAlerting.user_id))
        .where(User.tenant_id == who.tenant_id)
    ).all()
    # Nothing chosen means every site: someone answering for this group alone would silently
    # start answering for the whole fleet. Refuse, and say whose responsibility to change first.
    sole = sorted(
        name for profile, name in profiles if profile.groups == [group.id] and not profile.sites
    )
    if sole:
        raise Conflict(
            f"group {group.name!r} is all that {', '.join(sole)} answer(s) for; give them other "
            "sites or groups first (or clear their responsibility to make them answer for all)"
        )
    for profile, _ in profiles:
        if profile.groups and group.id in profile.groups:
            profile.groups = [g for g in profile.groups if g != group.id]
            session.add(profile)
    for member in session.exec(
        select(PrinterGroupMember).where(PrinterGroupMember.group_id == group.id)
    ).all():
        session.delete(member)
    session.flush()
    session.delete(group)
    _reannounce(session, who.tenant_id, sites, source)
    audit(session, who, "group.delete", str(group_id), name=group.name)


GROUPS = Listing(
    fields={
        "id": field(col(PrinterGroup.id), "int"),
        "name": field(col(PrinterGroup.name), "str"),
        "created_at": field(col(PrinterGroup.created_at), "datetime"),
    },
    default="name",
)


def group_page(session: Session, tenant_id: str, page: Page) -> GroupPage:
    """Return one page of the tenant's printer groups with their printer counts."""
    base = select(PrinterGroup).where(PrinterGroup.tenant_id == tenant_id)
    rows, nxt = GROUPS.fetch(session, base, page.order, page.cursor, page.limit)
    counts = member_counts(session, [g.id for g in rows if g.id is not None])
    items = [
        GroupOut(
            id=g.id or 0,
            name=g.name,
            description=g.description,
            printers=counts.get(g.id or 0, 0),
            created_at=g.created_at,
        )
        for g in rows
    ]
    return GroupPage(items=items, next_cursor=nxt)
