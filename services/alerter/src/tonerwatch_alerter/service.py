"""The alerter service: supply readings and reachability in, ThresholdCrossed / AlertResolved / SupplyReplaced out.

Two durable consumers share the work between replicas: `<prefix>_alerter` on supply readings and
`<prefix>_alerter_printer` on printer events (unreachable, reachable, removed). State lives in the
ALERTER KV bucket, so replicas and restarts agree on what has been announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Protocol

from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field

from tonerwatch_alerter import collectors as cw
from tonerwatch_alerter import mail_servers as ms
from tonerwatch_alerter import site_settings as ss
from tonerwatch_alerter.channels import digest as dg
from tonerwatch_alerter.channels import ledger as ld
from tonerwatch_alerter.channels.base import ChannelConfig, DeliveryFailed
from tonerwatch_alerter.channels.digest import Digest
from tonerwatch_alerter.channels.ledger import Ledger
from tonerwatch_alerter.channels.mail import DEFAULT_PUBLIC_URL, MailConfig, MailSender
from tonerwatch_alerter.channels.webhook import WebhookConfig, WebhookSender
from tonerwatch_alerter.engine import Context
from tonerwatch_alerter.process import Processor
from tonerwatch_alerter.rules import AlertRules, Resolved
from tonerwatch_alerter.site_settings import SiteSettings
from tonerwatch_alerter.state import PrinterLabel
from tonerwatch_alerter.store import BUCKET, StateStore
from tonerwatch_shared.bus import Bus, ConsumerSpec, Handler, Poison, RetryLater, event_type
from tonerwatch_shared.events import (
    Event,
    PrinterUnreachable,
    SiteOffline,
    SiteOnline,
    SupplyReading,
    SupplyReplaced,
    ThresholdCrossed,
)
from tonerwatch_shared.kv import ModelKv
from tonerwatch_shared.lifecycle import sleep_until_stopped, stop_event
from tonerwatch_shared.ops import (
    Check,
    bus_check,
    consumer_lag_gauge,
    not_connected,
    serve_ops,
    stream_fill_gauge,
)
from tonerwatch_shared.sealing import Sealer
from tonerwatch_shared.settings import CommonSettings
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger(__name__)

# How long the readings consumer lets readings gather after a fetch that was not full.
READINGS_LINGER_S = 0.25


class Settings(CommonSettings):
    """Alerter knobs (env TONERWATCH_<FIELD>); TONERWATCH_ALERT_RULES holds per-site/printer/kind overrides as JSON."""

    low_percent: float = Field(default=20.0, ge=0, le=100, description="Low threshold, percent")
    critical_percent: float = Field(default=5.0, ge=0, le=100, description="Critical threshold")
    hysteresis_points: float = Field(
        default=3.0, ge=0, le=50, description="Points above a threshold before an alert clears"
    )
    lead_time_days: float = Field(
        default=7.0, gt=0, description="Reorder lead time: forecast alerts below this many days"
    )
    replacement_jump_points: float = Field(
        default=15.0, gt=0, le=100, description="A rise of more than this is a new cartridge"
    )
    alert_rules: AlertRules = Field(
        default_factory=AlertRules,
        description='Overrides, e.g. {"sites": {"hq": {"low_percent": 25, "kinds": {"ink": {...}}}}}',
    )
    webhooks: tuple[WebhookConfig, ...] = Field(
        default=(),
        description='JSON list: [{"name": "ops", "url": "https://...", "secret": "..."}]',
    )
    mail: tuple[MailConfig, ...] = Field(
        default=(),
        description='JSON list: [{"name": "it", "host": "smtp.example.org", "sender": ..., "recipients": [...],'
        ' "site_recipients": {"hq": [...]}, "digest_at": "07:30"}]',
    )
    public_url: str = Field(
        default=DEFAULT_PUBLIC_URL,
        pattern=r"^https?://",
        description="Web UI address that mails link printers to",
    )
    digest_check_s: float = Field(
        default=30.0, gt=0, description="How often to look for a due daily digest"
    )
    # A collector announces itself every 60 s (TONERWATCH_COLLECTOR_STATUS_INTERVAL_S): three
    # missed statuses and a margin for a slow link make a site offline.
    collector_offline_after_s: float = Field(
        default=200.0,
        gt=0,
        description="Silence of a site collector that raises one site-offline alert",
    )
    collector_check_s: float = Field(
        default=10.0, gt=0, description="How often to look for silent site collectors"
    )

    def context(self) -> Context:
        """Return the evaluation context these settings describe."""
        return Context(
            base=Resolved(
                low_percent=self.low_percent,
                critical_percent=min(self.critical_percent, self.low_percent),
                hysteresis_points=self.hysteresis_points,
                lead_time_days=self.lead_time_days,
                replacement_jump_points=self.replacement_jump_points,
            ),
            rules=self.alert_rules,
            source=f"alerter/{self.instance}",
        )


def consumer_specs(
    subjects: Subjects, ack_wait_s: float = 30.0
) -> tuple[ConsumerSpec, ConsumerSpec]:
    """Return the durable consumers every replica shares: readings, and printer events."""
    readings = ConsumerSpec(
        durable=subjects.name("alerter"),
        filter_subject=SupplyReading.subject_filter(subjects),
        ack_wait_s=ack_wait_s,
        # A printer is read every few minutes: its alert may come a quarter second later, and
        # each pull request brings the readings of that quarter second, not one.
        linger_s=READINGS_LINGER_S,
    )
    printers = ConsumerSpec(
        durable=subjects.name("alerter_printer"),
        # printer.<what>.<id>: unreachable, reachable, removed (configured is ignored).
        filter_subject=subjects.area(PrinterUnreachable.subject_area(), keyed=True),
        ack_wait_s=ack_wait_s,
    )
    return readings, printers


class Sender(Protocol):
    """A channel's sender: its config (name, filter) and a send that raises DeliveryFailed."""

    @property
    def config(self) -> ChannelConfig: ...

    async def wants(self, event: Event) -> bool: ...

    async def send(self, event: Event) -> int: ...


