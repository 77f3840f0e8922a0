"""Mail servers set in the web UI (MailServerConfigured), kept in a KV bucket, and the channel
that sends the web UI's recipients their mail through them.

The api announces each server whole (password sealed); the alerter keeps the latest revision per
server in ALERTER_MAIL, so every replica and a restart see the same servers. One durable channel
(`<prefix>_alerter_mail_ui`) mails each alert to the recipients the web UI set for the site (and
for the printer's groups) through the first server by priority that takes it; a server that is
down hands over to the next. While at least one server is set here, the routes of TONERWATCH_MAIL
keep to their own recipients, so nobody gets the same alert twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from pydantic import SecretStr

from tonerwatch_alerter.channels.base import ChannelConfig, DeliveryFailed
from tonerwatch_alerter.channels.mail import (
    MailConfig,
    MailSender,
    PrinterRecipientLookup,
    RecipientLookup,
)
from tonerwatch_shared.bus import ConsumerSpec
from tonerwatch_shared.events import Event, MailServerConfigured
from tonerwatch_shared.kv import KvConflict, ModelKv
from tonerwatch_shared.sealing import Sealer, SealingError
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger(__name__)

BUCKET = "ALERTER_MAIL"
CHANNEL = "web-ui-servers"
MAX_ATTEMPTS = 8
# The channel's own filter and tries per server; ack wait covers a few servers' worst case.
CHANNEL_CONFIG = ChannelConfig(name=CHANNEL, attempts=2, timeout_s=10.0, max_backoff_s=5.0)


def consumer_spec(subjects: Subjects, ack_wait_s: float = 30.0) -> ConsumerSpec:
    """Return the durable consumer all replicas share for mail servers (every one since the start)."""
    return ConsumerSpec(
        durable=subjects.name("alerter_mail_servers"),
        filter_subject=MailServerConfigured.subject_filter(subjects),
        ack_wait_s=ack_wait_s,
    )


class MailServers:
    """Latest MailServerConfigured per server in a KV bucket (highest revision wins; deletions kept)."""

    def __init__(self, kv: KeyValue, sealer: Sealer) -> None:
        self.servers = ModelKv(kv, MailServerConfigured)
        self.sealer = sealer

    async def store(self, event: MailServerConfigured) -> bool:
        """Keep event unless a newer revision is kept; return whether it was written."""

        def newer(current: MailServerConfigured | None) -> MailServerConfigured | None:
            if current is not None and (current.revision, current.occurred_at) >= (
                event.revision,
                event.occurred_at,
            ):
                return None
            return event

        try:
            written = await self.servers.edit(
                str(event.server_id), newer, attempts=MAX_ATTEMPTS, pause_s=0.0
            )
        except KvConflict as exc:
            raise RuntimeError(f"gave up storing mail server {event.server_id}") from exc
        if written is not None:
            log.info(
                "mail server %s (%s) %s at revision %d",
                event.server_id,
                event.name,
                "removed" if event.deleted else f"{event.host}:{event.port}",
                event.revision,
            )
        return written is not None

    async def handle(self, event: Event, msg: Msg | None = None) -> None:
        """Consumer handler: keep MailServerConfigured events, ignore anything else."""
        if isinstance(event, MailServerConfigured):
            await self.store(event)

    async def current(self) -> list[MailServerConfigured]:
        """Return the servers in use, by priority then name."""
        found = []
        for key in await self.servers.keys():
            value = (await self.servers.read(key)).value
            if value is not None and not value.deleted:
                found.append(value)
        return sorted(found, key=lambda s: (s.priority, s.name, s.server_id))

    async def any(self) -> bool:
        """Return whether a server is set in the web UI."""
        return bool(await self.current())

    def config(self, server: MailServerConfigured) -> MailConfig:
        """Return the mail route of a server, its password opened (SealingError: no key for it)."""
        password = self.sealer.open(server.password) if server.password else None
        return MailConfig(
            name=f"ui-{server.server_id}",
            host=server.host,
            port=server.port,
            security=server.security,
            username=server.username,
            password=SecretStr(password) if password is not None else None,
            sender=server.sender,
            validate_certs=server.validate_certs,
            min_severity=CHANNEL_CONFIG.min_severity,
            attempts=CHANNEL_CONFIG.attempts,
            timeout_s=CHANNEL_CONFIG.timeout_s,
            max_backoff_s=CHANNEL_CONFIG.max_backoff_s,
        )


def without_ui_recipients(servers: MailServers, lookup: RecipientLookup) -> RecipientLookup:
    """Return a lookup of the web UI's recipients for TONERWATCH_MAIL routes: none while a server
    set in the web UI mails them itself."""

    async def recipients(site_id: str) -> tuple[str, ...]:
        return () if await servers.any() else await lookup(site_id)

    return recipients


def without_ui_printer_recipients(
    servers: MailServers, lookup: PrinterRecipientLookup
) -> PrinterRecipientLookup:
    """The same for the recipients of a printer's groups."""

    async def recipients(site_id: str, printer_id: str) -> tuple[str, ...]:
        return () if await servers.any() else await lookup(site_id, printer_id)

    return recipients


class ServerMail:
    """The channel of the web UI's mail servers: first server by priority that takes the mail."""

    def __init__(
        self, servers: MailServers, sender: Callable[[MailConfig], MailSender] = MailSender
    ) -> None:
        # sender makes the MailSender of one server, e.g. functools.partial(MailSender,
        # public_url=..., labels=...): the servers differ only in their MailConfig.
        self.servers = servers
        self._sender = sender

    @property
    def config(self) -> ChannelConfig:
        """The channel's name and filter."""
        return CHANNEL_CONFIG

    async def wants(self, event: Event) -> bool:
        """Return whether event is mailed: a server is set, and the web UI names someone for it."""
        current = await self.servers.current()
        if not current:
            return False
        # The recipients and filter are the same for every server: ask through the first.
        probe = MailConfig(name="probe", host="localhost", sender=current[0].sender or "x@x")
        return await self._sender(probe).wants(event)

    async def send(self, event: Event) -> int:
        """Mail event through the first server that takes it; raise DeliveryFailed when none does."""
        failures = []
        current = await self.servers.current()
        for server in current:
            try:
                config = self.servers.config(server)
            except SealingError as exc:
                failures.append(f"{server.name}: password cannot be opened ({exc})")
                continue
            try:
                return await self._sender(config).send(event)
            except DeliveryFailed as exc:
                if exc.permanent:
                    raise
                log.warning("mail server %s failed, trying the next: %s", server.name, exc)
                failures.append(str(exc))
        if not current:
            return 0  # every server was removed since: nothing to send it through
        raise DeliveryFailed("; ".join(failures) or "no mail server took it")


__all__ = [
    "BUCKET",
    "CHANNEL",
    "MailServers",
    "ServerMail",
    "consumer_spec",
    "without_ui_printer_recipients",
    "without_ui_recipients",
]
