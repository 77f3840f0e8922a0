"""REST /sites."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Request, Response
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Printer, Site
from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import (
    CONFLICT,
    ERRORS,
    Admin,
    Page,
    SiteId,
    Viewer,
    app_state,
    change,
    page_of,
)
from tonerwatch_api.domain import sites as site_rules
from tonerwatch_api.domain.access import audit
from tonerwatch_api.domain.alert_settings import announce, responsible_emails
from tonerwatch_api.domain.errors import Conflict
from tonerwatch_api.domain.sites import set_site_interval, site_printer_counts
from tonerwatch_api.listing import Listing, field
from tonerwatch_api.schemas.common import (
    SiteIn,
    SiteOut,
    SitePage,
    SitePatch,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")


# --- sites ---------------------------------------------------------------------------------------


SITES = Listing(
    fields={
        "id": field(col(Site.id), "str"),
        "name": field(col(Site.name), "str"),
        "created_at": field(col(Site.created_at), "datetime"),
    },
    default="id",
)
SitesAsked = Annotated[Page, page_of(SITES, "Sites", limit=100, most=500)]


@router.get("/sites", response_model=SitePage, tags=["sites"], responses=ERRORS)
async def list_sites(
    request: Request,
    who: Viewer,
    page: SitesAsked,
) -> SitePage:
    """Return the tenant's sites with their printer counts, a page at a time."""

    def work(s: Session) -> SitePage:
        base = select(Site).where(Site.tenant_id == who.tenant_id)
        rows, nxt = SITES.fetch(s, base, page.order, page.cursor, page.limit)
        counts = site_printer_counts(s, who.tenant_id)
        items = [
            SiteOut(
                id=x.id,
                name=x.name,
                tenant_id=x.tenant_id,
                printers=counts.get(x.id, 0),
                poll_interval_s=x.poll_interval_s,
            )
            for x in rows
        ]
        return SitePage(items=items, next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


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

    def work(s: Session) -> SiteOut:
        if s.get(Site, body.id) is not None:
            raise Conflict(f"site id {body.id!r} is taken")
        site = Site(
            id=body.id,
            tenant_id=who.tenant_id,
            name=body.name or body.id,
            poll_interval_s=body.poll_interval_s,
        )
        s.add(site)
        s.flush()
        if responsible_emails(s, site):
            # Users responsible for every site are mailed about this one too: tell the alerter.
            announce(s, site, st.source)
        audit(s, who, "site.create", site.id)
        return SiteOut(
            id=site.id,
            name=site.name,
            tenant_id=site.tenant_id,
            poll_interval_s=site.poll_interval_s,
        )

    out = await change(st, work)
    return out


@router.get("/sites/{site_id}", response_model=SiteOut, tags=["sites"], responses=ERRORS)
async def get_site(request: Request, site_id: SiteId, who: Viewer) -> SiteOut:
    """Return one site."""

    def work(s: Session) -> SiteOut:
        site = site_rules.get_site(s, who.tenant_id, site_id)
        n = site_printer_counts(s, who.tenant_id).get(site.id, 0)
        return SiteOut(
            id=site.id,
            name=site.name,
            tenant_id=site.tenant_id,
            printers=n,
            poll_interval_s=site.poll_interval_s,
        )

    return await run_tx(app_state(request).engine, work)


@router.patch("/sites/{site_id}", response_model=SiteOut, tags=["sites"], responses=ERRORS)
async def rename_site(request: Request, site_id: SiteId, body: SitePatch, who: Admin) -> SiteOut:
    """Rename a site and/or set its printers' poll interval (null: back to the default)."""
    st = app_state(request)

    def work(s: Session) -> SiteOut:
        site = site_rules.get_site(s, who.tenant_id, site_id)
        if body.name is not None:
            site.name = body.name
            s.add(site)
            audit(s, who, "site.rename", site.id, name=body.name)
        if "poll_interval_s" in body.model_fields_set:
            set_site_interval(
                s, site, body.poll_interval_s, st.source, st.settings.default_interval_s
            )
            audit(s, who, "site.interval", site.id, poll_interval_s=body.poll_interval_s)
        return SiteOut(
            id=site.id,
            name=site.name,
            tenant_id=site.tenant_id,
            poll_interval_s=site.poll_interval_s,
        )

    out = await change(st, work)
    return out


@router.delete(
    "/sites/{site_id}", status_code=204, tags=["sites"], responses={**ERRORS, **CONFLICT}
)
async def delete_site(request: Request, site_id: SiteId, who: Admin) -> Response:
    """Delete an empty site (one that never held printers)."""
    st = app_state(request)

    def work(s: Session) -> None:
        site = site_rules.get_site(s, who.tenant_id, site_id)
        if site.id == st.settings.default_site:
            raise Conflict("the default site cannot be deleted")
        if s.exec(select(Printer.id).where(Printer.site_id == site.id)).first() is not None:
            raise Conflict(
                f"site {site.id!r} has printers (or their history); remove them first"
            )
        s.delete(site)
        audit(s, who, "site.delete", site.id)

    await run_tx(st.engine, work)
    return Response(status_code=204)
