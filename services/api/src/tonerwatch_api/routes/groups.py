"""REST /groups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import Admin, GroupId, PrinterId, Viewer, app_state, change, page_of
from tonerwatch_api.domain.access import Principal
from tonerwatch_api.domain.groups import (
    GROUPS,
    change_member,
    create_group,
    delete_group,
    get_group,
    group_out,
    group_page,
    patch_group,
    set_members,
)
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.common import error_response, not_authenticated
from tonerwatch_api.schemas.groups import (
    GroupDetailOut,
    GroupIn,
    GroupMembersIn,
    GroupPage,
    GroupPatch,
)

router = APIRouter(prefix="/api/v1")
ERRORS: dict[int | str, dict[str, object]] = {
    401: not_authenticated(),
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
GroupsAsked = Annotated[Page, page_of(GROUPS, "Groups", limit=100, most=500)]


@router.get("/groups", response_model=GroupPage, tags=["groups"], responses=ERRORS)
async def list_groups(
    request: Request,
    who: Viewer,
    page: GroupsAsked,
) -> GroupPage:
    """Return the tenant's printer groups with their printer counts, a page at a time."""

    return await run_tx(app_state(request).engine, lambda s: group_page(s, who.tenant_id, page))


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

    return await change(st, work)


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

    return await change(st, work)


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
    await change(st, lambda s: delete_group(s, who, group_id, st.source))
    return Response(status_code=204)
