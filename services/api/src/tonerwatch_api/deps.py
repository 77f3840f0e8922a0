"""What routes and pages depend on: app state, the caller, path and list parameters, change()."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Header, HTTPException, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.domain.access import NotProvider, Principal, act_in, authenticate
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.domain.history import Resolution, choose_resolution
from tonerwatch_api.domain.login_limits import LoginLimiter
from tonerwatch_api.domain.retention import policy_from
from tonerwatch_api.listing import CURSOR_HELP, Listing, Page
from tonerwatch_api.live import LiveAlerts
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.outbox import Outbox
from tonerwatch_api.schemas.common import (
    EXAMPLE_PRINTER_ID,
    ROW_ID_MAX,
    RowId,
    error_response,
    not_authenticated,
)
from tonerwatch_api.security import Role, csrf_ok, role_at_least
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus

log = logging.getLogger(__name__)
T = TypeVar("T")

SESSION_COOKIE = "tw_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TENANT_HEADER = "X-TonerWatch-Tenant"
TENANT_HELP = (
    "Providers only: act in this customer tenant (its id, from GET /tenants) for this request; "
    "everything then scopes to it as for the customer's own admin, and the audit log records "
    "who acted from which tenant. Anyone else may only name their own tenant (else 403)."
)
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def principal_from(request: Request, bearer: str | None) -> tuple[Principal | None, bool]:
    """Return the principal of a bearer token or session cookie (and whether the cookie was used)."""
    token = bearer
    via_cookie = False
    if not token:
        token = request.cookies.get(SESSION_COOKIE)
        via_cookie = bool(token)
    if not token:
        return None, False
    now = datetime.now(UTC)
    engine = app_state(request).engine
    found = await run_tx(engine, lambda s: authenticate(s, token, now))
    return found, via_cookie


async def current_principal(
    request: Request,
    bearer: Annotated[str | None, Depends(oauth2)],
    tenant: Annotated[
        str | None,
        Header(alias=TENANT_HEADER, max_length=64, description=TENANT_HELP, examples=["acme"]),
    ] = None,
) -> Principal:
    """Return the authenticated caller (acting in the tenant the header names) or answer 401;
    cookie-authenticated writes need X-CSRF-Token."""
    principal, via_cookie = await principal_from(request, bearer)
    if principal is None:
        raise HTTPException(
            401,
            "not authenticated: send 'Authorization: Bearer <token>' (get one from "
            "POST /api/v1/auth/token) — a token may also be expired or revoked",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if via_cookie and request.method not in SAFE_METHODS:
        given = request.headers.get("X-CSRF-Token")
        if not csrf_ok(app_state(request).secret, principal.token_hash, given):
            raise HTTPException(
                403, "missing or wrong X-CSRF-Token for a cookie-authenticated write"
            )
    if tenant is not None and tenant != principal.tenant_id:
        return await acting_in(request, principal, tenant)
    return principal


async def acting_in(request: Request, who: Principal, tenant_id: str) -> Principal:
    """Return who acting in tenant_id; 403 unless a provider, 404 for an unknown tenant."""
    try:
        return await run_tx(app_state(request).engine, lambda s: act_in(s, who, tenant_id))
    except NotProvider as exc:
        raise HTTPException(403, str(exc)) from exc
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def need(role: Role, scope: str = "read") -> Callable[..., Awaitable[Principal]]:
    """Return a dependency that admits callers with at least role and the token scope."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if scope not in principal.scopes:
            raise HTTPException(403, f"this token lacks the {scope!r} scope")
        if not role_at_least(principal.role, role):
            raise HTTPException(403, f"needs role {role} or higher (you are {principal.role})")
        return principal

    return check


Viewer = Annotated[Principal, Depends(need("viewer", "read"))]
Operator = Annotated[Principal, Depends(need("operator", "write"))]
Admin = Annotated[Principal, Depends(need("admin", "write"))]
ProviderReads = Annotated[Principal, Depends(need("provider", "read"))]
Provider = Annotated[Principal, Depends(need("provider", "write"))]


@dataclass
class AppState:
    """Shared by the REST API, the UI and the background loops of one process."""

    engine: Engine
    bus: Bus
    settings: Settings
    secret: str
    metrics: Metrics
    outbox: Outbox
    live: LiveAlerts
    login_limiter: LoginLimiter
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # "ok", or why the schema is not at head (readiness says so until migrations have run).
    schema: str = "ok"

    @property
    def source(self) -> str:
        """Return the source name put in events this process publishes."""
        return f"api/{self.settings.instance}"


def app_state(request: Request) -> AppState:
    """Return the AppState of the app serving request."""
    st = request.app.state.tw
    assert isinstance(st, AppState)
    return st


SiteId = Annotated[str, Path(description="Site id (as created)", examples=["acme-hq"])]
PrinterId = Annotated[
    str,
    Path(description="Printer id (from GET /printers)", examples=[EXAMPLE_PRINTER_ID]),
]


def _row_id(description: str, example: int) -> Any:
    # Bounded like RowId: 2^63 and more is a 422 naming the parameter, never a database 500.
    return Path(description=description, examples=[example], ge=1, le=ROW_ID_MAX)


