"""Mail channel: one message per alert event (or a daily digest) over SMTP (aiosmtplib), retried with back-off.

Each message is multipart/alternative (plain text and HTML) with the supply, level, days left, part
number and a link to the printer in the web UI. The Message-ID derives from the event id, so a
message sent twice (a retry after a lost reply) is recognisably the same message to mail clients
that thread or dedupe. Recipients are chosen per site, with a default list for the other sites;
the web UI adds its own per site, and per printer for users answering for a group of printers.
"""

from __future__ import annotations

import asyncio
import html
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, time
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from tonerwatch_alerter.channels.base import ChannelConfig, DeliveryFailed
from tonerwatch_alerter.state import PrinterLabel
from tonerwatch_alerter.text import percent_text
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    SiteOffline,
    SiteOnline,
    SupplyReplaced,
    ThresholdCrossed,
    printer_of,
)

log = logging.getLogger(__name__)

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
Address = str
LabelLookup = Callable[[str], Awaitable[PrinterLabel | None]]
# Site id -> addresses configured in the web UI (AlertSettingsConfigured.recipients).
RecipientLookup = Callable[[str], Awaitable[tuple[Address, ...]]]
# (site id, printer id) -> addresses the web UI adds for that printer alone
# (AlertSettingsConfigured.printer_recipients: users responsible for a group of printers).
PrinterRecipientLookup = Callable[[str, str], Awaitable[tuple[Address, ...]]]


