"""Printer groups: named sets of a tenant's printers across its sites, and REST /groups.

A group is whatever a tenant wants to answer for as one: a floor, a department, a customer's
machines, wherever they stand. A user responsible for a group (user_alerting.groups) sees its
printers on their dashboard and alerts page and is mailed about them, and only them: the api
announces each site's member printers with those users' addresses
(AlertSettingsConfigured.printer_recipients). So a change of a group's members, its deletion, or a
change of a user's groups re-announces the sites whose printers gain or lose an address.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import Column, UniqueConstraint, func
from sqlmodel import Field as SQLField
from sqlmodel import Session, SQLModel, col, select

from tonerwatch_api import store
from tonerwatch_api.auth import Admin, Viewer
from tonerwatch_api.db import run_tx
from tonerwatch_api.listing import CURSOR_HELP, Listing, field
from tonerwatch_api.models import Printer, Site, User, UTCDateTime, utcnow
from tonerwatch_api.params import GroupId, PrinterId
from tonerwatch_api.schemas import EXAMPLE_PRINTER_ID, error_response
from tonerwatch_api.state import app_state
from tonerwatch_api.store import Principal

MAX_MEMBERS = 10_000  # one PUT; the largest fleets the api is measured with

# --- tables --------------------------------------------------------------------------------------


class PrinterGroup(SQLModel, table=True):
    """A tenant's named group of printers (from any of its sites)."""

    __tablename__ = "printer_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_printer_groups_tenant_name"),)
    id: int | None = SQLField(default=None, primary_key=True)
    tenant_id: str = SQLField(foreign_key="tenants.id", index=True, max_length=64)
    name: str = SQLField(max_length=100)
    description: str | None = SQLField(default=None, max_length=500)
    created_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class PrinterGroupMember(SQLModel, table=True):
    """One printer in one group (gone with either)."""

    __tablename__ = "printer_group_members"
    group_id: int = SQLField(foreign_key="printer_groups.id", primary_key=True, ondelete="CASCADE")
    printer_id: str = SQLField(
        foreign_key="printers.id", primary_key=True, max_length=128, index=True, ondelete="CASCADE"
    )


GROUP_TABLES: tuple[type[SQLModel], ...] = (PrinterGroup, PrinterGroupMember)

# --- request and response bodies -----------------------------------------------------------------

MemberId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^\S+$")]


def _one_line(value: str | None) -> str | None:
    """Return value stripped (None when empty); refuse control characters."""
    if value is None:
        return None
    value = value.strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must be one line of printable text")
    return value or None


def _name(value: str) -> str:
    cleaned = _one_line(value)
    if not cleaned:
        raise ValueError("must not be blank")
    return cleaned


GroupName = Annotated[
    str,
    Field(min_length=1, max_length=100, description="Unique in the tenant"),
    AfterValidator(_name),
]
Description = Annotated[str | None, Field(max_length=500), AfterValidator(_one_line)]


class GroupIn(BaseModel):
    """A group to create, optionally with its first members."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Finance floor 3",
                    "description": "The printers Finance answers for",
                    "printer_ids": [EXAMPLE_PRINTER_ID],
                }
            ]
        },
    )
    name: GroupName
    description: Description = None
    printer_ids: list[MemberId] = Field(
        default_factory=list, max_length=MAX_MEMBERS, description="Printers of any site"
    )


class GroupPatch(BaseModel):
    """Changes to a group: a new name, a new description (null clears it)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "Finance (all floors)"}, {"description": None}],
        },
    )
    name: GroupName | None = None
    description: Description = None


