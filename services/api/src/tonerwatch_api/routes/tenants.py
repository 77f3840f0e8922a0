"""REST /tenants: the provider's customer tenants (acting in one: the X-TonerWatch-Tenant header)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import (
    CONFLICT,
    ERRORS,
    Provider,
    ProviderReads,
    app_state,
    change,
    page_of,
)
from tonerwatch_api.domain.tenants import (
    TENANTS,
    add_tenant,
    change_tenant,
    one_tenant,
    remove_tenant,
    tenant_page,
)
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.tenants import (
    TenantCreated,
    TenantIn,
    TenantOut,
    TenantPage,
    TenantPatch,
)

router = APIRouter(prefix="/api/v1")

TenantsAsked = Annotated[Page, page_of(TENANTS, "Tenants", limit=100, most=500)]
TenantId = Annotated[str, Path(description="Tenant id (from GET /tenants)", examples=["acme"])]


@router.get("/tenants", response_model=TenantPage, tags=["tenants"], responses=ERRORS)
async def list_tenants(
    request: Request,
    who: ProviderReads,
    page: TenantsAsked,
    disabled: Annotated[bool | None, Query(description="Only (not) disabled tenants")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of the id or name")] = None,
) -> TenantPage:
    """Return every tenant (the provider's own among them), a page at a time. Providers only."""
    return await run_tx(
        app_state(request).engine, lambda s: tenant_page(s, page, disabled=disabled, q=q)
    )


@router.post(
    "/tenants",
    response_model=TenantCreated,
    status_code=201,
    tags=["tenants"],
    responses={**ERRORS, **CONFLICT},
)
async def create_tenant(request: Request, body: TenantIn, who: Provider) -> TenantCreated:
    """Create a customer tenant, with its first site and first admin when given (the admin's
    password, when not given, is generated and returned this once). Providers only."""
    st = app_state(request)
    return await change(st, lambda s: add_tenant(s, who, body, st.source))


@router.get("/tenants/{tenant_id}", response_model=TenantOut, tags=["tenants"], responses=ERRORS)
async def get_tenant(request: Request, tenant_id: TenantId, who: ProviderReads) -> TenantOut:
    """Return one tenant with its site and user counts. Providers only."""
    return await run_tx(app_state(request).engine, lambda s: one_tenant(s, tenant_id))


@router.patch(
    "/tenants/{tenant_id}",
    response_model=TenantOut,
    tags=["tenants"],
    responses={**ERRORS, **CONFLICT},
)
async def update_tenant(
    request: Request, tenant_id: TenantId, body: TenantPatch, who: Provider
) -> TenantOut:
    """Rename a tenant or disable it (its users and tokens are refused at once, its data kept)
    or enable it again. Providers only; their own tenant cannot be disabled."""
    return await change(app_state(request), lambda s: change_tenant(s, who, tenant_id, body))


@router.delete(
    "/tenants/{tenant_id}", status_code=204, tags=["tenants"], responses={**ERRORS, **CONFLICT}
)
async def delete_tenant(request: Request, tenant_id: TenantId, who: Provider) -> Response:
    """Delete an empty tenant (no sites, no printer groups) with its users (409 otherwise).
    Providers only."""
    await change(app_state(request), lambda s: remove_tenant(s, who, tenant_id))
    return Response(status_code=204)
