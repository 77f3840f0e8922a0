"""Mail channel against a real SMTP server (aiosmtpd) on 127.0.0.1: content, retries, refusals."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tonerwatch_alerter.channels.base import DeliveryFailed
from tonerwatch_alerter.channels.mail import MailConfig, MailSender, render
from tonerwatch_shared.events import AlertResolved, ThresholdCrossed


class Inbox:
    """aiosmtpd handler: answers DATA with the next scripted reply, keeps what it accepts."""

    def __init__(
        self, data_script: list[str] | None = None, refuse_rcpt: str | None = None
    ) -> None:
        self.data_script = list(data_script or [])
        self.refuse_rcpt = refuse_rcpt
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_script:
            return self.data_script.pop(0)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def smtp_server(inbox: Inbox) -> Iterator[int]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def route(port: int, **kw: object) -> MailConfig:
    return MailConfig.model_validate(
        {
            "name": "it",
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "sender": "tonerwatch@example.org",
            "recipients": ["it@example.org", "facilities@example.org"],
            "timeout_s": 5,
            **kw,
        }
    )


def crossing() -> ThresholdCrossed:
    return ThresholdCrossed(
        source="alerter-test",
        site_id="hq",
        printer_id="ricoh-mpc3002-01",
        alert_id="ricoh-mpc3002-01:1.3:low",
        rule="low",
        severity="warning",
        supply_index="1.3",
        supply_description="Cyan Toner",
        part_number="841742",
        percent=20.0,
        threshold=20.0,
        days_to_empty=6.5,
        message="Cyan Toner low, 20% left (threshold 20%)",
    )


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, s: float) -> None:
        self.calls.append(s)


async def test_ricoh_cyan_low_mail_reaches_every_recipient() -> None:
    inbox = Inbox()
    event = crossing()
    with smtp_server(inbox) as port:
        assert await MailSender(route(port)).send(event) == 1
    [msg] = inbox.messages
    assert inbox.envelopes == [
        ("tonerwatch@example.org", ["it@example.org", "facilities@example.org"])
    ]
    assert msg["Subject"] == (
        "[TonerWatch] WARNING: Cyan Toner low, 20% left (threshold 20%) (ricoh-mpc3002-01)"
    )
    assert msg["Message-ID"] == f"<{event.event_id}@tonerwatch>"
    assert msg["X-TonerWatch-Alert-Id"] == "ricoh-mpc3002-01:1.3:low"
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert "Part:      841742" in text and "Days left: ~6.5" in text


async def test_temporary_smtp_refusal_is_retried() -> None:
    inbox = Inbox(["451 4.3.0 try again later"])
    sleeps = Sleeps()
    with smtp_server(inbox) as port:
        assert await MailSender(route(port), sleep=sleeps).send(crossing()) == 2
    assert len(inbox.messages) == 1 and len(sleeps.calls) == 1


async def test_permanent_smtp_refusal_is_not_retried() -> None:
    inbox = Inbox(["554 5.7.1 rejected by policy"])
    sleeps = Sleeps()
    with smtp_server(inbox) as port, pytest.raises(DeliveryFailed) as err:
        await MailSender(route(port), sleep=sleeps).send(crossing())
    assert err.value.permanent and "554" in str(err.value)
    assert sleeps.calls == []


async def test_unknown_recipients_are_permanent() -> None:
    inbox = Inbox(refuse_rcpt="550 5.1.1 no such user")
    with smtp_server(inbox) as port, pytest.raises(DeliveryFailed) as err:
        await MailSender(route(port), sleep=Sleeps()).send(crossing())
    assert err.value.permanent


async def test_no_server_is_transient_after_attempts() -> None:
    sleeps = Sleeps()
    with pytest.raises(DeliveryFailed) as err:
        await MailSender(route(free_port(), attempts=2), sleep=sleeps).send(crossing())
    assert not err.value.permanent and len(sleeps.calls) == 1


def test_resolved_mail_subject() -> None:
    event = AlertResolved(
        source="t",
        site_id="hq",
        printer_id="ricoh-mpc3002-01",
        alert_id="ricoh-mpc3002-01:1.3:low",
        rule="low",
        message="Cyan Toner replaced (4% → 100%)",
    )
    msg = render(event, "tw@example.org", ("it@example.org",))
    assert (
        msg["Subject"]
        == "[TonerWatch] resolved: Cyan Toner replaced (4% → 100%) (ricoh-mpc3002-01)"
    )


def test_password_never_in_repr() -> None:
    cfg = route(25, username="tw", password="hunter2-smtp")
    assert "hunter2-smtp" not in repr(cfg)