def channel_specs(
    subjects: Subjects, kind: str, config: ChannelConfig, ack_wait_s: float = 30.0
) -> list[ConsumerSpec]:
    """Return the durable consumers feeding one channel: alert events (and swaps if wanted) from now on.

    The ack wait is the service's own (TONERWATCH_ACK_WAIT_S), not a delivery's worst case: a
    delivery taking longer keeps its event by telling NATS it is working on it (Bus.consume), and
    an alerter killed mid-delivery gives the event back after one ack wait, not after minutes
    (`handler_timeout_s` bounds the delivery itself).
    """
    filters = [("", subjects.area(ThresholdCrossed.subject_area()))]
    if config.replaced:
        filters.append(("_replaced", SupplyReplaced.subject_filter(subjects)))
    # Site offline and back online, in one ordered consumer so "back" never overtakes "offline";
    # the area also holds collectors' statuses, which the channel does not want (acked unsent).
    filters.append(("_sites", subjects.area(SiteOffline.subject_area(), keyed=True)))
    return [
        ConsumerSpec(
            durable=subjects.name(f"alerter_{kind}_{config.name}{suffix}"),
            filter_subject=subject,
            ack_wait_s=ack_wait_s,
            # A newly added channel starts with new alerts, not a week of history.
            deliver_new_only=True,
            # One at a time: after an outage mails and posts still go out in the order raised.
            ordered=True,
        )
        for suffix, subject in filters
    ]


def channel_handler(
    sender: Sender,
    *,
    channel: str | None = None,
    ledger: Ledger | None = None,
    digest: Digest | None = None,
    stale: Counter | None = None,
) -> Handler:
    """Return a consumer handler that delivers wanted events once; transient failures are retried by nak."""
    channel = channel or sender.config.name

    async def handle(event: Event, msg: Msg) -> None:
        if not await sender.wants(event):
            return
        eid = str(event.event_id)
        if ledger is not None and await ledger.delivered(channel, eid):
            return  # redelivered after a lost ack: already sent
        if ledger is not None and await ledger.stale(channel, event):
            # Older than what the channel already told about this alert (a late redelivery or a
            # replayed dead letter): sending it would undo the newer news.
            log.info("channel %s: stale %s %s not sent", channel, event_type(event), eid)
            if stale is not None:
                stale.labels(channel=channel).inc()
            return
        try:
            # A site offline is news now, not in tomorrow's digest.
            if digest is not None and not isinstance(event, SiteOffline | SiteOnline):
                await digest.collect(event)
            else:
                await sender.send(event)
        except DeliveryFailed as exc:
            if not exc.permanent:
                # The receiver is down or busy: pause the channel and retry, never give up.
                raise RetryLater(f"channel {channel}: {exc}") from exc
            # The receiver refused it for good: redelivering cannot help; set it aside (dead letter).
            raise Poison(f"channel {channel} refused {event.event_id}: {exc}") from exc
        if ledger is not None:
            await ledger.sent(channel, event)

    return handle


async def run(
    settings: Settings, *, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None
) -> None:
    """Run one alerter replica until stop (or SIGTERM), then drain."""
    stop = stop_event(stop)
    registry = CollectorRegistry()
    # /healthz answers while NATS is still being reached (liveness); /readyz says it is not yet.
    checks: dict[str, Check] = {"nats": not_connected("NATS")}
    async with serve_ops(settings.ops_host, settings.ops_port, registry, checks):
        await _run(settings, stop, ready, registry, checks)


