"""Discovery job progress from the discovery service's events."""

from __future__ import annotations

from sqlmodel import Session

from tonerwatch_api.db.discovery import FINISHED_STATES, DiscoveryFound, DiscoveryJob
from tonerwatch_api.db.tx import DEFAULT_TENANT, ensure_site
from tonerwatch_shared.events import (
    DiscoveryCancelled,
    DiscoveryFinished,
    DiscoveryProgress,
    DiscoveryRequested,
    Event,
    JobEvent,
    PrinterFound,
)

# --- projection ----------------------------------------------------------------------------------


def _job_for(session: Session, event: JobEvent) -> DiscoveryJob:
    """Return the event's job, creating it when the request came from elsewhere (scheduled)."""
    job = session.get(DiscoveryJob, event.job_id)
    if job is None:
        ensure_site(session, event.site_id, DEFAULT_TENANT)
        job = DiscoveryJob(id=event.job_id, site_id=event.site_id, requested_at=event.occurred_at)
        if isinstance(event, DiscoveryRequested):
            job.targets = list(event.targets)
            job.credential_sets = len(event.credentials)
            job.port = event.port
            job.rate_pps = event.rate_pps
            job.time_limit_s = event.time_limit_s
            job.requested_by = event.source
        session.add(job)
        session.flush()
    return job


def apply_job_event(session: Session, event: Event) -> str:
    """Apply a Discovery* event or a job's PrinterFound; return "applied" or "ignored".

    Idempotent by construction: progress only moves forward, the end is written once, a found
    printer is keyed by (job, address, port).
    """
    if isinstance(event, DiscoveryRequested):
        _job_for(session, event)
        return "applied"
    if isinstance(event, DiscoveryCancelled):
        job = _job_for(session, event)
        if job.cancel_requested_at is None:
            job.cancel_requested_at = event.occurred_at
            session.add(job)
        return "applied"
    if isinstance(event, DiscoveryProgress):
        job = _job_for(session, event)
        if job.state in FINISHED_STATES:
            return "ignored"
        if job.progress_at is not None and event.occurred_at <= job.progress_at:
            return "ignored"  # redelivered or out of order: the newer progress stays
        job.state = "running"
        job.probed, job.total, job.live = event.probed, event.total, event.live
        job.printers_found = event.printers_found
        job.elapsed_s, job.remaining_s = event.elapsed_s, event.remaining_s
        job.progress_at = event.occurred_at
        session.add(job)
        return "applied"
    if isinstance(event, DiscoveryFinished):
        job = _job_for(session, event)
        if job.state in FINISHED_STATES:
            return "ignored"
        job.state = event.end_condition
        job.probed, job.total, job.live = event.probed, event.total, event.live
        job.printers_found, job.non_printers = event.printers, event.non_printers
        job.elapsed_s, job.remaining_s = event.elapsed_s, 0.0
        job.bytes_sent, job.bytes_received = event.bytes_sent, event.bytes_received
        job.error = event.error
        job.finished_at = event.occurred_at
        session.add(job)
        return "applied"
    if isinstance(event, PrinterFound) and event.job_id and event.identity.is_printer:
        if session.get(DiscoveryFound, (event.job_id, event.address, event.port)) is not None:
            return "ignored"
        _job_for(session, _as_job_event(event))
        ident = event.identity
        session.add(
            DiscoveryFound(
                job_id=event.job_id,
                address=event.address,
                port=event.port,
                vendor=ident.vendor,
                model=ident.model,
                serial=ident.serial,
                sys_name=ident.sys_name,
                credentials_name=event.credentials_name,
                found_at=event.occurred_at,
            )
        )
        return "applied"
    return "ignored"


def _as_job_event(event: PrinterFound) -> DiscoveryCancelled:
    # Only site and job id matter to _job_for; a found printer may beat its job's first event.
    assert event.job_id is not None
    return DiscoveryCancelled(
        source=event.source,
        site_id=event.site_id,
        job_id=event.job_id,
        occurred_at=event.occurred_at,
    )