class MailConfig(ChannelConfig):
    """One mail route (an item of TONERWATCH_MAIL, a JSON list); with no recipients, only the web UI's."""

    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: tuple[Address, ...] = Field(default=(), description="Default recipients")
    site_recipients: dict[str, tuple[Address, ...]] = Field(
        default_factory=dict, description="Per site: who gets that site's alerts instead"
    )
    validate_certs: bool = True
    ca_file: str | None = Field(default=None, description="PEM bundle of a private CA")
    digest_at: time | None = Field(
        default=None, description='Send one digest a day per site at this time ("07:30")'
    )
    digest_timezone: str = Field(default="UTC", description="Zone of digest_at (IANA name)")

    @field_validator("digest_timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    def recipients_for(self, site_id: str) -> tuple[Address, ...]:
        """Return who gets mail about site_id: the site's own list, else the default list."""
        return self.site_recipients.get(site_id) or self.recipients

    def wants(self, event: Event) -> bool:
        """Return whether event is mailed: the channel's filter, and someone to send it to."""
        return super().wants(event) and bool(self.recipients_for(event.site_id))

    def zone(self) -> ZoneInfo:
        """Return the time zone digests are scheduled in."""
        return ZoneInfo(self.digest_timezone)


def printer_url(public_url: str, printer_id: str) -> str:
    """Return the web UI page of a printer (the api's /printers/{printer_id})."""
    return f"{public_url.rstrip('/')}/printers/{quote(printer_id, safe='')}"


def site_alerts_url(public_url: str, site_id: str) -> str:
    """Return the web UI's alerts of a site (where its site-offline alert is listed)."""
    return f"{public_url.rstrip('/')}/alerts?site={quote(site_id, safe='')}&scope=all"


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def subject_of(event: Event, label: PrinterLabel | None = None) -> str:
    """Return the mail subject for event: the alert's own one-line message."""
    if isinstance(event, SiteOffline):
        return (
            f"Site offline: {event.site_id} — collector {event.collector_id} not heard since "
            f"{_utc(event.last_seen)}"
        )
    if isinstance(event, SiteOnline):
        return f"Resolved: site {event.site_id} back online (collector {event.collector_id})"
    title = label.title() if label else printer_of(event) or "?"
    if isinstance(event, ThresholdCrossed):
        return event.message
    if isinstance(event, AlertResolved):
        return f"Resolved: {event.message or event.rule}"
    if isinstance(event, SupplyReplaced):
        pct = percent_text
        change = f"{pct(event.previous_percent)} → " if event.previous_percent is not None else ""
        level = f" {change}{pct(event.percent)}" if event.percent is not None else ""
        return f"Replaced: {title} — {event.description}{level}"
    return f"{type(event).__name__}: {title}"


def site_facts(event: SiteOffline | SiteOnline) -> list[tuple[str, str]]:
    """Return the rows of a site-offline mail: the site, its collector, when it was last heard."""
    rows = [("Site", event.site_id), ("Collector", event.collector_id)]
    if isinstance(event, SiteOffline):
        rows += [
            ("Alert", "site_offline (critical)"),
            ("Last heard", _utc(event.last_seen)),
            ("Offline after", f"{event.offline_after_s:g} s of silence"),
            ("What it means", "the site's printers are not being watched until it is back"),
        ]
    else:
        rows += [("Alert", "site_offline (resolved)"), ("Heard again", _utc(event.last_seen))]
    rows.append(("Time", event.occurred_at.isoformat(timespec="seconds")))
    return rows


def facts(event: Event, label: PrinterLabel | None) -> list[tuple[str, str]]:
    """Return the (field, value) rows both bodies show for event."""
    if isinstance(event, SiteOffline | SiteOnline):
        return site_facts(event)
    printer_id = printer_of(event) or "?"
    rows: list[tuple[str, str]] = [
        ("Printer", label.name or label.model or printer_id if label else printer_id)
    ]
    if label and label.model and label.name:
        rows.append(("Model", label.model))
    if label and label.location:
        rows.append(("Location", label.location))
    rows.append(("Site", event.site_id))
    if isinstance(event, ThresholdCrossed):
        rows.append(("Alert", f"{event.rule} ({event.severity})"))
        if event.supply_description or event.supply_index:
            rows.append(("Supply", event.supply_description or f"supply {event.supply_index}"))
        if event.percent is not None:
            rows.append(("Level", percent_text(event.percent)))
        if event.threshold is not None and event.rule != "forecast":
            rows.append(("Threshold", f"{event.threshold:g}%"))
        if event.days_to_empty is not None:
            rows.append(("Days left", f"about {round(event.days_to_empty)}"))
        if event.part_number:
            rows.append(("Part number", event.part_number))
    elif isinstance(event, AlertResolved):
        rows.append(("Alert", f"{event.rule} (resolved)"))
    elif isinstance(event, SupplyReplaced):
        rows.append(("Supply", event.description or event.supply_index))
        if event.percent is not None:
            rows.append(("Level", percent_text(event.percent)))
        if event.part_number:
            rows.append(("Part number", event.part_number))
    rows.append(("Time", event.occurred_at.isoformat(timespec="seconds")))
    return rows


def _text(
    headline: str,
    rows: Sequence[tuple[str, str]],
    link: str,
    footer: str,
    link_name: str = "Printer page",
) -> str:
    width = max(len(k) for k, _ in rows) + 2
    lines = [headline, ""]
    lines += [f"{k + ':':<{width}}{v}" for k, v in rows]
    lines += ["", f"{link_name}: {link}", "", footer, ""]
    return "\n".join(lines)


def _html(
    headline: str,
    rows: Sequence[tuple[str, str]],
    link: str,
    footer: str,
    link_text: str = "Open the printer in TonerWatch",
) -> str:
    e = html.escape
    cells = "\n".join(
        f'<tr><th align="left" style="padding-right:1em">{e(k)}</th><td>{e(v)}</td></tr>'
        for k, v in rows
    )
    return (
        '<!DOCTYPE html>\n<html><body style="font-family:sans-serif">\n'
        f"<h2>{e(headline)}</h2>\n<table>\n{cells}\n</table>\n"
        f'<p><a href="{e(link, quote=True)}">{e(link_text)}</a></p>\n'
        f'<p style="color:#777;font-size:small">{e(footer)}</p>\n</body></html>\n'
    )


def _headers(msg: EmailMessage, sender: str, recipients: Sequence[str], subject: str) -> None:
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)


