"""REST /discovery/jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import ERRORS, JobId, Operator, Viewer, app_state, change, page_of
from tonerwatch_api.domain.discovery_jobs import (
    JOBS,
    cancel_job,
    found_printers,
    get_job,
    job_out,
    jobs_query,
    start_job,
)
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.discovery_jobs import DiscoveryJobIn, DiscoveryJobOut, DiscoveryJobPage

router = APIRouter(prefix="/api/v1")


@router.post(
    "/discovery/jobs",
    response_model=DiscoveryJobOut,
    status_code=201,
    tags=["discovery"],
    responses=ERRORS,
)
async def start_discovery(request: Request, body: DiscoveryJobIn, who: Operator) -> DiscoveryJobOut:
    """Start a sweep (DiscoveryRequested); follow it with GET /discovery/jobs/{id}."""
    st = app_state(request)

    def work(s: Session) -> DiscoveryJobOut:
        job = start_job(s, who, body, st.settings.default_site, st.source)
        return job_out(job)

    return await change(st, work)


JobsAsked = Annotated[Page, page_of(JOBS, "Jobs", limit=20, most=200)]


@router.get(
    "/discovery/jobs", response_model=DiscoveryJobPage, tags=["discovery"], responses=ERRORS
)
async def list_discovery_jobs(
    request: Request,
    who: Viewer,
    page: JobsAsked,
    site: Annotated[str | None, Query(max_length=64, description="Only this site")] = None,
    state: Annotated[
        str | None, Query(max_length=16, description="Only this state (running, finished, ...)")
    ] = None,
) -> DiscoveryJobPage:
    """Return sweeps, newest first unless sorted otherwise (without their found lists)."""

    def work(s: Session) -> DiscoveryJobPage:
        base = jobs_query(who.tenant_id, site_id=site, state=state)
        rows, nxt = JOBS.fetch(s, base, page.order, page.cursor, page.limit)
        return DiscoveryJobPage(items=[job_out(j) for j in rows], next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


@router.get(
    "/discovery/jobs/{job_id}", response_model=DiscoveryJobOut, tags=["discovery"], responses=ERRORS
)
async def get_discovery_job(request: Request, job_id: JobId, who: Viewer) -> DiscoveryJobOut:
    """Return a sweep's progress and the printers it found (and whether they are monitored)."""

    def work(s: Session) -> DiscoveryJobOut:
        job = get_job(s, who.tenant_id, job_id)
        return job_out(job, found_printers(s, job))

    return await run_tx(app_state(request).engine, work)


@router.post(
    "/discovery/jobs/{job_id}/cancel",
    response_model=DiscoveryJobOut,
    status_code=202,
    tags=["discovery"],
    responses=ERRORS,
)
async def cancel_discovery(request: Request, job_id: JobId, who: Operator) -> DiscoveryJobOut:
    """Ask a running sweep to stop (DiscoveryCancelled); it ends with state 'cancelled'."""
    st = app_state(request)

    def work(s: Session) -> DiscoveryJobOut:
        return job_out(cancel_job(s, who, job_id, st.source))

    return await change(st, work)
