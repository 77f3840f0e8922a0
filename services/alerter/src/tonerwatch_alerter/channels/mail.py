"""Mail channel: one plain-text message per alert event over SMTP (aiosmtplib), retried with back-off.

The Message-ID derives from the event id, so a message sent twice (a retry after a lost reply) is
recognisably the same message to mail clients that thread or dedupe.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Literal

import aiosmtplib
from pydantic import Field, SecretStr

from tonerwatch_alerter.channels.base import ChannelConfig, DeliveryFailed
from tonerwatch_shared.events import AlertResolved, Event, ThresholdCrossed

log = logging.getLogger(__name__)


class MailConfig(ChannelConfig):
    """One mail route (an item of TONERWATCH_MAIL, a JSON list)."""

    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: tuple[str, ...] = Field(min_length=1)
    validate_certs: bool = True


def render(event: Event, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """Return the mail announcing event."""
    msg = EmailMessage()
    printer = getattr(event, "printer_id", "?")
    if isinstance(event, ThresholdCrossed):
        subject = f"[TonerWatch] {event.severity.upper()}: {event.message} ({printer})"
        lines = [
            event.message,
            "",
            f"Printer:   {printer}",
            f"Site:      {event.site_id}",
            f"Alert:     {event.rule} ({event.severity})",
        ]
        if event.supply_description or event.supply_index:
            lines.append(f"Supply:    {event.supply_description or event.supply_index}")
        if event.part_number:
            lines.append(f"Part:      {event.part_number}")
        if event.percent is not None:
            lines.append(f"Level:     {event.percent:g}%")
        if event.days_to_empty is not None:
            lines.append(f"Days left: ~{event.days_to_empty:g}")
    elif isinstance(event, AlertResolved):
        subject = f"[TonerWatch] resolved: {event.message or event.rule} ({printer})"
        lines = [
            f"Resolved: {event.message or event.rule}",
            "",
            f"Printer:   {printer}",
            f"Site:      {event.site_id}",
            f"Alert:     {event.rule}",
        ]
    else:
        subject = f"[TonerWatch] {type(event).__name__} ({printer})"
        lines = [event.model_dump_json(indent=2)]
    lines += [f"Time:      {event.occurred_at.isoformat(timespec='seconds')}", ""]
    lines.append(f"Alert id {getattr(event, 'alert_id', '-')}, event {event.event_id}")
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(event.occurred_at)
    msg["Message-ID"] = f"<{event.event_id}@tonerwatch>"
    msg["X-TonerWatch-Event-Id"] = str(event.event_id)
    if alert_id := getattr(event, "alert_id", None):
        msg["X-TonerWatch-Alert-Id"] = alert_id
    msg.set_content("\n".join(lines))
    return msg


SendFn = Callable[..., Awaitable[Any]]


class MailSender:
    """Delivers events to one mail route."""

    def __init__(
        self,
        config: MailConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        send: SendFn = aiosmtplib.send,
    ) -> None:
        self.config = config
        self.sleep = sleep
        self._send = send

    async def send(self, event: Event) -> int:
        """Send the mail for event until the server takes it; return the attempts used or raise DeliveryFailed."""
        cfg = self.config
        message = render(event, cfg.sender, cfg.recipients)
        reason = ""
        for attempt in range(1, cfg.attempts + 1):
            try:
                await self._send(
                    message,
                    hostname=cfg.host,
                    port=cfg.port,
                    use_tls=cfg.security == "tls",
                    start_tls=cfg.security == "starttls",
                    username=cfg.username,
                    password=cfg.password.get_secret_value() if cfg.password else None,
                    timeout=cfg.timeout_s,
                    validate_certs=cfg.validate_certs,
                )
                return attempt
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [r.code for r in exc.recipients]
                reason = f"recipients refused {codes}"
                if all(c >= 500 for c in codes):
                    raise DeliveryFailed(f"{cfg.name}: {reason}", permanent=True) from exc
            except aiosmtplib.SMTPResponseException as exc:
                reason = f"SMTP {exc.code} {exc.message}"
                # RFC 5321: 5yz is a permanent refusal (bad auth, policy); 4yz means try later.
                if exc.code >= 500:
                    raise DeliveryFailed(f"{cfg.name}: {reason}", permanent=True) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < cfg.attempts:
                delay = cfg.backoff(attempt)
                log.info("mail %s: %s, retry %d in %.1fs", cfg.name, reason, attempt, delay)
                await self.sleep(delay * random.uniform(0.8, 1.2))
        raise DeliveryFailed(f"{cfg.name}: {reason} after {cfg.attempts} attempts")


__all__ = ["MailConfig", "MailSender", "render"]