def render(
    event: Event,
    sender: str,
    recipients: Sequence[str],
    *,
    label: PrinterLabel | None = None,
    public_url: str = DEFAULT_PUBLIC_URL,
) -> EmailMessage:
    """Return the mail announcing event: plain text and HTML alternatives."""
    msg = EmailMessage()
    subject = subject_of(event, label)
    rows = facts(event, label)
    site_event = isinstance(event, SiteOffline | SiteOnline)
    if site_event:
        link = site_alerts_url(public_url, event.site_id)
        link_name, link_text = "Site's alerts", "Open the site's alerts in TonerWatch"
    else:
        link = printer_url(public_url, printer_of(event) or "")
        link_name, link_text = "Printer page", "Open the printer in TonerWatch"
    aid = getattr(event, "alert_id", None)
    if isinstance(event, SiteOffline):
        aid = f"site_offline:{event.event_id}"
    elif isinstance(event, SiteOnline):
        aid = f"site_offline:{event.offline_event_id}"
    footer = f"Alert id {aid or '-'}, event {event.event_id}"
    _headers(msg, sender, recipients, subject)
    msg["Date"] = format_datetime(event.occurred_at)
    msg["Message-ID"] = f"<{event.event_id}@tonerwatch>"
    if isinstance(event, SiteOnline):
        # Threads under the offline mail it resolves.
        msg["In-Reply-To"] = f"<{event.offline_event_id}@tonerwatch>"
        msg["References"] = f"<{event.offline_event_id}@tonerwatch>"
    msg["X-TonerWatch-Event-Id"] = str(event.event_id)
    if aid:
        msg["X-TonerWatch-Alert-Id"] = aid
    msg.set_content(_text(subject, rows, link, footer, link_name))
    msg.add_alternative(_html(subject, rows, link, footer, link_text), subtype="html")
    return msg


SendFn = Callable[..., Awaitable[Any]]


