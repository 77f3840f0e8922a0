"""A user's API tokens: minted for scripts (the secret shown once), listed, revoked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import ApiToken, User
from tonerwatch_api.domain.access import Principal, audit, issue_token
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.listing import Listing, Page, field
from tonerwatch_api.schemas.common import ApiTokenOut, ApiTokenPage

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


def token_out(t: ApiToken, secret: str | None = None) -> ApiTokenOut:
    """Return the token as the api shows it (the secret only when just minted)."""
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


def mint_token(
    session: Session,
    who: Principal,
    secret: str,
    *,
    name: str,
    scopes: Sequence[str],
    expires_at: datetime | None,
) -> ApiTokenOut:
    """Store an API token of who's with this secret; return it with the secret (shown once)."""
    user = session.get(User, who.user_id)
    assert user is not None
    row = issue_token(
        session, user, secret, kind="api", scopes=scopes, expires_at=expires_at, name=name
    )
    audit(session, who, "token.create", str(row.id), name=name, scopes=list(scopes))
    return token_out(row, secret)


def token_page(
    session: Session, who: Principal, page: Page, *, revoked: bool | None = None
) -> ApiTokenPage:
    """Return one page of who's API tokens (never their secrets); revoked: only (not) revoked."""
    base = select(ApiToken).where(ApiToken.user_id == who.user_id, ApiToken.kind == "api")
    if revoked is not None:
        gone = col(ApiToken.revoked_at)
        base = base.where(gone.is_not(None) if revoked else gone.is_(None))
    rows, nxt = TOKENS.fetch(session, base, page.order, page.cursor, page.limit)
    return ApiTokenPage(items=[token_out(t) for t in rows], next_cursor=nxt)


def revoke_token(session: Session, who: Principal, token_id: int) -> None:
    """Revoke one of who's API tokens (again: nothing changes)."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != who.user_id:
        raise NotFound(f"token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.add(row)
        audit(session, who, "token.revoke", str(row.id))


def api_tokens(session: Session, user_id: int) -> list[ApiToken]:
    """Return the user's API tokens, newest first."""
    q = (
        select(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.kind == "api")
        .order_by(col(ApiToken.id).desc())
    )
    return list(session.exec(q).all())
