"""Alert settings end to end over the real bus: a PUT on the api → AlertSettingsConfigured → the alerter.

The api and the alerter never import each other; this test runs both, in one process, on one NATS
stream, with a real SMTP server (aiosmtpd) on loopback.
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
from sqlalchemy.engine import Engine

from tonerwatch_alerter.service import Settings as AlerterSettings
from tonerwatch_alerter.service import run as run_alerter
from tonerwatch_alerter.store import BUCKET, StateStore
from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_admin, ensure_default_site, upgrade
from tonerwatch_api.settings import Settings as ApiSettings
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.events import Event, SupplyReading, ThresholdCrossed
from tonerwatch_shared.printer.model import PrinterIdentity, Supply, SupplyKind
from tonerwatch_shared.settings import load_settings
from tonerwatch_shared.testing.infra import eventually

ADMIN_PW = "flow-admin-password"
PID = "p-kyocera-m2540"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Inbox:
    """aiosmtpd handler keeping every message and its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted"


def kyocera(percent: float, minute: int) -> SupplyReading:
    """A Kyocera ECOSYS M2540dn poll with its TK-1170 toner at percent."""
    return SupplyReading(
        source="poller-test",
        site_id="default",
        printer_id=PID,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="Kyocera", model="ECOSYS M2540dn"),
        supplies=(
            Supply(
                index="1.1",
                description="TK-1170",
                part_number="TK-1170",
                kind=SupplyKind.TONER,
                colour="black",
                percent=percent,
            ),
        ),
        occurred_at=T0 + timedelta(minutes=minute),
    )


@contextlib.asynccontextmanager
async def alerter(bus: Bus, nats_url: str, smtp_port: int) -> AsyncIterator[None]:
    settings = load_settings(
        AlerterSettings,
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        instance="flow",
        mail=[
            {
                "name": "it",
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "sender": "tonerwatch@example.org",
                "attempts": 2,
                "timeout_s": 5,
            }
        ],
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


async def test_low_at_30_saved_in_the_api_raises_at_28_and_mails_the_sites_people(
    bus: Bus, nats_url: str, pg_engine: Engine
) -> None:
    upgrade(pg_engine)
    ensure_default_site(pg_engine, "default")
    ensure_admin(pg_engine, ADMIN_PW)
    app = create_app(pg_engine, bus, ApiSettings(session_secret="flow", cookie_secure=False))
    inbox = Inbox()
    smtp_port = free_tcp_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        async with (
            alerter(bus, nats_url, smtp_port),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
            ) as api,
        ):
            token = await api.post(
                "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PW}
            )
            h = {"Authorization": f"Bearer {token.json()['access_token']}"}
            # With the alerter's default low threshold (20%), 28% raises nothing.
            first = kyocera(28, 0)
            await bus.publish(first)
            states = StateStore(await bus.key_value(BUCKET))

            async def applied() -> bool:
                st = (await states.load(PID)).state
                return st is not None and st.watermark == first.occurred_at

            await eventually(applied, timeout_s=15)
            r = await api.put(
                "/api/v1/sites/default/alert-settings",
                headers=h,
                json={"low_percent": 30, "recipients": ["facilities@example.org"]},
            )
            assert r.status_code == 200, r.text
            user = await api.post(
                "/api/v1/users",
                headers=h,
                json={
                    "username": "nina",
                    "password": "responsible-pw-1",
                    "email": "nina@example.org",
                    "responsible_sites": ["default"],
                },
            )
            assert user.status_code == 201, user.text

            def crossed(e: Event) -> bool:
                return isinstance(e, ThresholdCrossed) and e.printer_id == PID

            # The alerter takes settings and readings from different consumers: keep polling
            # (a fresh reading a minute) until the configured threshold shows.
            minute = 1
            event: Event | None = None
            while event is None and minute < 30:
                await bus.publish(kyocera(28, minute))
                with contextlib.suppress(TimeoutError):
                    event = await wait_for_event(
                        bus, bus.subjects.filter("alert.crossed"), crossed, timeout_s=1.0
                    )
                minute += 1
            assert isinstance(event, ThresholdCrossed), "no alert at 28% with low at 30%"
            assert (event.rule, event.percent, event.threshold) == ("low", 28, 30)
            assert event.occurred_at > first.occurred_at
            await eventually(lambda: len(inbox.messages) >= 1, timeout_s=15)
            await asyncio.sleep(0.5)  # a second mail would show up here
    finally:
        smtp.stop()
    [(rcpt, msg)] = inbox.messages
    assert sorted(rcpt) == ["facilities@example.org", "nina@example.org"]
    assert "28%" in str(msg["Subject"])