class MailSender:
    """Delivers events to one mail route."""

    def __init__(
        self,
        config: MailConfig,
        *,
        public_url: str = DEFAULT_PUBLIC_URL,
        labels: LabelLookup | None = None,
        site_recipients: RecipientLookup | None = None,
        printer_recipients: PrinterRecipientLookup | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        send: SendFn | None = None,
    ) -> None:
        self.config = config
        self.public_url = public_url
        self.labels = labels
        self.site_recipients = site_recipients
        self.printer_recipients = printer_recipients
        self.sleep = sleep
        self._send = send  # None: aiosmtplib.send, imported with the first mail

    async def label(self, printer_id: str) -> PrinterLabel | None:
        """Return what the alerter knows of a printer's name and place (None if nothing)."""
        if self.labels is None:
            return None
        try:
            return await self.labels(printer_id)
        except Exception as exc:  # a name lookup must never stop an alert going out
            log.warning("mail %s: no label for %s: %r", self.config.name, printer_id, exc)
            return None

    async def recipients(self, site_id: str, printer_id: str | None = None) -> tuple[Address, ...]:
        """Return who gets mail about site_id (and printer_id): the route's list for the site, the
        web UI's for the site and for that printer, once each."""
        configured: tuple[Address, ...] = ()
        if self.site_recipients is not None:
            # Not caught: a lookup failure makes the consumer retry rather than mail too few people.
            configured = await self.site_recipients(site_id)
        extra = await self.printer_extra(site_id, printer_id) if printer_id else ()
        seen: dict[str, Address] = {}
        for address in (*self.config.recipients_for(site_id), *configured, *extra):
            seen.setdefault(address.lower(), address)
        return tuple(seen.values())

    async def printer_extra(self, site_id: str, printer_id: str) -> tuple[Address, ...]:
        """Return who the web UI has mailed about printer_id alone (not about its whole site)."""
        if self.printer_recipients is None:
            return ()
        return await self.printer_recipients(site_id, printer_id)

    async def wants(self, event: Event) -> bool:
        """Return whether event is mailed: the route's filter, and someone to send it to."""
        return ChannelConfig.wants(self.config, event) and bool(
            await self.recipients(event.site_id, printer_of(event))
        )

    async def send(self, event: Event) -> int:
        """Send the mail for event until the server takes it; return the attempts used or raise DeliveryFailed."""
        cfg = self.config
        printer_id = printer_of(event)
        label = await self.label(printer_id) if printer_id is not None else None
        message = render(
            event,
            cfg.sender,
            await self.recipients(event.site_id, printer_of(event)),
            label=label,
            public_url=self.public_url,
        )
        return await self.deliver(message)

    async def deliver(self, message: EmailMessage) -> int:
        """Hand message to the SMTP server, retrying transient failures; return the attempts used."""
        # Imported here, not with the module: aiosmtplib and the email packages it loads
        # stay out of a process that never sends a mail (issue 15: 1.2 MB of `up`'s memory).
        import aiosmtplib

        send = self._send or aiosmtplib.send
        cfg = self.config
        reason = ""
        for attempt in range(1, cfg.attempts + 1):
            try:
                await send(
                    message,
                    hostname=cfg.host,
                    port=cfg.port,
                    use_tls=cfg.security == "tls",
                    start_tls=cfg.security == "starttls",
                    username=cfg.username,
                    password=cfg.password.get_secret_value() if cfg.password else None,
                    timeout=cfg.timeout_s,
                    validate_certs=cfg.validate_certs,
                    cert_bundle=cfg.ca_file,
                )
                return attempt
            except aiosmtplib.SMTPAuthenticationError as exc:
                # Trying the same password again only risks a lockout; the consumer's slower
                # redelivery keeps the alert until the password is fixed.
                raise DeliveryFailed(
                    f"{cfg.name}: {cfg.host}:{cfg.port} refused the login of user "
                    f"{cfg.username!r} (SMTP {exc.code} {exc.message}); check username and password"
                ) from exc
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [r.code for r in exc.recipients]
                reason = f"recipients refused {codes}"
                if all(c >= 500 for c in codes):
                    raise DeliveryFailed(f"{cfg.name}: {reason}", permanent=True) from exc
            except aiosmtplib.SMTPResponseException as exc:
                reason = f"SMTP {exc.code} {exc.message}"
                # RFC 5321: 5yz is a permanent refusal (policy); 4yz means try later.
                if exc.code >= 500:
                    raise DeliveryFailed(f"{cfg.name}: {reason}", permanent=True) from exc
            except aiosmtplib.SMTPNotSupported as exc:
                raise DeliveryFailed(
                    f"{cfg.name}: {cfg.host}:{cfg.port} cannot do what the route asks: {exc}"
                ) from exc
            except aiosmtplib.SMTPException as exc:
                if cfg.username and "AUTH" in str(exc):
                    # The server offers no login (often: only after STARTTLS, or not at all).
                    raise DeliveryFailed(
                        f"{cfg.name}: {cfg.host}:{cfg.port} offers no login for user "
                        f"{cfg.username!r} ({exc}); check security (starttls/tls) and port"
                    ) from exc
                if bad_cert := _cert_error(exc):
                    raise DeliveryFailed(
                        f"{cfg.name}: certificate of {cfg.host}:{cfg.port} not trusted "
                        f"({bad_cert.verify_message}); set ca_file or fix the server's certificate"
                    ) from exc
                reason = f"{type(exc).__name__}: {exc}"
            except OSError as exc:
                if bad_cert := _cert_error(exc):
                    raise DeliveryFailed(
                        f"{cfg.name}: certificate of {cfg.host}:{cfg.port} not trusted "
                        f"({bad_cert.verify_message}); set ca_file or fix the server's certificate"
                    ) from exc
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < cfg.attempts:
                delay = cfg.backoff(attempt)
                log.info("mail %s: %s, retry %d in %.1fs", cfg.name, reason, attempt, delay)
                await self.sleep(delay * random.uniform(0.8, 1.2))
        raise DeliveryFailed(f"{cfg.name}: {reason} after {cfg.attempts} attempts")


def _cert_error(exc: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """Return the certificate verification failure behind exc, if that is what it is."""
    for _ in range(5):  # aiosmtplib wraps the ssl error in its own connect errors
        if exc is None or isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


__all__ = [
    "DEFAULT_PUBLIC_URL",
    "LabelLookup",
    "MailConfig",
    "MailSender",
    "PrinterRecipientLookup",
    "RecipientLookup",
    "facts",
    "printer_url",
    "render",
    "site_alerts_url",
    "subject_of",
]
