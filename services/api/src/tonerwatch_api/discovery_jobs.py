"""Discovery jobs: the table, the projection of Discovery* and PrinterFound events, and the job view."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import JSON, Column, Index
from sqlmodel import Field as SqlField
from sqlmodel import Session, SQLModel, col, select

from tonerwatch_api.db import DEFAULT_TENANT, ensure_site
from tonerwatch_api.models import Printer, Site, UTCDateTime, utcnow
from tonerwatch_api.projections import add_to_outbox
from tonerwatch_api.store import NotFound, Principal, audit, get_site
from tonerwatch_shared.events import (
    DiscoveryCancelled,
    DiscoveryFinished,
    DiscoveryProgress,
    DiscoveryRequested,
    Event,
    PrinterFound,
    SnmpCredentials,
)

# States a job passes through; the last four are how DiscoveryFinished says it ended.
RUNNING_STATES = frozenset({"requested", "running"})
FINISHED_STATES = frozenset({"completed", "time_limit", "cancelled", "failed"})
_TARGET = re.compile(r"^[A-Za-z0-9.:/_\-\[\]%]+$")


def _ts(nullable: bool = True) -> Any:
    return SqlField(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class DiscoveryJob(SQLModel, table=True):
    """One sweep: what was asked, how far it got (DiscoveryProgress), how it ended (Finished)."""

    __tablename__ = "discovery_jobs"
    __table_args__ = (Index("ix_discovery_jobs_site_requested", "site_id", "requested_at"),)
    id: str = SqlField(primary_key=True, max_length=128)
    site_id: str = SqlField(foreign_key="sites.id", max_length=64)
    targets: list[str] | None = SqlField(default=None, sa_column=Column(JSON(), nullable=True))
    # How many credential sets were tried; the sets themselves are secrets and not kept here.
    credential_sets: int = 1
    port: int = 161
    rate_pps: float = 200.0
    time_limit_s: float | None = None
    requested_by: str | None = SqlField(default=None, max_length=100)
    requested_at: datetime = SqlField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    state: str = SqlField(default="requested", max_length=16)
    probed: int = 0
    total: int = 0
    live: int = 0
    printers_found: int = 0
    non_printers: int | None = None
    elapsed_s: float = 0.0
    remaining_s: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    error: str | None = None
    progress_at: datetime | None = _ts()
    cancel_requested_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class DiscoveryFound(SQLModel, table=True):
    """A printer a job found (from PrinterFound with its job_id), as the event described it."""

    __tablename__ = "discovery_found"
    job_id: str = SqlField(primary_key=True, max_length=128)
    address: str = SqlField(primary_key=True, max_length=255)
    port: int = SqlField(primary_key=True)
    vendor: str | None = SqlField(default=None, max_length=100)
    model: str | None = SqlField(default=None, max_length=200)
    serial: str | None = SqlField(default=None, max_length=100)
    sys_name: str | None = SqlField(default=None, max_length=200)
    credentials_name: str | None = SqlField(default=None, max_length=100)
    found_at: datetime = SqlField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


# --- REST bodies ---------------------------------------------------------------------------------


class DiscoveryJobIn(BaseModel):
    """A sweep to start: what to probe, with which SNMP credentials, how fast, for how long."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "targets": ["192.0.2.0/24", "printer7.example.com"],
                    "communities": ["public"],
                    "rate_pps": 100,
                    "time_limit_s": 300,
                }
            ]
        },
    )
    site_id: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Default site if unset",
    )
    targets: list[str] = Field(
        min_length=1, max_length=64, description="CIDR blocks, ranges (a-b), addresses, DNS names"
    )
    communities: list[str] = Field(
        default_factory=list, max_length=8, description="SNMPv2c communities to try, in order"
    )
    credentials: list[SnmpCredentials] = Field(
        default_factory=list, max_length=8, description="Full credential sets (e.g. SNMPv3)"
    )
    port: int = Field(default=161, ge=1, le=65535)
    rate_pps: float = Field(default=200.0, gt=0, le=5000, description="Probes per second")
    time_limit_s: float | None = Field(default=None, gt=0, le=86400, description="Stop after")
    timeout_s: float = Field(default=1.0, gt=0, le=30, description="Per-probe answer timeout")

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        out = [t.strip() for t in value if t.strip()]
        if not out:
            raise ValueError("give at least one address, range, CIDR block or name")
        for t in out:
            if len(t) > 255 or not _TARGET.match(t):
                raise ValueError(f"{t[:60]!r} is not an address, range, CIDR block or name")
        return out

    @field_validator("communities")
    @classmethod
    def _communities(cls, value: list[str]) -> list[str]:
        out = [c for c in value if c]
        if any(len(c) > 64 for c in out):
            raise ValueError("a community is at most 64 characters")
        return out

    def credential_sets(self) -> tuple[SnmpCredentials, ...]:
        """Return the credential sets to try: full sets first, then communities, else 'public'."""
        sets = list(self.credentials) + [SnmpCredentials(community=c) for c in self.communities]
        return tuple(sets) or (SnmpCredentials(),)