class GroupMembersIn(BaseModel):
    """A group's printers, whole: the ones left out leave the group."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"printer_ids": [EXAMPLE_PRINTER_ID, "p-91c0e2b7aa"]}]},
    )
    printer_ids: list[MemberId] = Field(max_length=MAX_MEMBERS)


_GROUP: dict[str, Any] = {
    "id": 3,
    "name": "Finance floor 3",
    "description": "The printers Finance answers for",
    "printers": 2,
    "created_at": "2025-03-10T14:02:11Z",
}


class GroupOut(BaseModel):
    """A group and how many (live) printers it holds."""

    model_config = ConfigDict(json_schema_extra={"examples": [_GROUP]})
    id: int
    name: str
    description: str | None
    printers: int = Field(description="Printers in the group (removed ones not counted)")
    created_at: datetime


class GroupDetailOut(GroupOut):
    """A group with the ids of its printers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_GROUP, "printer_ids": [EXAMPLE_PRINTER_ID, "p-91c0e2b7aa"]}]
        }
    )
    printer_ids: list[str] = Field(description="Its live printers, by id")


class GroupPage(BaseModel):
    """One page of groups; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_GROUP], "next_cursor": "eyJzIjoibmFtZSxpZCIsInYiOlsiRiIsM119"}]
        }
    )
    items: list[GroupOut]
    next_cursor: str | None


# --- queries -------------------------------------------------------------------------------------


def tenant_groups(session: Session, tenant_id: str) -> list[PrinterGroup]:
    """Return the tenant's groups by name."""
    q = select(PrinterGroup).where(PrinterGroup.tenant_id == tenant_id)
    return list(session.exec(q.order_by(col(PrinterGroup.name), col(PrinterGroup.id))).all())


def get_group(session: Session, tenant_id: str, group_id: int) -> PrinterGroup:
    """Return the tenant's group, or raise NotFound."""
    group = session.get(PrinterGroup, group_id)
    if group is None or group.tenant_id != tenant_id:
        raise store.NotFound(f"group {group_id} not found")
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


def members_of(session: Session, group_ids: Iterable[int]) -> dict[int, set[str]]:
    """Return the live printers of each group (every tenant's group id is unique)."""
    ids = list(group_ids)
    out: dict[int, set[str]] = {g: set() for g in ids}
    if not ids:
        return out
    q = (
        select(PrinterGroupMember.group_id, PrinterGroupMember.printer_id)
        .join(Printer, col(Printer.id) == col(PrinterGroupMember.printer_id))
        .where(col(PrinterGroupMember.group_id).in_(ids), col(Printer.removed_at).is_(None))
    )
    for gid, pid in session.exec(q).all():
        out[gid].add(pid)
    return out


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


def sites_of_groups(session: Session, group_ids: Iterable[int]) -> set[str]:
    """Return the sites holding a live printer of one of group_ids."""
    ids = list(group_ids)
    if not ids:
        return set()
    q = (
        select(Printer.site_id)
        .join(PrinterGroupMember, col(PrinterGroupMember.printer_id) == col(Printer.id))
        .where(col(PrinterGroupMember.group_id).in_(ids), col(Printer.removed_at).is_(None))
        .distinct()
    )
    return set(session.exec(q).all())


def _followed(session: Session, group: PrinterGroup) -> bool:
    """Return whether an enabled user with an alert address answers for group (mail depends on it)."""
    from tonerwatch_api.alert_settings import UserAlerting  # late: it imports this module

    q = (
        select(UserAlerting.groups)
        .join(User, col(User.id) == col(UserAlerting.user_id))
        .where(User.tenant_id == group.tenant_id, col(User.disabled).is_(False))
        .where(col(UserAlerting.email).is_not(None))
    )
    return any(group.id in (groups or []) for groups in session.exec(q).all())


def _reannounce(session: Session, tenant_id: str, site_ids: Iterable[str], source: str) -> None:
    """Tell the alerter the recipients of these sites of the tenant again."""
    from tonerwatch_api.alert_settings import reannounce  # late: it imports this module

    wanted = set(site_ids)
    if wanted:
        sites = store.tenant_sites(session, tenant_id)
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
            raise store.NotFound(f"printer {pid!r} not found")
    return wanted


