"""Mail servers set in the web UI: stored with the password sealed, announced to the alerter.

Mail servers serve the whole installation (the alerter sends every site's web UI recipients their
mail through them), so only a provider (the installation's own admins) sets them. Each change is
announced whole as MailServerConfigured through the outbox; the password travels sealed.
"""

from __future__ import annotations

from typing import Literal, cast

from sqlmodel import Session, col, select

from tonerwatch_api.db.alerting import MailServer
from tonerwatch_api.db.models import utcnow
from tonerwatch_api.domain.access import Principal, audit
from tonerwatch_api.domain.errors import Conflict, NotFound
from tonerwatch_api.listing import Listing, Page, field
from tonerwatch_api.projections.outbox import add_to_outbox
from tonerwatch_api.schemas.mail_servers import (
    MailServerIn,
    MailServerOut,
    MailServerPage,
    MailServerPatch,
)
from tonerwatch_shared.events import MailServerConfigured

MAIL_SERVERS = Listing(
    fields={
        "id": field(col(MailServer.id), "int"),
        "name": field(col(MailServer.name), "str"),
        "priority": field(col(MailServer.priority), "int"),
    },
    default="priority",
)


def mail_server_out(row: MailServer) -> MailServerOut:
    """Return a server as the API shows it: whether it has a password, never the password."""
    return MailServerOut(
        id=row.id or 0,
        name=row.name,
        priority=row.priority,
        host=row.host,
        port=row.port,
        security=cast(Literal["starttls", "tls", "none"], row.security),
        username=row.username,
        has_password=bool(row.password),
        sender=row.sender,
        validate_certs=row.validate_certs,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


def mail_server_page(session: Session, page: Page) -> MailServerPage:
    """Return one page of the mail servers (by priority unless sorted otherwise)."""
    rows, nxt = MAIL_SERVERS.fetch(session, select(MailServer), page.order, page.cursor, page.limit)
    return MailServerPage(items=[mail_server_out(r) for r in rows], next_cursor=nxt)


def all_mail_servers(session: Session) -> list[MailServer]:
    """Return every mail server, by priority then name (a handful: the Settings page lists them)."""
    q = select(MailServer).order_by(col(MailServer.priority), col(MailServer.name))
    return list(session.exec(q).all())


def get_mail_server(session: Session, server_id: int) -> MailServer:
    """Return the server, or raise NotFound."""
    row = session.get(MailServer, server_id)
    if row is None:
        raise NotFound(f"mail server {server_id} not found")
    return row


def announce_mail_server(
    session: Session, row: MailServer, site_id: str, source: str, *, deleted: bool = False
) -> MailServerConfigured:
    """Queue the server, whole, for the alerter (after a flush sealed its password)."""
    assert row.id is not None
    event = MailServerConfigured(
        source=source,
        site_id=site_id,
        server_id=row.id,
        revision=row.revision,
        deleted=deleted,
        name=row.name,
        priority=row.priority,
        host=row.host,
        port=row.port,
        security=cast(Literal["starttls", "tls", "none"], row.security),
        username=row.username,
        password=None if deleted else row.password,
        sender=row.sender,
        validate_certs=row.validate_certs,
    )
    add_to_outbox(session, event)
    return event


def _name_free(session: Session, name: str, server_id: int | None = None) -> None:
    taken = session.exec(select(MailServer.id).where(MailServer.name == name)).first()
    if taken is not None and taken != server_id:
        raise Conflict(f"a mail server named {name!r} exists")


def create_mail_server(
    session: Session, who: Principal, body: MailServerIn, site_id: str, source: str
) -> MailServer:
    """Store a new server (password sealed by the flush) and announce it."""
    _name_free(session, body.name)
    row = MailServer(**body.model_dump(), revision=1, updated_by=who.username)
    session.add(row)
    session.flush()
    announce_mail_server(session, row, site_id, source)
    audit(session, who, "mail_server.create", row.name, host=row.host, port=row.port)
    return row


def patch_mail_server(
    session: Session,
    who: Principal,
    server_id: int,
    body: MailServerPatch,
    site_id: str,
    source: str,
) -> MailServer:
    """Change some fields of a server (a password left out is kept, null removes it); announce it."""
    row = get_mail_server(session, server_id)
    changes = body.model_dump(exclude_unset=True)
    if body.name is not None:
        _name_free(session, body.name, server_id)
    for name, value in changes.items():
        if value is None and name not in ("username", "password"):
            continue  # null on a required field: nothing to change
        setattr(row, name, value)
    row.revision += 1
    row.updated_by = who.username
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    announce_mail_server(session, row, site_id, source)
    audit(session, who, "mail_server.update", row.name, fields=sorted(changes))
    return row


def delete_mail_server(
    session: Session, who: Principal, server_id: int, site_id: str, source: str
) -> None:
    """Remove a server; the alerter stops sending through it."""
    row = get_mail_server(session, server_id)
    row.revision += 1
    announce_mail_server(session, row, site_id, source, deleted=True)
    session.delete(row)
    audit(session, who, "mail_server.delete", row.name)


def reannounce_mail_servers(session: Session, site_id: str, source: str) -> int:
    """Queue every server again, same revision (at api start: an alerter that lost them learns
    them again; one that has them keeps what it has); return how many."""
    rows = all_mail_servers(session)
    for row in rows:
        announce_mail_server(session, row, site_id, source)
    return len(rows)