async def _run(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None,
    registry: CollectorRegistry,
    checks: dict[str, Check],
) -> None:
    subjects = Subjects(settings.subject_root, settings.stream_prefix)
    bus = await Bus.for_service(settings, "alerter", stop=stop)
    stack = contextlib.AsyncExitStack()
    try:
        await bus.ensure_event_stream()
        store = StateStore(await bus.key_value(BUCKET))
        site_settings = SiteSettings(await bus.key_value(ss.BUCKET))
        # Both are read for every reading: from memory (watched buckets), not one KV get each.
        await store.start()
        stack.push_async_callback(store.stop)  # writes the steady readings' times kept in memory
        await site_settings.start()
        stack.push_async_callback(site_settings.stop)
        processor = Processor(bus, store, settings.context(), site_settings)
        watcher = cw.CollectorWatcher(
            bus,
            ModelKv(await bus.key_value(cw.BUCKET), cw.CollectorWatch),
            settings.collector_offline_after_s,
            source=f"alerter/{settings.instance}",
        )
        servers = ms.MailServers(await bus.key_value(ms.BUCKET), Sealer.from_settings(settings))
        consumers: list[tuple[ConsumerSpec, Handler]] = [
            (ss.consumer_spec(subjects, settings.ack_wait_s), site_settings.handle),
            (ms.consumer_spec(subjects, settings.ack_wait_s), servers.handle),
            (cw.consumer_spec(subjects, settings.ack_wait_s), watcher.handle),
            *((spec, processor.handle) for spec in consumer_specs(subjects, settings.ack_wait_s)),
        ]
        webhooks: list[tuple[str, Sender]] = []
        if settings.webhooks:  # httpx, its SSL context and certifi's bundle only when used
            import httpx

            http = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
            webhooks = [("webhook", WebhookSender(hook, http)) for hook in settings.webhooks]
        ledger = await ld.open_ledger(bus, settings.events_max_age)

        async def labels(printer_id: str) -> PrinterLabel | None:
            state = (await store.load(printer_id)).state
            return state.label() if state else None

        senders: list[tuple[str, Sender]] = [
            *webhooks,
            *(
                (
                    "mail",
                    MailSender(
                        route,
                        public_url=settings.public_url,
                        labels=labels,
                        # While a server set in the web UI mails the web UI's recipients, the
                        # environment's routes keep to their own (nobody is mailed twice).
                        site_recipients=ms.without_ui_recipients(servers, site_settings.recipients),
                        printer_recipients=ms.without_ui_printer_recipients(
                            servers, site_settings.printer_recipients
                        ),
                    ),
                )
                for route in settings.mail
            ),
            (
                "mail",
                ms.ServerMail(
                    servers,
                    functools.partial(
                        MailSender,
                        public_url=settings.public_url,
                        labels=labels,
                        site_recipients=site_settings.recipients,
                        printer_recipients=site_settings.printer_recipients,
                    ),
                ),
            ),
        ]
        digests: list[Digest] = []
        stale = Counter(
            "tonerwatch_alert_events_stale",
            "Alert events not delivered by a channel: older than what it already sent for the alert",
            ["channel"],
            registry=registry,
        )
        handler_timeouts: dict[str, float] = {}
        for kind, sender in senders:
            digest = None
            if isinstance(sender, MailSender) and sender.config.digest_at is not None:
                kv = await bus.key_value(dg.BUCKET)
                digest = Digest(sender, kv, instance=settings.instance)
                digests.append(digest)
            handler = channel_handler(
                sender,
                channel=f"{kind}_{sender.config.name}",
                ledger=ledger,
                digest=digest,
                stale=stale,
            )
            for spec in channel_specs(subjects, kind, sender.config, settings.ack_wait_s):
                consumers.append((spec, handler))
                # A delivery with all its tries may take this long before it is given up.
                handler_timeouts[spec.durable] = sender.config.worst_case_s() + 30
        for spec, _ in consumers:
            await bus.ensure_consumer(spec)
        published = Counter(
            "tonerwatch_alert_events", "Alert events published by this replica", registry=registry
        )
        published.inc(0)
        checks.update(
            {
                "nats": bus_check(bus),
                "stream_fill": stream_fill_gauge(registry, bus),
                "lag": consumer_lag_gauge(
                    registry, bus, {spec.durable: subjects.events_stream for spec, _ in consumers}
                ),
            }
        )
        if ready is not None:
            ready.set()
        log.info("alerter ready (%d notification channels)", len(senders))
        async with asyncio.TaskGroup() as tg:
            for spec, handler in consumers:
                timeout = (
                    handler_timeouts.get(spec.durable) or spec.ack_wait_s or bus.retry.ack_wait_s
                )
                tg.create_task(bus.consume(spec, handler, stop=stop, handler_timeout_s=timeout))
            for digest in digests:
                tg.create_task(digest.run(stop, settings.digest_check_s))
            tg.create_task(_count(processor, published, stop))
            tg.create_task(watcher.run(stop, settings.collector_check_s))
        log.info(
            "alerter stopping: %d published, %d duplicates, %d write conflicts, %d steady"
            " readings kept in memory",
            processor.published,
            processor.duplicates,
            processor.conflicts,
            store.deferred,
        )
    finally:
        await stack.aclose()
        await bus.drain()


__all__ = ["Sender", "Settings", "channel_handler", "channel_specs", "consumer_specs", "run"]


async def _count(processor: Processor, published: Counter, stop: asyncio.Event) -> None:
    """Mirror the processor's published count into the metric until stop."""
    seen = 0
    while not await sleep_until_stopped(stop, 5.0):
        now = processor.published
        published.inc(now - seen)
        seen = now
