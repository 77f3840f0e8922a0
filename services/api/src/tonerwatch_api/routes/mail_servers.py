"""REST /mail-servers: SMTP servers the alerter mails the web UI's recipients through."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import (
    MailServerId,
    Provider,
    ProviderReads,
    app_state,
    change,
    page_of,
)
from tonerwatch_api.domain.mail_servers import (
    MAIL_SERVERS,
    create_mail_server,
    delete_mail_server,
    get_mail_server,
    mail_server_out,
    mail_server_page,
    patch_mail_server,
)
from tonerwatch_api.listing import Page
from tonerwatch_api.schemas.common import error_response, not_authenticated
from tonerwatch_api.schemas.mail_servers import (
    MailServerIn,
    MailServerOut,
    MailServerPage,
    MailServerPatch,
)

router = APIRouter(prefix="/api/v1")
ERRORS: dict[int | str, dict[str, object]] = {
    401: not_authenticated(),
    403: error_response(
        403,
        "Needs the provider role (mail servers serve the whole installation)",
        "needs role provider or higher (you are admin)",
    ),
    404: error_response(404, "No such mail server", "mail server 3 not found"),
}
CONFLICT: dict[int | str, dict[str, object]] = {
    409: error_response(409, "The name is taken", "a mail server named 'office-relay' exists"),
}
ServersAsked = Annotated[Page, page_of(MAIL_SERVERS, "Mail servers", limit=100, most=500)]


@router.get("/mail-servers", response_model=MailServerPage, tags=["alerting"], responses=ERRORS)
async def list_mail_servers(
    request: Request, who: ProviderReads, page: ServersAsked
) -> MailServerPage:
    """Return the mail servers set here (never their passwords), lowest priority first."""
    return await run_tx(app_state(request).engine, lambda s: mail_server_page(s, page))


@router.post(
    "/mail-servers",
    response_model=MailServerOut,
    status_code=201,
    tags=["alerting"],
    responses={**ERRORS, **CONFLICT},
)
async def add_mail_server(request: Request, body: MailServerIn, who: Provider) -> MailServerOut:
    """Add an SMTP server: the alerter sends the web UI's recipients their alert mail through it
    (the next one by priority when it is down). The password is stored sealed, never returned."""
    st = app_state(request)

    def work(s: Session) -> MailServerOut:
        return mail_server_out(
            create_mail_server(s, who, body, st.settings.default_site, st.source)
        )

    return await change(st, work)


@router.get(
    "/mail-servers/{server_id}", response_model=MailServerOut, tags=["alerting"], responses=ERRORS
)
async def read_mail_server(
    request: Request, server_id: MailServerId, who: ProviderReads
) -> MailServerOut:
    """Return one mail server (has_password says whether a password is set)."""
    return await run_tx(
        app_state(request).engine, lambda s: mail_server_out(get_mail_server(s, server_id))
    )


@router.patch(
    "/mail-servers/{server_id}",
    response_model=MailServerOut,
    tags=["alerting"],
    responses={**ERRORS, **CONFLICT},
)
async def edit_mail_server(
    request: Request, server_id: MailServerId, body: MailServerPatch, who: Provider
) -> MailServerOut:
    """Change a mail server: a password left out is kept, null removes it."""
    st = app_state(request)

    def work(s: Session) -> MailServerOut:
        row = patch_mail_server(s, who, server_id, body, st.settings.default_site, st.source)
        return mail_server_out(row)

    return await change(st, work)


@router.delete("/mail-servers/{server_id}", status_code=204, tags=["alerting"], responses=ERRORS)
async def remove_mail_server(request: Request, server_id: MailServerId, who: Provider) -> Response:
    """Remove a mail server; the alerter stops sending through it."""
    st = app_state(request)
    await change(
        st, lambda s: delete_mail_server(s, who, server_id, st.settings.default_site, st.source)
    )
    return Response(status_code=204)
