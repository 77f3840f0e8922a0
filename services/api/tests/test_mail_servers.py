"""Mail servers set through the API: the password sealed at rest and on the bus, never returned."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.alerting import MailServer
from tonerwatch_api.db.models import AuditEntry
from tonerwatch_api.db.tx import create_user, ensure_admin, in_tx
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import Event, MailServerConfigured
from tonerwatch_shared.sealing import Sealer, is_sealed

from .test_rest import ADMIN_PW, bearer

KEY = "mail-server-sealing-key-0123456789abcdef"
SMTP_PASSWORD = "smtp-app-password-42"


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(
        session_secret="mail-secret", admin_password=ADMIN_PW, cookie_secure=False, secret_key=KEY
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(pg, bus, settings)),
        base_url="http://tw.test",
    ) as c:
        yield c


def announced(revision: int):  # type: ignore[no-untyped-def]
    def match(e: Event) -> bool:
        return isinstance(e, MailServerConfigured) and e.revision == revision

    return match


async def test_a_mail_server_is_stored_sealed_announced_and_never_shown(
    client: httpx.AsyncClient, pg: Engine, bus: Bus
) -> None:
    h = await bearer(client)
    body = {
        "name": "office-relay",
        "host": "127.0.0.1",
        "port": 2525,
        "security": "none",
        "username": "tonerwatch",
        "password": SMTP_PASSWORD,
        "sender": "tonerwatch@example.org",
    }
    r = await client.post("/api/v1/mail-servers", headers=h, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["has_password"] is True and "password" not in out
    assert SMTP_PASSWORD not in r.text
    server_id = out["id"]
    # At rest: sealed with the key.
    with Session(pg) as s:
        row = s.get(MailServer, server_id)
        assert row is not None and row.password is not None
        assert is_sealed(row.password) and Sealer(KEY).open(row.password) == SMTP_PASSWORD
    # On the bus: sealed too; the alerter opens it.
    event = await wait_for_event(
        bus, MailServerConfigured.subject_filter(bus.subjects), announced(1), timeout_s=10
    )
    assert isinstance(event, MailServerConfigured)
    assert event.host == "127.0.0.1" and event.port == 2525 and event.username == "tonerwatch"
    assert event.password and is_sealed(event.password)
    assert Sealer(KEY).open(event.password) == SMTP_PASSWORD

    # Listed by the list convention, never with the password.
    listed = await client.get("/api/v1/mail-servers", headers=h)
    assert listed.status_code == 200
    assert set(listed.json()) == {"items", "next_cursor"}
    assert [s["name"] for s in listed.json()["items"]] == ["office-relay"]
    assert SMTP_PASSWORD not in listed.text and "tw-sealed" not in listed.text

    # A change that leaves the password out keeps it; null removes it.
    r = await client.patch(f"/api/v1/mail-servers/{server_id}", headers=h, json={"port": 2526})
    assert r.status_code == 200 and r.json()["has_password"] is True and r.json()["port"] == 2526
    kept = await wait_for_event(
        bus, MailServerConfigured.subject_filter(bus.subjects), announced(2), timeout_s=10
    )
    assert isinstance(kept, MailServerConfigured) and kept.password
    assert Sealer(KEY).open(kept.password) == SMTP_PASSWORD
    r = await client.patch(f"/api/v1/mail-servers/{server_id}", headers=h, json={"password": None})
    assert r.status_code == 200 and r.json()["has_password"] is False

    # Delete: announced as deleted, with no password.
    assert (await client.delete(f"/api/v1/mail-servers/{server_id}", headers=h)).status_code == 204
    gone = await wait_for_event(
        bus, MailServerConfigured.subject_filter(bus.subjects), announced(4), timeout_s=10
    )
    assert isinstance(gone, MailServerConfigured) and gone.deleted and gone.password is None
    actions = in_tx(
        pg,
        lambda s: [
            (a.action, a.target, a.detail)
            for a in s.exec(select(AuditEntry).where(AuditEntry.action.startswith("mail_server.")))  # type: ignore[attr-defined]
        ],
    )
    assert [a for a, _, _ in actions] == [
        "mail_server.create",
        "mail_server.update",
        "mail_server.update",
        "mail_server.delete",
    ]
    assert SMTP_PASSWORD not in repr(actions)


async def test_mail_servers_refuse_bad_input_and_need_a_provider(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    h = await bearer(client)
    good = {"name": "relay", "host": "smtp.example.org", "sender": "tw@example.org"}
    for field, value in [
        ("host", "999.1.1.1"),
        ("port", 0),
        ("security", "ssl"),
        ("sender", "not an address"),
        ("password", "tw-sealed:1:abc"),
        ("name", "has space"),
    ]:
        r = await client.post("/api/v1/mail-servers", headers=h, json={**good, field: value})
        assert r.status_code == 422, (field, r.text)
        assert field in r.text
    assert (await client.post("/api/v1/mail-servers", headers=h, json=good)).status_code == 201
    again = await client.post("/api/v1/mail-servers", headers=h, json=good)
    assert again.status_code == 409
    # A tenant admin (not the installation's provider) neither sees nor sets them.
    in_tx(pg, lambda s: create_user(s, "tina", "tina-password-1", "admin"))
    tina = await bearer(client, "tina", "tina-password-1")
    assert (await client.get("/api/v1/mail-servers", headers=tina)).status_code == 403
    r = await client.post("/api/v1/mail-servers", headers=tina, json={**good, "name": "x"})
    assert r.status_code == 403
