"""REST /tokens: a user's API tokens."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import ApiToken, User
from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import (
    ERRORS,
    TokenId,
    Viewer,
    app_state,
    page_of,
)
from tonerwatch_api.domain.access import audit, issue_token
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.listing import Listing, Page, field
from tonerwatch_api.schemas.common import (
    ApiTokenIn,
    ApiTokenOut,
    ApiTokenPage,
)
from tonerwatch_api.security import new_token

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")


# --- tokens and users ----------------------------------------------------------------------------


def _token_out(t: ApiToken, secret: str | None = None) -> ApiTokenOut:
    return ApiTokenOut(
        id=t.id or 0,
        name=t.name,
        scopes=t.scopes.split(),
        created_at=t.created_at,
        expires_at=t.expires_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
        token=secret,
    )


@router.post(
    "/tokens", response_model=ApiTokenOut, status_code=201, tags=["auth"], responses=ERRORS
)
async def create_api_token(request: Request, body: ApiTokenIn, who: Viewer) -> ApiTokenOut:
    """Create a long-lived API token for scripts; the secret is shown only in this answer."""
    if "write" in body.scopes and "write" not in who.scopes:
        raise HTTPException(403, "scopes: a read-only caller cannot mint a write token")
    token = new_token()
    expires = (
        datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    )

    def work(s: Session) -> ApiTokenOut:
        user = s.get(User, who.user_id)
        assert user is not None
        row = issue_token(
            s, user, token, kind="api", scopes=body.scopes, expires_at=expires, name=body.name
        )
        audit(s, who, "token.create", str(row.id), name=body.name, scopes=body.scopes)
        return _token_out(row, token)

    return await run_tx(app_state(request).engine, work)


TOKENS = Listing(
    fields={
        "id": field(col(ApiToken.id), "int"),
        "name": field(col(ApiToken.name), "str"),
        "created_at": field(col(ApiToken.created_at), "datetime"),
        "expires_at": field(col(ApiToken.expires_at), "datetime"),
        "last_used_at": field(col(ApiToken.last_used_at), "datetime"),
    },
    default="id",
)
TokensAsked = Annotated[Page, page_of(TOKENS, "Tokens", limit=100, most=500)]


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

    def work(s: Session) -> ApiTokenPage:
        base = select(ApiToken).where(ApiToken.user_id == who.user_id, ApiToken.kind == "api")
        if revoked is not None:
            gone = col(ApiToken.revoked_at)
            base = base.where(gone.is_not(None) if revoked else gone.is_(None))
        rows, nxt = TOKENS.fetch(s, base, page.order, page.cursor, page.limit)
        return ApiTokenPage(items=[_token_out(t) for t in rows], next_cursor=nxt)

    return await run_tx(app_state(request).engine, work)


@router.delete("/tokens/{token_id}", status_code=204, tags=["auth"], responses=ERRORS)
async def revoke_api_token(request: Request, token_id: TokenId, who: Viewer) -> Response:
    """Revoke one of the caller's API tokens."""

    def work(s: Session) -> None:
        row = s.get(ApiToken, token_id)
        if row is None or row.user_id != who.user_id:
            raise NotFound(f"token {token_id} not found")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            s.add(row)
            audit(s, who, "token.revoke", str(row.id))

    await run_tx(app_state(request).engine, work)
    return Response(status_code=204)