# Examples in the OpenAPI document: a finished sweep of one /24 that found one printer.
_FOUND: dict[str, Any] = {
    "address": "192.0.2.31",
    "port": 161,
    "vendor": "HP",
    "model": "HP Color LaserJet Pro M452nw",
    "serial": "VNB3R12345",
    "name": "NPI4D5E6F",
    "printer_id": "p-3f2a9c01de",
    "monitored": True,
    "found_at": "2025-03-14T09:30:02Z",
}
_JOB: dict[str, Any] = {
    "id": "j-5e0c1a7b9d24",
    "site_id": "acme-hq",
    "state": "completed",
    "running": False,
    "targets": ["192.0.2.0/24"],
    "credential_sets": 1,
    "rate_pps": 200.0,
    "time_limit_s": 300.0,
    "requested_by": "jdoe",
    "requested_at": "2025-03-14T09:30:00Z",
    "probed": 254,
    "total": 254,
    "percent": 100.0,
    "live": 3,
    "printers_found": 1,
    "non_printers": 2,
    "elapsed_s": 2.4,
    "remaining_s": None,
    "bytes_sent": 10496,
    "bytes_received": 1590,
    "error": None,
    "cancel_requested_at": None,
    "finished_at": "2025-03-14T09:30:03Z",
    "found": [_FOUND],
}


class FoundOut(BaseModel):
    """A printer a job found, and what became of it (printer id, monitored)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_FOUND]})
    address: str
    port: int
    vendor: str | None
    model: str | None
    serial: str | None
    name: str | None
    printer_id: str | None = Field(description="The printer it became (None until stored)")
    monitored: bool | None
    found_at: datetime


class DiscoveryJobOut(BaseModel):
    """A sweep and its progress (no credentials)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_JOB]})
    id: str
    site_id: str
    state: str
    running: bool
    targets: list[str]
    credential_sets: int
    rate_pps: float
    time_limit_s: float | None
    requested_by: str | None
    requested_at: datetime
    probed: int
    total: int
    percent: float = Field(description="probed / total, 0..100")
    live: int
    printers_found: int
    non_printers: int | None
    elapsed_s: float
    remaining_s: float | None
    bytes_sent: int
    bytes_received: int
    error: str | None
    cancel_requested_at: datetime | None
    finished_at: datetime | None
    found: list[FoundOut] = Field(default_factory=list)


class DiscoveryJobPage(BaseModel):
    """One page of sweeps; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    # Lists leave out what each sweep found (GET /discovery/jobs/{id} has it).
                    "items": [{**_JOB, "found": []}],
                    "next_cursor": "eyJzIjoiLXJlcXVlc3RlZF9hdCIsInYiOlsiMjAyNS0wMy0xNFQwOTozMDowMCswMDowMCIsImotNWUwYzFhN2I5ZDI0Il19",
                }
            ]
        }
    )
    items: list[DiscoveryJobOut]
    next_cursor: str | None


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


# --- projection ----------------------------------------------------------------------------------


def _job_for(session: Session, event: DiscoveryRequested | _JobEvents) -> DiscoveryJob:
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


_JobEvents = DiscoveryCancelled | DiscoveryProgress | DiscoveryFinished


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


JOB_TABLES: tuple[type[SQLModel], ...] = (DiscoveryJob, DiscoveryFound)
