"""REST: enrol a site's collector with a one-time token, and revoke it (a hub only: TONERWATCH_HUB_DIR)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import nats
import nats.errors
from fastapi import APIRouter, HTTPException, Request
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import CONFLICT, ERRORS, Admin, AppState, SiteId, app_state
from tonerwatch_api.domain.enrolments import (
    create_enrolment,
    record_revocation,
    redeem_enrolment,
    void_enrolments,
)
from tonerwatch_api.domain.errors import Conflict
from tonerwatch_api.domain.tenancy import get_site
from tonerwatch_api.schemas.enrolments import (
    EnrolIn,
    EnrolmentIn,
    EnrolmentOut,
    RevokeOut,
    SiteBundle,
)
from tonerwatch_api.security import new_enrolment_token, token_hash
from tonerwatch_shared.hub import (
    SYSTEM_USER,
    HubError,
    revoke_collector,
    site_bundle,
    system_password,
)

log = logging.getLogger("tonerwatch.api.enrolments")
router = APIRouter(prefix="/api/v1")
NATS_TIMEOUT_S = 5.0
DEFAULT_ENROLMENT = EnrolmentIn()  # no body: the default lifetime


def _hub_dir(st: AppState) -> Path:
    if st.settings.hub_dir is None:
        raise Conflict("this installation is not a hub: set TONERWATCH_HUB_DIR to the hub folder")
    return st.settings.hub_dir


def _bundle(hub_dir: Path, site_id: str) -> SiteBundle:
    try:
        found = site_bundle(hub_dir, site_id)
    except HubError as exc:
        raise Conflict(str(exc)) from None
    return SiteBundle(
        site=site_id, hub_url=None, credentials=found["credentials"], files=found["files"]
    )


@router.post(
    "/sites/{site_id}/enrolments",
    response_model=EnrolmentOut,
    status_code=201,
    tags=["sites"],
    responses={**ERRORS, **CONFLICT},
)
async def create_site_enrolment(
    request: Request, site_id: SiteId, who: Admin, body: EnrolmentIn = DEFAULT_ENROLMENT
) -> EnrolmentOut:
    """Make a one-time enrolment token for the site's collector (shown once; expires)."""
    st = app_state(request)
    hub_dir = _hub_dir(st)
    ttl = timedelta(minutes=body.ttl_min)
    token = new_enrolment_token()

    def work(s: Session) -> EnrolmentOut:
        get_site(s, who.tenant_id, site_id)  # another tenant's site: 404, before the folder
        _bundle(hub_dir, site_id)  # a site the hub has no credentials for cannot enrol
        site, expires_at = create_enrolment(s, who, site_id, token_hash(token), ttl)
        base = st.settings.public_url or str(request.base_url).rstrip("/")
        command = f"tonerwatch collector --enrol {base} --token {token}"
        return EnrolmentOut(site_id=site, token=token, expires_at=expires_at, command=command)

    return await run_tx(st.engine, work)


@router.post("/enrol", response_model=SiteBundle, tags=["sites"], responses={**ERRORS, **CONFLICT})
async def enrol_collector(request: Request, body: EnrolIn) -> SiteBundle:
    """Trade a one-time enrolment token for the site's collector credentials (no login: the token is it)."""
    st = app_state(request)
    hub_dir = _hub_dir(st)

    def work(s: Session) -> SiteBundle:
        site_id = redeem_enrolment(s, token_hash(body.token))
        # Read inside the transaction: if the folder cannot give them, the token stays unused.
        bundle = _bundle(hub_dir, site_id)
        return bundle.model_copy(update={"hub_url": st.settings.hub_leaf_url})

    return await run_tx(st.engine, work)


@router.post(
    "/sites/{site_id}/revoke-collector",
    response_model=RevokeOut,
    tags=["sites"],
    responses={**ERRORS, **CONFLICT},
)
async def revoke_site_collector(request: Request, site_id: SiteId, who: Admin) -> RevokeOut:
    """Revoke the site's collector: the hub refuses its credentials from now on and drops its link."""
    st = app_state(request)
    hub_dir = _hub_dir(st)
    await run_tx(st.engine, lambda s: get_site(s, who.tenant_id, site_id))
    try:
        password = system_password(hub_dir)
        system = await nats.connect(
            st.settings.require_nats_url(),
            user=SYSTEM_USER,
            password=password,
            name=f"api-revoke-{site_id}",
            connect_timeout=NATS_TIMEOUT_S,
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )
    except HubError as exc:
        raise Conflict(str(exc)) from None
    except (OSError, nats.errors.Error) as exc:
        log.warning("revoking site %s: the hub's nats-server is out of reach: %r", site_id, exc)
        raise HTTPException(503, "the hub's nats-server is out of reach; try again") from None
    try:
        changed, kicked = await revoke_collector(hub_dir, site_id, system, NATS_TIMEOUT_S)
    except HubError as exc:
        raise Conflict(str(exc)) from None
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        log.warning("revoking site %s: reload or kick failed: %r", site_id, exc)
        raise HTTPException(
            503, "the config was rewritten but the hub did not confirm; try again"
        ) from None
    finally:
        await system.close()

    def record(s: Session) -> int:
        voided = void_enrolments(s, who, site_id)
        record_revocation(s, who, site_id, kicked)
        return voided

    voided = await run_tx(st.engine, record)
    return RevokeOut(site_id=site_id, changed=changed, kicked=kicked, voided_enrolments=voided)
