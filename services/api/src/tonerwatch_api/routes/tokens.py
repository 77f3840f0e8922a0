"""REST /tokens: a user's API tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import ERRORS, TokenId, Viewer, app_state, page_of
from tonerwatch_api.domain.tokens import TOKENS, mint_token, revoke_token, token_page
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.common import ApiTokenIn, ApiTokenOut, ApiTokenPage
from tonerwatch_api.security import new_token

router = APIRouter(prefix="/api/v1")
TokensAsked = Annotated[Page, page_of(TOKENS, "Tokens", limit=100, most=500)]


@router.post(
    "/tokens", response_model=ApiTokenOut, status_code=201, tags=["auth"], responses=ERRORS
)
async def create_api_token(request: Request, body: ApiTokenIn, who: Viewer) -> ApiTokenOut:
    """Create a long-lived API token for scripts; the secret is shown only in this answer."""
    if "write" in body.scopes and "write" not in who.scopes:
        raise HTTPException(403, "scopes: a read-only caller cannot mint a write token")
    secret = new_token()
    expires = (
        datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    )
    return await run_tx(
        app_state(request).engine,
        lambda s: mint_token(
            s, who, secret, name=body.name, scopes=body.scopes, expires_at=expires
        ),
    )


@router.get("/tokens", response_model=ApiTokenPage, tags=["auth"], responses=ERRORS)
async def list_api_tokens(
    request: Request,
    who: Viewer,
    page: TokensAsked,
    revoked: Annotated[
        bool | None, Query(description="true: only revoked; false: only live; unset: both")
    ] = None,
) -> ApiTokenPage:
    """Return the caller's API tokens (never their secrets), a page at a time."""
    return await run_tx(
        app_state(request).engine, lambda s: token_page(s, who, page, revoked=revoked)
    )


@router.delete("/tokens/{token_id}", status_code=204, tags=["auth"], responses=ERRORS)
async def revoke_api_token(request: Request, token_id: TokenId, who: Viewer) -> Response:
    """Revoke one of the caller's API tokens."""
    await run_tx(app_state(request).engine, lambda s: revoke_token(s, who, token_id))
    return Response(status_code=204)
