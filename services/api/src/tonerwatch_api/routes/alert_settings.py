"""REST /sites/{id}/alert-settings and /users/{id}/alerting."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import Admin, SiteId, UserId, Viewer, app_state, change
from tonerwatch_api.domain.access import Principal
from tonerwatch_api.domain.alert_settings import (
    save_settings,
    set_user_alerting,
    settings_out,
    tenant_user,
    user_alerting_out,
)
from tonerwatch_api.domain.tenancy import get_site
from tonerwatch_api.schemas.alert_settings import (
    AlertSettingsIn,
    AlertSettingsOut,
    UserAlertingIn,
    UserAlertingOut,
)
from tonerwatch_api.schemas.common import error_response, not_authenticated
from tonerwatch_api.security import role_at_least

router = APIRouter(prefix="/api/v1")
_CRITICAL_ABOVE_LOW = "Value error, must not be above low_percent (20)"
ERRORS: dict[int | str, dict[str, object]] = {
    401: not_authenticated(),
    403: error_response(
        403, "Needs the admin role", "needs role admin or higher (you are operator)"
    ),
    404: error_response(404, "Not found (or another tenant's)", "site 'acme-hq' not found"),
    422: error_response(
        422,
        "Invalid settings; the error names the field",
        f"invalid request: critical_percent: {_CRITICAL_ABOVE_LOW}",
        [{"field": "critical_percent", "location": "body", "message": _CRITICAL_ABOVE_LOW}],
    ),
}


@router.get(
    "/sites/{site_id}/alert-settings",
    response_model=AlertSettingsOut,
    tags=["alerting"],
    responses=ERRORS,
)
async def get_alert_settings(request: Request, site_id: SiteId, who: Admin) -> AlertSettingsOut:
    """Return a site's thresholds, lead time, overrides and mail recipients."""

    def work(s: Session) -> AlertSettingsOut:
        return settings_out(s, get_site(s, who.tenant_id, site_id))

    return await run_tx(app_state(request).engine, work)


@router.put(
    "/sites/{site_id}/alert-settings",
    response_model=AlertSettingsOut,
    tags=["alerting"],
    responses=ERRORS,
)
async def put_alert_settings(
    request: Request, site_id: SiteId, body: AlertSettingsIn, who: Admin
) -> AlertSettingsOut:
    """Replace a site's alert settings and announce them to the alerter (AlertSettingsConfigured)."""
    st = app_state(request)
    out = await change(st, lambda s: save_settings(s, who, site_id, body, st.source))
    return out


@router.get(
    "/users/{user_id}/alerting",
    response_model=UserAlertingOut,
    tags=["users"],
    responses=ERRORS,
)
async def get_user_alerting(request: Request, user_id: UserId, who: Viewer) -> UserAlertingOut:
    """Return a user's alert mail address, responsible sites and groups (admins: anyone's; others: their own)."""

    def work(s: Session) -> UserAlertingOut:
        _may_edit(who, user_id)
        return user_alerting_out(s, tenant_user(s, who.tenant_id, user_id))

    return await run_tx(app_state(request).engine, work)


@router.put(
    "/users/{user_id}/alerting",
    response_model=UserAlertingOut,
    tags=["users"],
    responses=ERRORS,
)
async def put_user_alerting(
    request: Request, user_id: UserId, body: UserAlertingIn, who: Admin
) -> UserAlertingOut:
    """Set a user's alert mail address, responsible sites and groups; re-announces the sites concerned."""
    st = app_state(request)

    def work(s: Session) -> UserAlertingOut:
        return set_user_alerting(s, who, tenant_user(s, who.tenant_id, user_id), body, st.source)

    return await change(st, work)


def _may_edit(who: Principal, user_id: int) -> None:
    if who.user_id != user_id and not role_at_least(who.role, "admin"):
        raise HTTPException(403, "only admins see other users' settings")