def _name_taken(session: Session, tenant_id: str, name: str, other_than: int | None) -> None:
    q = select(PrinterGroup.id).where(
        PrinterGroup.tenant_id == tenant_id,
        func.lower(col(PrinterGroup.name)) == name.lower(),
    )
    if other_than is not None:
        q = q.where(col(PrinterGroup.id) != other_than)
    if session.exec(q).first() is not None:
        raise store.Conflict(f"a group named {name!r} exists")


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
    store.audit(session, who, "group.create", str(group.id), name=group.name)
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
    store.audit(session, who, "group.update", str(group.id), fields=changed, name=group.name)
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
    store.get_printer(session, who.tenant_id, printer_id)  # another tenant's: 404
    row = session.get(PrinterGroupMember, (group.id, printer_id))
    if member == (row is not None):
        return group
    if row is not None:
        session.delete(row)
        _members_changed(session, who, group, [], [printer_id], source)
        return group
    if member_counts(session, [group.id]).get(group.id, 0) >= MAX_MEMBERS:
        raise store.Conflict(f"a group holds at most {MAX_MEMBERS:,} printers")
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
    store.audit(
        session, who, "group.members", str(group.id), added=len(added), removed=len(removed)
    )


def delete_group(session: Session, who: Principal, group_id: int, source: str) -> None:
    """Delete a group: its printers stay, users stop answering for it, their sites re-announced."""
    from tonerwatch_api.alert_settings import UserAlerting  # late: it imports this module

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
        raise store.Conflict(
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
    store.audit(session, who, "group.delete", str(group_id), name=group.name)


# --- REST ----------------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1")
ERRORS: dict[int | str, dict[str, object]] = {
    401: error_response(
        401,
        "Not authenticated",
        "not authenticated: send 'Authorization: Bearer <token>' (get one from "
        "POST /api/v1/auth/token) — a token may also be expired or revoked",
    ),
    403: error_response(
        403, "Needs the admin role", "needs role admin or higher (you are operator)"
    ),
    404: error_response(
        404, "No such group or printer (or another tenant's)", "printer 'p-3f2a9c01de' not found"
    ),
}
CONFLICT: dict[int | str, dict[str, object]] = {
    409: error_response(
        409, "The name is taken in the tenant", "a group named 'Finance floor 3' exists"
    ),
}
GROUPS = Listing(
    fields={
        "id": field(col(PrinterGroup.id), "int"),
        "name": field(col(PrinterGroup.name), "str"),
        "created_at": field(col(PrinterGroup.created_at), "datetime"),
    },
    default="name",
)


@router.get("/groups", response_model=GroupPage, tags=["groups"], responses=ERRORS)
async def list_groups(
    request: Request,
    who: Viewer,
    sort: Annotated[str | None, Query(max_length=100, description=GROUPS.describe())] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Groups per page")] = 100,
    cursor: Annotated[str | None, Query(max_length=1000, description=CURSOR_HELP)] = None,
) -> GroupPage:
    """Return the tenant's printer groups with their printer counts, a page at a time."""
    order = GROUPS.parse_sort(sort)

    def work(s: Session) -> GroupPage:
        base = select(PrinterGroup).where(PrinterGroup.tenant_id == who.tenant_id)
        rows, nxt = GROUPS.fetch(s, base, order, cursor, limit)
        counts = member_counts(s, [g.id for g in rows if g.id is not None])
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

    return await run_tx(app_state(request).engine, work)


@router.post(
    "/groups",
    response_model=GroupDetailOut,
    status_code=201,
    tags=["groups"],
    responses={**ERRORS, **CONFLICT},
)
async def add_group(request: Request, body: GroupIn, who: Admin) -> GroupDetailOut:
    """Create a printer group in the caller's tenant (printers of any of its sites)."""
    st = app_state(request)

    def work(s: Session) -> GroupDetailOut:
        return group_out(s, create_group(s, who, body, st.source))

    return await run_tx(st.engine, work)


@router.get("/groups/{group_id}", response_model=GroupDetailOut, tags=["groups"], responses=ERRORS)
async def read_group(request: Request, group_id: GroupId, who: Viewer) -> GroupDetailOut:
    """Return one group with the ids of its printers."""
    return await run_tx(
        app_state(request).engine, lambda s: group_out(s, get_group(s, who.tenant_id, group_id))
    )


@router.patch(
    "/groups/{group_id}",
    response_model=GroupDetailOut,
    tags=["groups"],
    responses={**ERRORS, **CONFLICT},
)
async def edit_group(
    request: Request, group_id: GroupId, body: GroupPatch, who: Admin
) -> GroupDetailOut:
    """Rename a group or change its description."""
    return await run_tx(
        app_state(request).engine, lambda s: group_out(s, patch_group(s, who, group_id, body))
    )


@router.put(
    "/groups/{group_id}/printers",
    response_model=GroupDetailOut,
    tags=["groups"],
    responses=ERRORS,
)
async def put_group_printers(
    request: Request, group_id: GroupId, body: GroupMembersIn, who: Admin
) -> GroupDetailOut:
    """Set a group's printers, whole; the alerter hears the sites whose recipients change."""
    st = app_state(request)

    def work(s: Session) -> GroupDetailOut:
        return group_out(s, set_members(s, who, group_id, body.printer_ids, st.source))

    out = await run_tx(st.engine, work)
    await _flush(request)
    return out


@router.put(
    "/groups/{group_id}/printers/{printer_id}",
    response_model=GroupDetailOut,
    tags=["groups"],
    responses=ERRORS,
)
async def add_group_printer(
    request: Request, group_id: GroupId, printer_id: PrinterId, who: Admin
) -> GroupDetailOut:
    """Put one printer in a group (idempotent); for large fleets, instead of the whole list."""
    return await _change_member(request, who, group_id, printer_id, member=True)


@router.delete(
    "/groups/{group_id}/printers/{printer_id}",
    response_model=GroupDetailOut,
    tags=["groups"],
    responses=ERRORS,
)
async def remove_group_printer(
    request: Request, group_id: GroupId, printer_id: PrinterId, who: Admin
) -> GroupDetailOut:
    """Take one printer out of a group (idempotent); the printer itself stays."""
    return await _change_member(request, who, group_id, printer_id, member=False)


async def _change_member(
    request: Request, who: Principal, group_id: int, printer_id: str, *, member: bool
) -> GroupDetailOut:
    st = app_state(request)

    def work(s: Session) -> GroupDetailOut:
        return group_out(s, change_member(s, who, group_id, printer_id, member, st.source))

    out = await run_tx(st.engine, work)
    await _flush(request)
    return out


@router.delete(
    "/groups/{group_id}",
    status_code=204,
    tags=["groups"],
    responses={
        **ERRORS,
        409: error_response(
            409,
            "Someone answers for this group alone (they would answer for everything)",
            "group 'Finance floor 3' is all that fiona answer(s) for; give them other sites or "
            "groups first (or clear their responsibility to make them answer for all)",
        ),
    },
)
async def remove_group(request: Request, group_id: GroupId, who: Admin) -> Response:
    """Delete a group (its printers stay); users answering for it stop being mailed through it."""
    st = app_state(request)
    await run_tx(st.engine, lambda s: delete_group(s, who, group_id, st.source))
    await _flush(request)
    return Response(status_code=204)


async def _flush(request: Request) -> None:
    # Late import: api imports alert_settings, which imports this module.
    from tonerwatch_api.api import publish_outbox

    await publish_outbox(app_state(request))


__all__ = [
    "GROUP_TABLES",
    "GroupDetailOut",
    "GroupIn",
    "GroupMembersIn",
    "GroupOut",
    "GroupPage",
    "GroupPatch",
    "PrinterGroup",
    "PrinterGroupMember",
    "create_group",
    "delete_group",
    "get_group",
    "members_of",
    "printer_groups",
    "router",
    "set_members",
    "sites_of_groups",
    "tenant_groups",
]