AlertRowId = Annotated[int, _row_id("The alert occurrence's id (AlertOut.id, not alert_id)", 1873)]
TokenId = Annotated[int, _row_id("API token id (from GET /tokens)", 12)]
UserId = Annotated[int, _row_id("User id (from GET /users)", 7)]
GroupId = Annotated[int, _row_id("Printer group id (from GET /groups)", 3)]
MailServerId = Annotated[int, _row_id("Mail server id (from GET /mail-servers)", 1)]
OrderId = Annotated[
    str, Path(description="Order id (from GET /orders)", examples=["o-8c1d2e3f4a5b"])
]
JobId = Annotated[
    str,
    Path(
        description="Discovery job id (from POST /discovery/jobs)",
        examples=["j-5e0c1a7b9d24"],
    ),
]


# Query parameters several endpoints share (the same meaning, the same limits, one description).
SitesAsked = Annotated[
    list[str] | None,
    Query(max_length=64, description="Only these sites (repeat the parameter for several)"),
]
SearchAsked = Annotated[
    str | None,
    Query(max_length=200, description="Search name, address, model, serial, location"),
]
GroupsAsked = Annotated[
    list[RowId] | None,
    Query(description="Only printers of these groups (repeat the parameter for several)"),
]
UntilAsked = Annotated[datetime | None, Query(description="ISO 8601; default now")]
PointsAsked = Annotated[int, Query(ge=1, le=50000, description="At most this many points")]
ResolutionAsked = Annotated[
    Literal["raw", "hourly", "daily", "auto"],
    Query(description="auto: raw up to 2 days, hourly up to 62, else daily"),
]


ERRORS: dict[int | str, dict[str, object]] = {
    401: not_authenticated(
        "Not authenticated: no bearer token (or session), or it expired or was revoked"
    ),
    403: error_response(
        403, "Role or scope too small", "needs role operator or higher (you are viewer)"
    ),
    404: error_response(404, "Not found (or another tenant's)", "printer 'p-3f2a9c01de' not found"),
}
# Answers of the changes that can clash with what is stored (a taken id or address, the last admin).
CONFLICT: dict[int | str, dict[str, object]] = {
    409: error_response(
        409, "Conflicts with what is stored; the error says with what", "site id 'acme-hq' is taken"
    ),
}


async def change(st: AppState, fn: Callable[[Session], T]) -> T:
    """Return fn(session) run in one transaction; after the commit, publish the events it queued."""
    out = await run_tx(st.engine, fn)
    await publish_outbox(st)
    return out


async def publish_outbox(st: AppState) -> None:
    """Publish what the last change queued; a failure is retried by the outbox loop."""
    try:
        await st.outbox.flush()
    except Exception as exc:
        log.warning("publishing queued events failed, the outbox loop retries: %r", exc)


def client_ip(request: Request) -> str | None:
    """Return the caller's address as the server sees it (uvicorn applies X-Forwarded-For
    from the proxies it trusts, --forwarded-allow-ips)."""
    return request.client.host if request.client else None


def page_of(
    listing: Listing,
    noun: str,
    *,
    limit: int = 100,
    most: int = 500,
    sort_chars: int = 100,
    cursor_chars: int = 1000,
) -> Any:
    """Return the dependency reading ?sort=&limit=&cursor= of one list (declared here, once).

    Its signature is built from objects, not annotation strings: under postponed annotations
    FastAPI would look the closure's values (listing, limit) up in this module's globals."""

    def read(sort: str | None, limit: int, cursor: str | None) -> Page:
        return Page(listing.parse_sort(sort), limit, cursor)

    def param(name: str, default: object, annotation: object) -> inspect.Parameter:
        return inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
        )

    read.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            param(
                "sort",
                None,
                Annotated[str | None, Query(max_length=sort_chars, description=listing.describe())],
            ),
            param(
                "limit",
                limit,
                Annotated[int, Query(ge=1, le=most, description=f"{noun} per page")],
            ),
            param(
                "cursor",
                None,
                Annotated[str | None, Query(max_length=cursor_chars, description=CURSOR_HELP)],
            ),
        ],
        return_annotation=Page,
    )
    return Depends(read)


def history_window(
    st: AppState,
    since: datetime | None,
    until: datetime | None,
    resolution: Literal["raw", "hourly", "daily", "auto"],
    *,
    default_days: int,
) -> tuple[datetime, datetime, Resolution]:
    """Return (start, end, resolution) of a history query; 422 when since is after until."""
    start, end = time_window(since, until, default_days=default_days)
    if resolution == "auto":
        return (
            start,
            end,
            choose_resolution(start, end, datetime.now(UTC), policy_from(st.settings)),
        )
    return start, end, resolution


def time_window(
    since: datetime | None, until: datetime | None, *, default_days: int
) -> tuple[datetime, datetime]:
    """Return (start, end): until or now, since or default_days before; 422 when reversed."""
    end = aware(until) if until else datetime.now(UTC)
    start = aware(since) if since else end - timedelta(days=default_days)
    if start > end:
        raise HTTPException(422, "since: must not be after until")
    return start, end


def aware(value: datetime) -> datetime:
    """Return value with a time zone (naive times are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
