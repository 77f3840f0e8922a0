"""A mail server set through the api carries the alert mail: POST /mail-servers → the alerter → SMTP.

The api and the alerter never import each other; this test runs both, in one process, on one NATS
stream, with one TONERWATCH_SECRET_KEY, and a real SMTP server (aiosmtpd) on loopback that wants a
login: the password goes in through the api, travels sealed, and only the alerter opens it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy.engine import Engine

from tonerwatch_alerter import mail_servers as ms
from tonerwatch_alerter import site_settings as ss
from tonerwatch_alerter.service import Settings as AlerterSettings
from tonerwatch_alerter.service import run as run_alerter
from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_admin, ensure_default_site, upgrade
from tonerwatch_api.settings import Settings as ApiSettings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.events import SupplyReading
from tonerwatch_shared.printer.model import PrinterIdentity, Supply, SupplyKind
from tonerwatch_shared.sealing import Sealer
from tonerwatch_shared.settings import load_settings
from tonerwatch_shared.testing.infra import eventually

ADMIN_PW = "mail-flow-admin-password"
KEY = "mail-flow-sealing-key-0123456789abcdef"
LOGIN = ("tonerwatch@example.org", "relay-app-password-7")
PID = "p-brother-l2350"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Inbox:
    """aiosmtpd handler keeping every message, its recipients and who logged in."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str, EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else ""
        self.messages.append((list(envelope.rcpt_tos), login, msg))
        return "250 Message accepted"


def check_login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == LOGIN
    return AuthResult(success=ok, handled=False, auth_data=data)


def brother(percent: float, minute: int) -> SupplyReading:
    return SupplyReading(
        source="poller-test",
        site_id="default",
        printer_id=PID,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="Brother", model="HL-L2350DW series"),
        supplies=(
            Supply(
                index="1.1",
                description="TN-2420",
                part_number="TN-2420",
                kind=SupplyKind.TONER,
                colour="black",
                percent=percent,
            ),
        ),
        occurred_at=T0 + timedelta(minutes=minute),
    )


@contextlib.asynccontextmanager
async def alerter(bus: Bus, nats_url: str) -> AsyncIterator[None]:
    """The alerter with the api's key and no TONERWATCH_MAIL route: only the web UI's server."""
    settings = load_settings(
        AlerterSettings,
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        instance="mail-flow",
        secret_key=KEY,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_alerter(settings, stop=stop, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert waiter in done, "alerter not ready within 20 s"
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_a_mail_server_added_in_the_api_sends_the_alert_mail_with_its_login(
    bus: Bus, nats_url: str, pg_engine: Engine
) -> None:
    upgrade(pg_engine)
    ensure_default_site(pg_engine, "default")
    ensure_admin(pg_engine, ADMIN_PW)
    settings = ApiSettings(session_secret="mail-flow", cookie_secure=False, secret_key=KEY)
    app = create_app(pg_engine, bus, settings)
    inbox = Inbox()
    port = free_tcp_port()
    smtp = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=check_login,
        auth_required=True,
        auth_require_tls=False,
    )
    smtp.start()
    try:
        async with (
            alerter(bus, nats_url),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
            ) as api,
        ):
            token = await api.post(
                "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PW}
            )
            h = {"Authorization": f"Bearer {token.json()['access_token']}"}
            r = await api.put(
                "/api/v1/sites/default/alert-settings",
                headers=h,
                json={"recipients": ["facilities@example.org"]},
            )
            assert r.status_code == 200, r.text
            r = await api.post(
                "/api/v1/mail-servers",
                headers=h,
                json={
                    "name": "office-relay",
                    "host": "127.0.0.1",
                    "port": port,
                    "security": "none",
                    "username": LOGIN[0],
                    "password": LOGIN[1],
                    "sender": "tonerwatch@example.org",
                },
            )
            assert r.status_code == 201, r.text
            assert LOGIN[1] not in r.text
            servers = ms.MailServers(await bus.key_value(ms.BUCKET), Sealer(None))
            sites = ss.SiteSettings(await bus.key_value(ss.BUCKET))

            async def known() -> bool:
                current = await servers.current()
                return bool(current) and bool(await sites.recipients("default"))

            await eventually(known, timeout_s=15)
            [kept] = await servers.current()
            assert kept.password and LOGIN[1] not in kept.password  # sealed in the alerter's KV
            for minute, percent in enumerate([30, 15]):
                await bus.publish(brother(percent, minute))
            await eventually(lambda: len(inbox.messages) >= 1, timeout_s=30)
            await asyncio.sleep(0.5)  # a second mail would show up here
    finally:
        smtp.stop()
    [(rcpt, login, msg)] = inbox.messages
    assert rcpt == ["facilities@example.org"] and login == LOGIN[0]
    assert msg["From"] == "tonerwatch@example.org" and "15%" in str(msg["Subject"])
