"""Web UI for providers: the Tenants page (list, create with first site and admin, disable) and the
header's tenant switcher (the choice is remembered in the session)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import app_state, change
from tonerwatch_api.domain.access import NotProvider, Principal, switch_session
from tonerwatch_api.domain.errors import Conflict, NotFound
from tonerwatch_api.domain.tenants import TENANTS, add_tenant, change_tenant, tenant_page
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.tenants import TenantCreated, TenantIn, TenantPatch
from tonerwatch_api.ui.common import _check_csrf, _safe_next, error_page, render, ui_user

router = APIRouter(include_in_schema=False)
PAGE_ROWS = 500  # a provider's customers on one page; GET /api/v1/tenants pages through more
TENANTS_SORT = TENANTS.parse_sort("name")


async def _provider(request: Request) -> Principal | Response:
    who = await ui_user(request)
    if who.role != "provider":
        return error_page(request, 403, "the Tenants page is for the provider's admins")
    return who


async def _page(
    request: Request,
    who: Principal,
    status: int = 200,
    errors: list[str] | None = None,
    values: dict[str, str] | None = None,
    created: TenantCreated | None = None,
) -> Response:
    def work(s: Session) -> Any:
        return tenant_page(s, Page(TENANTS_SORT, PAGE_ROWS, None)).items

    tenants = await run_tx(app_state(request).engine, work)
    return render(
        request,
        "tenants.html",
        who,
        status=status,
        tenants=tenants,
        errors=errors or [],
        values=values or {},
        created=created,
    )


@router.get("/tenants", response_class=HTMLResponse)
async def tenants_page(request: Request) -> Response:
    """Every tenant with its sites and users, the form for a new customer."""
    who = await _provider(request)
    if isinstance(who, Response):
        return who
    return await _page(request, who)


@router.post("/tenants")
async def tenants_create(request: Request) -> Response:
    """Create a customer (with its first site and admin) from the form; show the password once."""
    who = await _provider(request)
    if isinstance(who, Response):
        return who
    st = app_state(request)
    data = await _check_csrf(request, who)
    fields: dict[str, Any] = {"id": data.get("id", "").strip(), "name": data.get("name", "")}
    if data.get("site_id"):
        fields["site"] = {"id": data["site_id"].strip(), "name": data.get("site_name") or None}
    if data.get("admin_username"):
        fields["admin"] = {
            "username": data["admin_username"].strip(),
            "email": data.get("admin_email") or None,
            "password": data.get("admin_password") or None,
        }
    safe = {k: v for k, v in data.items() if k not in ("csrf", "admin_password")}
    try:
        body = TenantIn.model_validate(fields)
        made = await change(st, lambda s: add_tenant(s, who, body, st.source))
    except ValidationError as exc:
        errors = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return await _page(request, who, 422, errors, safe)
    except Conflict as exc:
        return await _page(request, who, 409, [str(exc)], safe)
    return await _page(request, who, 201, created=made)


@router.post("/tenants/{tenant_id}/disabled")
async def tenants_disable(request: Request, tenant_id: str) -> Response:
    """Disable (or enable again) a customer from its row."""
    who = await _provider(request)
    if isinstance(who, Response):
        return who
    data = await _check_csrf(request, who)
    body = TenantPatch(disabled=data.get("disabled") == "true")
    try:
        await change(app_state(request), lambda s: change_tenant(s, who, tenant_id, body))
    except (Conflict, NotFound) as exc:
        return await _page(request, who, 409, [str(exc)])
    return RedirectResponse("/tenants", status_code=303)


@router.post("/tenant-switch")
async def tenant_switch(request: Request) -> Response:
    """Make the session act in the chosen tenant (the provider's own: back home)."""
    who = await ui_user(request)
    data = await _check_csrf(request, who)
    try:
        await change(app_state(request), lambda s: switch_session(s, who, data.get("tenant", "")))
    except NotProvider as exc:
        return error_page(request, 403, str(exc))
    except NotFound as exc:
        return error_page(request, 404, str(exc))
    # Back to the page the switch was made from, unless it names one tenant's thing (a printer,
    # a sweep): the other tenant would answer 404.
    target = _safe_next(data.get("next"))
    if target.count("/") > 1:
        target = "/"
    return RedirectResponse(target, status_code=303)
