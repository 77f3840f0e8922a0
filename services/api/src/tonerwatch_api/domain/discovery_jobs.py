"""Discovery jobs: sweeps asked for (DiscoveryRequested), cancelled, and read back."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from tonerwatch_api.db.discovery import (
    FINISHED_STATES,
    RUNNING_STATES,
    DiscoveryFound,
    DiscoveryJob,
)
from tonerwatch_api.db.models import Printer, Site
from tonerwatch_api.domain.access import Principal, audit
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.domain.tenancy import get_site
from tonerwatch_api.listing import Listing, field
from tonerwatch_api.projections.outbox import add_to_outbox
from tonerwatch_api.schemas.discovery_jobs import DiscoveryJobIn, DiscoveryJobOut, FoundOut
from tonerwatch_shared.events import DiscoveryCancelled, DiscoveryRequested

# --- changes from the API ------------------------------------------------------------------------


def new_job_id() -> str:
    """Return a fresh job id (a safe NATS subject token)."""
    return "j-" + secrets.token_hex(6)


def start_job(
    session: Session, who: Principal, body: DiscoveryJobIn, default_site: str, source: str
) -> DiscoveryJob:
    """Store a job and queue its DiscoveryRequested; return the job."""
    site = get_site(session, who.tenant_id, body.site_id or default_site)
    creds = body.credential_sets()
    event = DiscoveryRequested(
        source=source,
        site_id=site.id,
        job_id=new_job_id(),
        targets=tuple(body.targets),
        credentials=creds,
        port=body.port,
        rate_pps=body.rate_pps,
        time_limit_s=body.time_limit_s,
        timeout_s=body.timeout_s,
    )
    job = DiscoveryJob(
        id=event.job_id,
        site_id=site.id,
        targets=list(body.targets),
        credential_sets=len(creds),
        port=body.port,
        rate_pps=body.rate_pps,
        time_limit_s=body.time_limit_s,
        requested_by=who.username,
        requested_at=event.occurred_at,
    )
    session.add(job)
    session.flush()
    add_to_outbox(session, event)
    # The targets, never the credentials.
    audit(session, who, "discovery.start", job.id, targets=list(body.targets))
    return job


def cancel_job(session: Session, who: Principal, job_id: str, source: str) -> DiscoveryJob:
    """Queue DiscoveryCancelled for a running job (a finished one is left alone); return it."""
    job = get_job(session, who.tenant_id, job_id)
    if job.state in RUNNING_STATES and job.cancel_requested_at is None:
        event = DiscoveryCancelled(source=source, site_id=job.site_id, job_id=job.id)
        job.cancel_requested_at = event.occurred_at
        session.add(job)
        add_to_outbox(session, event)
        audit(session, who, "discovery.cancel", job.id)
    return job


# --- reading -------------------------------------------------------------------------------------


def get_job(session: Session, tenant_id: str, job_id: str) -> DiscoveryJob:
    """Return the tenant's job, or raise NotFound."""
    row = session.exec(
        select(DiscoveryJob)
        .join(Site, col(Site.id) == col(DiscoveryJob.site_id))
        .where(DiscoveryJob.id == job_id, Site.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise NotFound(f"discovery job {job_id!r} not found")
    return row


def jobs_query(tenant_id: str, *, site_id: str | None = None, state: str | None = None) -> Any:
    """Return the select of the tenant's jobs matching the list endpoint's filters."""
    q = (
        select(DiscoveryJob)
        .join(Site, col(Site.id) == col(DiscoveryJob.site_id))
        .where(Site.tenant_id == tenant_id)
    )
    if site_id:
        q = q.where(DiscoveryJob.site_id == site_id)
    if state:
        q = q.where(DiscoveryJob.state == state)
    return q


def list_jobs(session: Session, tenant_id: str, limit: int = 20) -> list[DiscoveryJob]:
    """Return the tenant's latest jobs, newest first."""
    q = jobs_query(tenant_id).order_by(col(DiscoveryJob.requested_at).desc()).limit(limit)
    return list(session.exec(q).all())


def found_printers(session: Session, job: DiscoveryJob) -> list[FoundOut]:
    """Return what the job found, each matched to the printer it became (by serial, else address)."""
    found = list(
        session.exec(
            select(DiscoveryFound)
            .where(DiscoveryFound.job_id == job.id)
            .order_by(col(DiscoveryFound.found_at), col(DiscoveryFound.address))
        ).all()
    )
    if not found:
        return []
    addresses = {f.address for f in found}
    serials = {f.serial for f in found if f.serial}
    printers = session.exec(
        select(Printer).where(
            Printer.site_id == job.site_id,
            col(Printer.removed_at).is_(None),
            col(Printer.address).in_(addresses) | col(Printer.serial).in_(serials),
        )
    ).all()
    by_serial = {p.serial: p for p in printers if p.serial}
    by_address = {(p.address, p.port): p for p in printers}
    out = []
    for f in found:
        p = (by_serial.get(f.serial) if f.serial else None) or by_address.get((f.address, f.port))
        out.append(
            FoundOut(
                address=f.address,
                port=f.port,
                vendor=f.vendor,
                model=f.model,
                serial=f.serial,
                name=(p.name if p else None) or f.sys_name,
                printer_id=p.id if p else None,
                monitored=p.monitored if p else None,
                found_at=f.found_at,
            )
        )
    return out


def job_out(job: DiscoveryJob, found: Sequence[FoundOut] = ()) -> DiscoveryJobOut:
    """Return the API view of a job."""
    return DiscoveryJobOut(
        id=job.id,
        site_id=job.site_id,
        state=job.state,
        running=job.state in RUNNING_STATES,
        targets=list(job.targets or []),
        credential_sets=job.credential_sets,
        rate_pps=job.rate_pps,
        time_limit_s=job.time_limit_s,
        requested_by=job.requested_by,
        requested_at=job.requested_at,
        probed=job.probed,
        total=job.total,
        percent=progress_percent(job.state, job.probed, job.total),
        live=job.live,
        printers_found=max(job.printers_found, len(found)),
        non_printers=job.non_printers,
        elapsed_s=job.elapsed_s,
        remaining_s=job.remaining_s,
        bytes_sent=job.bytes_sent,
        bytes_received=job.bytes_received,
        error=job.error,
        cancel_requested_at=job.cancel_requested_at,
        finished_at=job.finished_at,
        found=list(found),
    )


def progress_percent(state: str, probed: int, total: int) -> float:
    """Return how far a sweep is, 0..100 (a finished one is 100 whatever it probed)."""
    if state in FINISHED_STATES:
        return 100.0
    if total <= 0:
        return 0.0
    return round(max(0.0, min(100.0, probed * 100.0 / total)), 1)


JOBS = Listing(
    fields={
        "id": field(col(DiscoveryJob.id), "str"),
        "requested_at": field(col(DiscoveryJob.requested_at), "datetime"),
        "finished_at": field(col(DiscoveryJob.finished_at), "datetime"),
        "state": field(col(DiscoveryJob.state), "str"),
        "site_id": field(col(DiscoveryJob.site_id), "str"),
        "printers_found": field(col(DiscoveryJob.printers_found), "int"),
    },
    default="-requested_at",
)
