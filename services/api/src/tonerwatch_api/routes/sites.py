"""REST /sites."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import CONFLICT, ERRORS, Admin, SiteId, Viewer, app_state, change, page_of
from tonerwatch_api.domain.sites import (
    SITES,
    add_site,
    change_site,
    get_account,
    one_site,
    remove_site,
    set_account,
    site_page,
)
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.common import SiteIn, SiteOut, SitePage, SitePatch
from tonerwatch_shared.events import SiteAccount

router = APIRouter(prefix="/api/v1")


SitesAsked = Annotated[Page, page_of(SITES, "Sites", limit=100, most=500)]


@router.get("/sites", response_model=SitePage, tags=["sites"], responses=ERRORS)
async def list_sites(request: Request, who: Viewer, page: SitesAsked) -> SitePage:
    """Return the tenant's sites with their printer counts, a page at a time."""
    return await run_tx(app_state(request).engine, lambda s: site_page(s, who.tenant_id, page))


@router.post(
    "/sites",
    response_model=SiteOut,
    status_code=201,
    tags=["sites"],
    responses={**ERRORS, **CONFLICT},
)
async def create_site(request: Request, body: SiteIn, who: Admin) -> SiteOut:
    """Create a site in the caller's tenant (its id becomes part of NATS subjects)."""
    st = app_state(request)
    return await change(st, lambda s: add_site(s, who, body, st.source))


@router.get("/sites/{site_id}", response_model=SiteOut, tags=["sites"], responses=ERRORS)
async def get_site(request: Request, site_id: SiteId, who: Viewer) -> SiteOut:
    """Return one site."""
    return await run_tx(app_state(request).engine, lambda s: one_site(s, who.tenant_id, site_id))


@router.get(
    "/sites/{site_id}/account", response_model=SiteAccount, tags=["sites"], responses=ERRORS
)
async def get_site_account(request: Request, site_id: SiteId, who: Viewer) -> SiteAccount:
    """Return the site's account details: ship-to address and billing contact."""
    return await run_tx(app_state(request).engine, lambda s: get_account(s, who.tenant_id, site_id))


@router.put(
    "/sites/{site_id}/account", response_model=SiteAccount, tags=["sites"], responses=ERRORS
)
async def put_site_account(
    request: Request, site_id: SiteId, body: SiteAccount, who: Admin
) -> SiteAccount:
    """Keep the site's ship-to address and billing contact (all fields; omitted ones are cleared);
    sent upstream with every new order of the site (order-changed `account`)."""
    st = app_state(request)
    return await change(st, lambda s: set_account(s, who, site_id, body))


@router.patch("/sites/{site_id}", response_model=SiteOut, tags=["sites"], responses=ERRORS)
async def rename_site(request: Request, site_id: SiteId, body: SitePatch, who: Admin) -> SiteOut:
    """Rename a site and/or set its printers' poll interval (null: back to the default)."""
    st = app_state(request)
    default_interval_s = st.settings.default_interval_s
    return await change(
        st, lambda s: change_site(s, who, site_id, body, st.source, default_interval_s)
    )


@router.delete(
    "/sites/{site_id}", status_code=204, tags=["sites"], responses={**ERRORS, **CONFLICT}
)
async def delete_site(request: Request, site_id: SiteId, who: Admin) -> Response:
    """Delete an empty site (one that never held printers)."""
    st = app_state(request)
    await run_tx(st.engine, lambda s: remove_site(s, who, site_id, st.settings.default_site))
    return Response(status_code=204)
