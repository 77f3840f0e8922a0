"""REST: enrol a site's collector with a one-time token, and revoke it (a hub only: TONERWATCH_HUB_DIR).

With TONERWATCH_HUB_SYNC the hub folder is only read (the site's files for an enrolment) and the
hub's wanted sites are recorded in the NATS bucket <prefix>_HUB_SITES: `tonerwatch hub-sync`
beside each hub nats-server renders its config from it, reloads and drops a revoked leaf.
Without it the api rewrites the folder and reloads every hub server itself (compose without
the sidecar).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import nats
import nats.errors
from fastapi import APIRouter, HTTPException, Request
from nats.js.kv import KeyValue
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
    read_state,
    revoke_collector,
    site_bundle,
    system_password,
)
from tonerwatch_shared.hub_sync import (
    HUB_SITES_BUCKET,
    HUB_SITES_HISTORY,
    read_site,
    record_site,
)

log = logging.getLogger("tonerwatch.api.enrolments")
router = APIRouter(prefix="/api/v1")
NATS_TIMEOUT_S = 5.0
DEFAULT_ENROLMENT = EnrolmentIn()  # no body: the default lifetime


def _hub_dir(st: AppState) -> Path:
    if st.settings.hub_dir is None:
        raise Conflict("this installation is not a hub: set TONERWATCH_HUB_DIR to the hub folder")
    return st.settings.hub_dir


async def _hub_sites(st: AppState) -> KeyValue:
    try:
        return await st.bus.key_value(HUB_SITES_BUCKET, history=HUB_SITES_HISTORY)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        log.warning("the hub's sites bucket is out of reach: %r", exc)
        raise HTTPException(503, "the hub's nats-server is out of reach; try again") from None


async def _refuse_if_revoked(st: AppState, site_id: str) -> None:
    """With hub-sync: a site the bucket records as revoked cannot enrol (its files may remain
    in a read-only folder)."""
    if not st.settings.hub_sync:
        return
    try:
        record = await read_site(await _hub_sites(st), site_id)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        log.warning("reading the hub's sites bucket: %r", exc)
        raise HTTPException(503, "the hub's nats-server is out of reach; try again") from None
    if record is not None and record.revoked:
        raise Conflict(
            f"site {site_id!r} was revoked at this hub: re-admit it with a new password "
            "(`tonerwatch hub-config`) first"
        )


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
    await _refuse_if_revoked(st, site_id)
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

    bundle = await run_tx(st.engine, work)
    if st.settings.hub_sync:
        # The hub's wanted sites say so (a revocation since the token was made wins: sticky).
        try:
            kv = await st.bus.key_value(HUB_SITES_BUCKET, history=HUB_SITES_HISTORY)
            await record_site(kv, bundle.site, revoked=False, by="enrolment")
            found = await read_site(kv, bundle.site)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            # The folder admits the site already; hub-sync enforces any revocation regardless.
            log.warning("enrolling site %s: the bucket was not written: %r", bundle.site, exc)
            found = None
        if found is not None and found.revoked:
            raise Conflict(f"site {bundle.site!r} was revoked at this hub")
    return bundle


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
    if st.settings.hub_sync:
        changed, kicked = await _revoke_in_bucket(st, hub_dir, site_id, who.username)
    else:
        changed, kicked = await _revoke_in_folder(st, hub_dir, site_id)

    def record(s: Session) -> int:
        voided = void_enrolments(s, who, site_id)
        record_revocation(s, who, site_id, kicked)
        return voided

    voided = await run_tx(st.engine, record)
    return RevokeOut(site_id=site_id, changed=changed, kicked=kicked, voided_enrolments=voided)


async def _revoke_in_bucket(
    st: AppState, hub_dir: Path, site_id: str, by: str
) -> tuple[bool, int | None]:
    """Record the revocation; each hub server's hub-sync reloads and drops the live leaf."""
    if site_id not in _folder_sites(hub_dir):  # only a site the hub knows (a typo must not pass)
        raise Conflict(f"site {site_id!r} is not one of this hub's")
    kv = await _hub_sites(st)
    try:
        changed = await record_site(kv, site_id, revoked=True, by=by)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        log.warning("revoking site %s: the bucket write failed: %r", site_id, exc)
        raise HTTPException(503, "the hub's nats-server is out of reach; try again") from None
    return changed, None


def _folder_sites(hub_dir: Path) -> set[str]:
    try:
        return {e.site for e in read_state(hub_dir)[1]}
    except HubError:
        return set()


async def _revoke_in_folder(st: AppState, hub_dir: Path, site_id: str) -> tuple[bool, int]:
    """Rewrite the folder, reload every hub server and drop the live leaf (no hub-sync)."""
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
    return changed, kicked
