"""Mail servers set in the web UI: the alerter opens the sealed password and mails through them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import ValidationError

from tonerwatch_alerter import mail_servers as ms
from tonerwatch_alerter import site_settings as ss
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    AlertSettingsConfigured,
    MailServerConfigured,
    PrinterConfigured,
)
from tonerwatch_shared.sealing import Sealer
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually

from ._smtp import Inbox, free_port, smtp_server
from .test_service import PID, T0, alerter, feed, mail_route, reading, settled

KEY = "alerter-mail-sealing-key-0123456789abcdef"
LOGIN = ("tonerwatch", "smtp-app-password-42")


def server(server_id: int, port: int, priority: int, **kw: object) -> MailServerConfigured:
    return MailServerConfigured(
        source="api/test",
        site_id="default",
        server_id=server_id,
        revision=kw.pop("revision", 1),  # type: ignore[arg-type]
        name=f"relay-{server_id}",
        priority=priority,
        host="127.0.0.1",
        port=port,
        security="none",
        username=LOGIN[0],
        password=Sealer(KEY).seal(LOGIN[1]),
        sender="tonerwatch@example.org",
        **kw,  # type: ignore[arg-type]
    )


async def test_alerts_go_through_the_first_ui_mail_server_that_takes_them(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    down, up = free_port(), free_port()  # nobody listens on `down`
    inbox = Inbox()
    setup = PrinterConfigured(
        source="api-test",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        name="Brother HL-L2350DW",
        occurred_at=T0 - timedelta(days=1),
    )
    site = AlertSettingsConfigured(
        source="api/test", site_id="hq", revision=1, recipients=("ops@example.org",)
    )
    with smtp_server(inbox, port=up, login=LOGIN):
        async with alerter(nats_url, subjects, secret_key=KEY):
            servers = ms.MailServers(await bus.key_value(ms.BUCKET), Sealer(KEY))
            settings = ss.SiteSettings(await bus.key_value(ss.BUCKET))
            # Priority 1 is down, priority 2 (the real server, with a login) takes over.
            await feed(bus, [setup, site, server(1, down, 1), server(2, up, 2)])

            async def known() -> bool:
                return len(await servers.current()) == 2 and bool(await settings.recipients("hq"))

            await eventually(known, timeout_s=15)
            readings = [reading(p, i) for i, p in enumerate([30, 19])]
            await feed(bus, readings)
            await settled(bus, PID, readings[-1])
            await eventually(lambda: len(inbox.messages) >= 1, timeout_s=30)
            await asyncio.sleep(1.0)  # nothing more in flight
            [msg] = inbox.messages
            assert msg["To"] == "ops@example.org"
            assert msg["From"] == "tonerwatch@example.org"
            assert "Black 19%" in msg["Subject"]
            assert inbox.logins == [LOGIN[0]]  # the sealed password opened, and it logged in

            # Removed in the web UI: no longer used (the next alert goes nowhere).
            await feed(bus, [server(2, up, 2, revision=2, deleted=True)])

            async def one_left() -> bool:
                return [s.server_id for s in await servers.current()] == [1]

            await eventually(one_left, timeout_s=15)


async def test_environment_routes_leave_the_ui_recipients_to_the_ui_servers(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    """With a server set in the web UI, a TONERWATCH_MAIL route mails only its own recipients."""
    env_inbox, ui_inbox = Inbox(), Inbox()
    env_port, ui_port = free_port(), free_port()
    site = AlertSettingsConfigured(
        source="api/test", site_id="hq", revision=1, recipients=("ops@example.org",)
    )
    with smtp_server(env_inbox, port=env_port), smtp_server(ui_inbox, port=ui_port, login=LOGIN):
        async with alerter(nats_url, subjects, secret_key=KEY, mail=[mail_route(env_port)]):
            servers = ms.MailServers(await bus.key_value(ms.BUCKET), Sealer(KEY))
            settings = ss.SiteSettings(await bus.key_value(ss.BUCKET))
            await feed(bus, [site, server(7, ui_port, 1)])

            async def known() -> bool:
                return bool(await servers.current()) and bool(await settings.recipients("hq"))

            await eventually(known, timeout_s=15)
            readings = [reading(p, i) for i, p in enumerate([30, 19])]
            await feed(bus, readings)
            await settled(bus, PID, readings[-1])
            await eventually(
                lambda: len(env_inbox.messages) >= 1 and len(ui_inbox.messages) >= 1, timeout_s=30
            )
            await asyncio.sleep(1.0)
    [env_msg] = env_inbox.messages
    [ui_msg] = ui_inbox.messages
    assert env_msg["To"] == "hq-it@example.org"  # the route's own list for the site
    assert ui_msg["To"] == "ops@example.org"  # the web UI's, through the web UI's server


def test_a_server_event_is_checked_at_the_door() -> None:
    with pytest.raises(ValidationError):
        server(1, 0, 1)  # port 0
    assert "smtp-app-password" not in repr(server(1, 25, 1))
