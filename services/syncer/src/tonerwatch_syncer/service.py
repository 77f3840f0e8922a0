"""The syncer: keeps an upstream portal told (docs/upstream-openapi.yaml, tonerwatch_shared.upstream).

- Alerts (crossed/resolved), replacements and orders are POSTed as they happen to
  `<TONERWATCH_SYNC_URL>/v1/events`, signed (tonerwatch_shared.signing, the webhooks' headers) with
  `Idempotency-Key: <event id>` so the portal drops repeats. While the portal is unreachable or
  answers 5xx/408/429 the consumers pause and retry with back-off for as long as the stream keeps
  the event (never dropped: docs/reliability.md); another refusal counts against the event, which
  after TONERWATCH_POISON_AFTER refusals is set aside as a dead letter (listed by the api,
  replayable). Each forwarding consumer has one event in flight, and an event waits while another
  of them still holds an older event of its printer, so one printer's or order's events reach the
  portal in the order they happened ("ordered" never overtakes "created", nor an order its alert).
- A supply crossing its reorder point (the low threshold, or a forecast inside the lead time) is
  also pushed at once to `/v1/reorders` with the printer's snapshot.
- Each site's fleet (every printer with its supplies, meters, status and service coverage, folded
  from the events into the `SYNC_FLEET` KV bucket: never asked of the api; coverage from the
  api's newest `printer_coverage` announcement, else from the readings' continuity and the orders
  seen, TONERWATCH_COVERAGE_RULES) goes to `/v1/snapshots` daily at
  TONERWATCH_SYNC_SNAPSHOT_AT, and every printer's meters to `/v1/meter-reads` at the turn of each
  month; gzip-compressed.
- Every TONERWATCH_SYNC_DOWNLINK_INTERVAL_S (default hourly) each site asks `/v1/downlink` what
  the portal has since its cursor (kept in `SYNC_STATE`; also sent as `If-None-Match`, so a portal
  with nothing new answers 304 without a body); with TONERWATCH_SYNC_DOWNLINK_WAIT_S the request
  is a long poll (`Prefer: wait=N`: a portal that supports it answers as soon as it has news, and
  the site asks again at once). The signed answer's items are published as
  `upstream-order-update` events, which the api applies to its orders.
Without a URL the syncer acknowledges and forwards nothing.

What every exchange costs is measured (`exchange_bytes`) and, once the upstream took a delivery,
published as `upstream-synced` (bytes of every answered attempt), so the api can show sync beside
polling and discovery on the network impact page.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import nats.js.errors
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field, model_validator

from tonerwatch_shared.bus import Bus, ConsumerSpec, RetryLater, event_type, positions_max_age
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    OrderChanged,
    PrinterEvent,
    SupplyReading,
    SupplyReplaced,
    ThresholdCrossed,
    UpstreamOrderUpdate,
    UpstreamSynced,
)
from tonerwatch_shared.kv import ModelKv
from tonerwatch_shared.kv_mirror import ModelMirror
from tonerwatch_shared.lifecycle import sleep_until_stopped, stop_event
from tonerwatch_shared.ops import (
    Check,
    bus_check,
    consumer_lag_gauge,
    not_connected,
    serve_ops,
    stream_fill_gauge,
)
from tonerwatch_shared.ordering import StoredPosition, is_stale, newest, position_of
from tonerwatch_shared.settings import CommonSettings
from tonerwatch_shared.signing import LEGACY_EVENT_HEADER, delivery_headers
from tonerwatch_shared.subjects import Subjects, token
from tonerwatch_shared.upstream import (
    DOWNLINK_PATH,
    EVENTS_PATH,
    DownlinkAnswer,
    DownlinkRequest,
    FleetSnapshot,
    MeterReads,
    PrinterEntry,
    ReorderPush,
    cursor_etag,
    document_id,
)
from tonerwatch_syncer.fleet import (
    FLEET_BUCKET,
    ORDER_BUCKET,
    STATE_BUCKET,
    KnownPrinter,
    SiteSyncState,
    fold,
    meter_reads,
    only_read_times_differ,
    site_entries,
    with_coverage,
)
from tonerwatch_syncer.schedule import meter_reads_due, snapshot_due
from tonerwatch_syncer.upstream import (
    NOT_MODIFIED,
    TlsProxy,
    UpstreamError,
    build_client,
    check_answer,
    endpoint,
    exchange_bytes,
    post,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("tonerwatch.syncer")

# Alert rules that are a supply's reorder point (tonerwatch_alerter.rules: LOW, FORECAST).
REORDER_RULES = frozenset({"low", "forecast"})
# How long an event waits before looking again whether its printer's older events have gone.
ORDER_WAIT_S = 0.5
# Looks at the schedule that may wait for the fleet's consumers to catch up before sending anyway.
BEHIND_LOOKS_MAX = 10


class Settings(CommonSettings):
    """Syncer knobs (env TONERWATCH_<NAME>)."""

    sync_url: str | None = Field(
        default=None, description="The portal's base URL; the contract's paths (/v1/...) follow it"
    )
    sync_secret: str | None = Field(default=None, repr=False, description="HMAC-SHA256 key")
    sync_timeout_s: float = Field(default=10.0, gt=0)
    sync_verify_tls: bool = True
    sync_allow_http: bool = Field(
        default=False, description="Allow an http:// portal (tests, a portal on the same host)"
    )
    sync_ca_bundle: Path | None = Field(
        default=None, description="PEM CA bundle the portal's certificate chains to"
    )
    sync_client_cert: Path | None = Field(
        default=None, description="PEM client certificate presented to the portal"
    )
    sync_client_key: Path | None = Field(
        default=None, description="Its private key, when not in the certificate file"
    )
    sync_proxy: str | None = Field(
        default=None, description="Proxy URL, http://host:port (unset: HTTPS_PROXY and NO_PROXY)"
    )
    sync_proxy_user: str | None = Field(default=None, description="Proxy user (Basic)")
    sync_proxy_password: str | None = Field(default=None, repr=False, description="Proxy password")
    sync_snapshot_at: dt.time = Field(
        default=dt.time(2, 0), description="Site-local time of the daily fleet snapshot (HH:MM)"
    )
    sync_timezone: str = Field(
        default="UTC", description="IANA time zone of the snapshot time and the month's turn"
    )
    sync_schedule_check_s: float = Field(
        default=30.0, gt=0, description="How often due snapshots and meter reads are looked for"
    )
    sync_ack_wait_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "How long one upstream delivery (with its retries) may take; NATS is told the event is"
            " in progress meanwhile, so a lost answer gives it back within TONERWATCH_ACK_WAIT_S"
        ),
    )
    sync_downlink_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often each site asks the portal what it has (downlink; 304 when nothing)",
    )
    sync_downlink_wait_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="Long poll: ask the portal to hold a downlink request up to this long "
        "(Prefer: wait=N) and answer as soon as it has something; 0: off. Keep it under the "
        "proxy's idle timeout",
    )

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> Settings:
        if self.sync_url:
            scheme = self.sync_url.split("://", 1)[0].lower() if "://" in self.sync_url else ""
            if scheme not in ("https", "http"):
                raise ValueError(
                    f"TONERWATCH_SYNC_URL must be an https:// URL, not {self.sync_url!r}"
                )
            if scheme == "http" and not self.sync_allow_http:
                raise ValueError(
                    "TONERWATCH_SYNC_URL must be https:// (the portal gets site data and orders); "
                    "set TONERWATCH_SYNC_ALLOW_HTTP=true to allow http:// deliberately"
                )
        try:
            ZoneInfo(self.sync_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"TONERWATCH_SYNC_TIMEZONE: unknown time zone {self.sync_timezone!r}"
            ) from None
        return self

    def tls_proxy(self) -> TlsProxy:
        """Return how to reach the portal (TLS and proxy)."""
        return TlsProxy(
            verify=self.sync_verify_tls,
            ca_bundle=self.sync_ca_bundle,
            client_cert=self.sync_client_cert,
            client_key=self.sync_client_key,
            proxy=self.sync_proxy,
            proxy_user=self.sync_proxy_user,
            proxy_password=self.sync_proxy_password,
        )


def headers_for(
    event: Event, body: bytes, secret: str | None, now: float | None = None
) -> dict[str, str]:
    """Return the HTTP headers of one forwarded event."""
    ts = int(now if now is not None else time.time())
    # An empty secret, like none, sends unsigned.
    headers = delivery_headers(event, body, secret or None, ts)
    # The sync's name for the type before the header sets were joined: kept for one version.
    headers[LEGACY_EVENT_HEADER] = event_type(event)
    return headers


def printer_filter(filter_subject: str, site_id: str, printer_id: str) -> str:
    """Return the part of a consumer's filter (`<root>.*.<area>.>` or `....<what>.*`) for one printer."""
    root, _site, *rest = filter_subject.split(".")
    if rest and rest[-1] == ">":
        rest[-1] = "*"
        rest.append(token(printer_id))
    elif rest and rest[-1] == "*":
        rest[-1] = token(printer_id)
    return ".".join([root, token(site_id), *rest])


async def order_bucket(bus: Bus, events_max_age_s: float) -> ModelKv[StoredPosition]:
    """Return the SYNC_ORDER bucket, created (or bounded) with a TTL that outlives every event it
    could judge stale (tonerwatch_shared.bus.positions_max_age): one entry per alert, not forever."""
    kv = await bus.key_value(ORDER_BUCKET, ttl_s=positions_max_age(events_max_age_s))
    return ModelKv(kv, StoredPosition)


def next_ask_in(settings: Settings, taken: int, took_s: float) -> float:
    """Return how long a site waits before asking the downlink again.

    At once after an answer with items (there may be more), or after a request the portal
    held for at least half the long-poll wait (it is listening again at once); otherwise the
    rest of TONERWATCH_SYNC_DOWNLINK_INTERVAL_S from when the request went (so a portal that
    ignores `Prefer: wait` is asked no more often than without it).
    """
    wait = settings.sync_downlink_wait_s
    if taken or (wait > 0 and took_s >= wait / 2):
        return 0.0
    return max(0.0, settings.sync_downlink_interval_s - took_s)


def upstream_down(exc: UpstreamError) -> bool:
    """Return whether the portal itself is in trouble (no answer, 5xx, 408, 429), not the event."""
    if exc.response is None:
        return True
    code = exc.response.status_code
    return code >= 500 or code in (408, 429)


async def forward(
    client: httpx.AsyncClient, settings: Settings, event: Event
) -> httpx.Response | None:
    """Return the upstream's answer taking event (None without a URL); else raise UpstreamError."""
    if not settings.sync_url:
        return None
    return await post(
        client,
        endpoint(settings.sync_url, EVENTS_PATH),
        event.event_id,
        event_type(event),
        event.to_bytes(),
        settings.sync_secret,
        extra_headers={LEGACY_EVENT_HEADER: event_type(event)},
    )


# Namespace of upstream-synced event ids: derived from the forwarded event's id, so a re-forward
# after a lost ack publishes the same id and JetStream (Nats-Msg-Id) and the api drop the repeat.
_SYNCED_NS = uuid.UUID("6f1d2c7e-8b0a-4f5e-9d3c-2a7b1e4c9f60")


def order_key(alert_id: str) -> str:
    """Return the SYNC_ORDER key of an alert id (hashed: alert ids hold ':' and dots)."""
    return "a_" + hashlib.sha256(alert_id.encode()).hexdigest()[:40]


def synced_event_id(forwarded_event_id: uuid.UUID) -> uuid.UUID:
    """Return the id of the upstream-synced event for a forwarded event (the same on every re-forward)."""
    return uuid.uuid5(_SYNCED_NS, str(forwarded_event_id))


@dataclass
class Exchanges:
    """What the POSTs of one event cost so far."""

    attempts: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


class PendingExchanges:
    """Per forwarded event, the attempts not yet reported (failed ones wait for the delivery)."""

    def __init__(self, limit: int = 10_000) -> None:
        # Bounded: an event the upstream never takes must not grow memory for ever.
        self.limit = limit
        self._by_event: OrderedDict[uuid.UUID, Exchanges] = OrderedDict()

    def attempt(self, event_id: uuid.UUID) -> Exchanges:
        """Return the tally of event_id with one more attempt counted."""
        tally = self._by_event.pop(event_id, None) or Exchanges()
        tally.attempts += 1
        self._by_event[event_id] = tally
        while len(self._by_event) > self.limit:
            self._by_event.popitem(last=False)
        return tally

    def done(self, event_id: uuid.UUID) -> None:
        """Forget event_id once its delivery is reported."""
        self._by_event.pop(event_id, None)


class Syncer:
    """The syncer's state: the portal client, the fleet and schedule buckets, the metrics."""

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        client: httpx.AsyncClient | None,
        fleet: ModelKv[KnownPrinter],
        state: ModelKv[SiteSyncState],
        registry: CollectorRegistry,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        remembering: Sequence[ConsumerSpec] = (),
        order: ModelKv[StoredPosition] | None = None,
        forwarding: Sequence[ConsumerSpec] = (),
    ) -> None:
        self.settings = settings
        # The consumers forwarding events: one printer's events never overtake each other across them.
        self.forwarding = tuple(forwarding)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        # The fleet's consumers: a snapshot waits until they have caught up with the stream.
        self.remembering = tuple(remembering)
        self.behind_looks = 0
        self.bus = bus
        self.client = client
        self.fleet = fleet
        # Read and folded into for every reading: from memory, kept current by a watch once
        # started (start_fleet); a steady reading's times are held, not written every time.
        self.fleet_mirror = ModelMirror(fleet, compact=True)  # one key per printer: as JSON
        self.state = state
        # Per alert: the position of the last crossed/resolved sent, so an older one is not.
        self.order = order
        self.pending = PendingExchanges()
        self.forwarded = Counter(
            "tonerwatch_sync_forwarded", "Events forwarded upstream", ["result"], registry=registry
        )
        self.documents = Counter(
            "tonerwatch_sync_documents",
            "Snapshots, reorder pushes and meter reads sent upstream",
            ["type", "result"],
            registry=registry,
        )
        self.wire = Counter(
            "tonerwatch_sync_bytes",
            "HTTP bytes of upstream exchanges that got an answer (TLS/TCP framing excluded)",
            ["direction", "result"],
            registry=registry,
        )

    def count(self, tally: Exchanges, response: httpx.Response, result: str) -> None:
        """Add one answered exchange to tally and the byte counters."""
        sent, received = exchange_bytes(response)
        tally.bytes_sent += sent
        tally.bytes_received += received
        self.wire.labels(direction="sent", result=result).inc(sent)
        self.wire.labels(direction="received", result=result).inc(received)

    async def send(
        self,
        path: str,
        doc_id: uuid.UUID,
        doc_type: str,
        body: bytes,
        *,
        site_id: str,
        printer_id: str | None = None,
        compress: bool = True,
        extra_headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """POST one document (or event) and report what it cost; raise UpstreamError if not taken."""
        assert self.settings.sync_url and self.client is not None
        tally = self.pending.attempt(doc_id)
        headers = dict(extra_headers or {})
        if path == EVENTS_PATH:
            headers[LEGACY_EVENT_HEADER] = doc_type
        try:
            response = await post(
                self.client,
                endpoint(self.settings.sync_url, path),
                doc_id,
                doc_type,
                body,
                self.settings.sync_secret,
                compress=compress,
                extra_headers=headers or None,
                also_ok=frozenset({NOT_MODIFIED}) if path == DOWNLINK_PATH else frozenset(),
                timeout_s=timeout_s,
            )
        except UpstreamError as exc:
            if exc.response is not None:  # refused, but the bytes crossed the wire
                self.count(tally, exc.response, "failed")
            raise
        self.count(tally, response, "ok")
        # Published before the ack: if it fails, the redelivery re-POSTs (the upstream drops
        # the repeat by Idempotency-Key) and reports all attempts under the same event id.
        await self.bus.publish(
            UpstreamSynced(
                event_id=synced_event_id(doc_id),
                source=self.bus.source,
                site_id=site_id,
                printer_id=printer_id,
                forwarded_event_id=doc_id,
                forwarded_type=doc_type,
                # 409 (the portal had it already) is a delivery too: reported as 200.
                status_code=response.status_code if response.status_code < 300 else 200,
                attempts=tally.attempts,
                bytes_sent=tally.bytes_sent,
                bytes_received=tally.bytes_received,
            )
        )
        self.pending.done(doc_id)
        return response

    async def older_elsewhere(self, event: PrinterEvent, msg: Msg) -> str | None:
        """Return the forwarding consumer holding an older event of event's printer not yet taken.

        Alerts, replacements and orders are three ordered consumers; after an outage each resumes
        on its own back-off, so without this a printer's "order created" could overtake its "low"
        alert. An event waits while another consumer has an event of the same printer from
        earlier in the stream that it has not finished (past its ack floor): the oldest always
        goes first, so they never wait on each other.
        """
        meta = msg.metadata if msg.reply else None
        stream = self.bus.subjects.events_stream
        if meta is None or meta.stream != stream:
            return None  # a dead letter replayed by an operator goes when asked
        seq = meta.sequence.stream
        for spec in self.forwarding:
            if spec.durable == meta.consumer:
                continue
            try:
                info = await self.bus.js.consumer_info(stream, spec.durable)
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                if floor + 1 >= seq:
                    continue
                subject = printer_filter(spec.filter_subject, event.site_id, event.printer_id)
                older = await self.bus.js.get_msg(stream, seq=floor + 1, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                continue
            except nats.js.errors.APIError as exc:
                # Refused (a NATS user without STREAM.MSG.GET: deploy/nats/permissions.py): go on
                # without the check rather than hold every event back.
                log.warning("cannot check %s for older events of a printer: %s", spec.durable, exc)
                continue
            if older.seq is not None and older.seq < seq:
                return spec.durable
        return None

    async def handle(self, event: Event, msg: Msg) -> None:
        """Forward one alert, replacement or order event; a reorder point also pushes the printer."""
        if not self.settings.sync_url:
            self.forwarded.labels(result="skipped").inc()
            return
        if await self.stale(event):
            # Older than what the portal was told of this alert (a late redelivery, a replayed
            # dead letter): sending it would undo the newer news ("crossed" after "resolved").
            log.info("not forwarding stale %s %s", event_type(event), event.event_id)
            self.forwarded.labels(result="stale").inc()
            return
        if isinstance(event, PrinterEvent):
            holder = await self.older_elsewhere(event, msg)
            if holder is not None:
                raise RetryLater(
                    f"printer {event.printer_id}: an older event waits in {holder}",
                    delay_s=ORDER_WAIT_S,
                )
        try:
            await self.send(
                EVENTS_PATH,
                event.event_id,
                event_type(event),
                event.to_bytes(),
                site_id=event.site_id,
                printer_id=event.printer_id if isinstance(event, PrinterEvent) else None,
                compress=False,
            )
        except UpstreamError as exc:
            self.forwarded.labels(result="failed").inc()
            if upstream_down(exc):
                # Not the event's fault: pause forwarding (no deliveries burned) and retry.
                raise RetryLater(str(exc)) from exc
            raise
        self.forwarded.labels(result="ok").inc()
        await self.advance(event)
        if isinstance(event, ThresholdCrossed) and event.rule in REORDER_RULES:
            try:
                await self.push_reorder(event)
            except UpstreamError as exc:
                if upstream_down(exc):
                    raise RetryLater(str(exc)) from exc
                raise

    async def stale(self, event: Event) -> bool:
        """Return whether event is a crossed/resolved older than what was sent for its alert."""
        if self.order is None or not isinstance(event, ThresholdCrossed | AlertResolved):
            return False
        last = (await self.order.read(order_key(event.alert_id))).value
        return is_stale(last.position() if last else None, event)

    async def advance(self, event: Event) -> None:
        """Remember event as the newest sent for its alert (never moving back)."""
        if self.order is None or not isinstance(event, ThresholdCrossed | AlertResolved):
            return

        def change(last: StoredPosition | None) -> StoredPosition:
            before = last.position() if last else None
            return StoredPosition.of(newest(before, position_of(event)))

        await self.order.edit(order_key(event.alert_id), change)

    async def push_reorder(self, alert: ThresholdCrossed) -> None:
        """POST the reorder push of alert with the printer's latest snapshot."""
        known = (await self.fleet_mirror.read(token(alert.printer_id))).value
        entry = (
            with_coverage(known, self.settings.coverage_rules, self.clock())
            if known is not None
            else PrinterEntry(printer_id=alert.printer_id, address="")
        )
        push = ReorderPush(
            id=document_id("reorder", str(alert.event_id)),
            site_id=alert.site_id,
            occurred_at=alert.occurred_at,
            alert_id=alert.alert_id,
            rule=alert.rule,
            supply_index=alert.supply_index,
            part_number=alert.part_number,
            percent=alert.percent,
            days_to_empty=alert.days_to_empty,
            printer=entry,
        )
        await self.deliver(push, printer_id=alert.printer_id)

    async def deliver(
        self, doc: FleetSnapshot | ReorderPush | MeterReads, printer_id: str | None = None
    ) -> None:
        """POST one document gzip-compressed; raise UpstreamError if the portal did not take it."""
        try:
            await self.send(
                doc.path,
                doc.id,
                doc.type,
                doc.model_dump_json().encode(),
                site_id=doc.site_id,
                printer_id=printer_id,
            )
        except UpstreamError:
            self.documents.labels(type=doc.type, result="failed").inc()
            raise
        self.documents.labels(type=doc.type, result="ok").inc()

    async def start_fleet(self) -> None:
        """Load the fleet bucket into memory and follow it (without: every fold asks KV)."""
        await self.fleet_mirror.start()

    async def stop_fleet(self) -> None:
        """Write the steady readings' times held in memory, then end the fleet's watch."""
        try:
            await self.fleet_mirror.flush()
        finally:
            await self.fleet_mirror.stop()

    async def remember(self, event: Event, _msg: Msg) -> None:
        """Fold a reading, configuration, reachability or order event into the fleet bucket.

        A steady reading (nothing but when the printer was read changed) is held in memory, and
        written with the printer's next change, within the mirror's touch interval, or at stop.
        """
        if not isinstance(event, PrinterEvent):
            return
        rules = self.settings.coverage_rules
        await self.fleet_mirror.edit(
            token(event.printer_id),
            lambda known: fold(known, event, rules),
            steady=only_read_times_differ if isinstance(event, SupplyReading) else None,
        )

    async def printers(self) -> list[KnownPrinter]:
        """Return every printer the syncer knows of."""
        if self.fleet_mirror.running:
            return self.fleet_mirror.values()
        found = []
        for key in await self.fleet.keys():
            value = (await self.fleet.read(key)).value
            if value is not None:
                found.append(value)
        return found

    async def caught_up(self) -> bool:
        """Return whether the fleet's consumers have taken every event in the stream so far."""
        for spec in self.remembering:
            info = await self.bus.js.consumer_info(self.bus.subjects.events_stream, spec.durable)
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    async def scheduled(self) -> None:
        """Send every site's due daily snapshot and month-end meter reads (a failure waits for the next look)."""
        if not self.settings.sync_url:
            return
        if not await self.caught_up() and self.behind_looks < BEHIND_LOOKS_MAX:
            self.behind_looks += 1  # a busy fleet may never be fully caught up: then send anyway
            return
        self.behind_looks = 0
        now = self.clock()
        local = now.astimezone(ZoneInfo(self.settings.sync_timezone))
        printers = await self.printers()
        for site in sorted({p.site_id for p in printers}):
            state = (await self.state.read(token(site))).value or SiteSyncState()
            entries = site_entries(printers, site, self.settings.coverage_rules, now)
            day = snapshot_due(local, self.settings.sync_snapshot_at, state.last_snapshot_day)
            try:
                if day is not None:
                    await self.deliver(
                        FleetSnapshot(
                            id=document_id("snapshot", site, day.isoformat()),
                            site_id=site,
                            day=day,
                            printers=entries,
                        )
                    )
                    await self._mark(site, last_snapshot_day=day.isoformat())
                period = meter_reads_due(local, state.last_meter_period)
                if period is not None:
                    await self.deliver(
                        MeterReads(
                            id=document_id("meter-reads", site, period),
                            site_id=site,
                            period=period,
                            reads=meter_reads(entries),
                        )
                    )
                    await self._mark(site, last_meter_period=period)
            except UpstreamError as exc:
                log.warning("site %s: scheduled delivery not taken, trying again: %s", site, exc)

    async def _mark(self, site: str, **changes: str) -> None:
        def change(state: SiteSyncState | None) -> SiteSyncState:
            return (state or SiteSyncState()).model_copy(update=changes)

        await self.state.edit(token(site), change)

    async def poll_downlink(self) -> int:
        """Ask the portal once what it has for each site (at once, concurrently); return the items."""
        if not self.settings.sync_url:
            return 0
        sites = sorted({p.site_id for p in await self.printers()})
        return sum(await asyncio.gather(*(self.ask_downlink(site) for site in sites)))

    async def ask_downlink(self, site: str) -> int:
        """Ask the portal what it has for site since its cursor, publish it; return the items taken.

        With TONERWATCH_SYNC_DOWNLINK_WAIT_S the request says `Prefer: wait=N`: a portal that
        supports it holds the request until it has something or N seconds passed (long poll).
        """
        wait = self.settings.sync_downlink_wait_s
        state = (await self.state.read(token(site))).value or SiteSyncState()
        asked = DownlinkRequest(site_id=site, cursor=state.downlink_cursor)
        etag = cursor_etag(state.downlink_cursor)
        headers = {"If-None-Match": etag} if etag else {}
        if wait > 0:
            headers["Prefer"] = f"wait={int(wait)}"
        try:
            response = await self.send(
                DOWNLINK_PATH,
                asked.id,
                asked.type,
                asked.model_dump_json().encode(),
                site_id=site,
                compress=False,
                extra_headers=headers or None,
                timeout_s=self.settings.sync_timeout_s + wait if wait > 0 else None,
            )
            check_answer(response, self.settings.sync_secret)
            if response.status_code == NOT_MODIFIED:
                return 0  # nothing since the cursor: the cheapest answer (no body)
            answer = DownlinkAnswer.model_validate_json(response.content)
        except (UpstreamError, ValueError) as exc:
            log.warning("site %s: downlink not read, asking again later: %s", site, exc)
            return 0
        if answer.site_id != site:
            log.warning("site %s: the portal answered for site %s; ignored", site, answer.site_id)
            return 0
        taken = 0
        for item in answer.items:
            # The id comes from the portal's item id: a repeat (after a crash before the cursor
            # was saved) is dropped by JetStream and by the api.
            await self.bus.publish(
                UpstreamOrderUpdate(
                    event_id=document_id("downlink", site, item.id),
                    source=self.bus.source,
                    site_id=site,
                    item_id=item.id,
                    kind=item.kind,
                    order_id=item.order_id,
                    supplier_reference=item.supplier_reference,
                    carrier=item.carrier,
                    tracking_number=item.tracking_number,
                    tracking_url=item.tracking_url,
                    reason=item.reason,
                    text=item.text,
                    at=item.at,
                )
            )
            taken += 1
        if answer.cursor != state.downlink_cursor:
            await self._mark(site, downlink_cursor=answer.cursor or "")
        return taken

    async def site_downlink_loop(self, site: str, stop: asyncio.Event) -> None:
        """Ask the portal for site's downlink until stop (next_ask_in says when)."""
        while not stop.is_set():
            began = time.monotonic()
            # A long poll may be held for minutes: stopping does not wait for it.
            ask = asyncio.create_task(self.ask_downlink(site))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({ask, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not ask.done():
                ask.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ask
                return
            try:
                taken = ask.result()
            except Exception:
                log.exception("site %s: downlink failed; asking again later", site)
                taken = 0
            delay = next_ask_in(self.settings, taken, time.monotonic() - began)
            if await sleep_until_stopped(stop, delay):
                return

    async def downlink_loop(self, stop: asyncio.Event) -> None:
        """Keep one downlink loop per known site (sites appear as their printers do) until stop."""
        if not self.settings.sync_url:
            return
        async with asyncio.TaskGroup() as tg:
            running: set[str] = set()
            while not stop.is_set():
                try:
                    sites = {p.site_id for p in await self.printers()}
                except Exception:
                    log.exception("downlink: the fleet bucket could not be read; looking again")
                    sites = set()
                for site in sorted(sites - running):
                    running.add(site)
                    tg.create_task(self.site_downlink_loop(site, stop))
                if await sleep_until_stopped(stop, self.settings.sync_schedule_check_s):
                    return

    async def schedule_loop(self, stop: asyncio.Event) -> None:
        """Look for due snapshots every sync_schedule_check_s until stop."""
        while not stop.is_set():
            try:
                await self.scheduled()
            except Exception:
                # A NATS hiccup reading the buckets: look again at the next tick, never crash.
                log.exception("scheduled upstream deliveries failed; trying again")
            if await sleep_until_stopped(stop, self.settings.sync_schedule_check_s):
                return


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> None:
    """Keep the upstream told until stop (or SIGTERM), then drain; clock: the schedule's (tests)."""
    stop = stop_event(stop)
    registry = CollectorRegistry()
    # /healthz answers while NATS is still being reached (liveness); /readyz says it is not yet.
    checks: dict[str, Check] = {"nats": not_connected("NATS")}
    async with serve_ops(settings.ops_host, settings.ops_port, registry, checks):
        await _run(settings, stop, ready, registry, checks, clock)


async def _run(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None,
    registry: CollectorRegistry,
    checks: dict[str, Check],
    clock: Callable[[], dt.datetime] | None,
) -> None:
    subjects = Subjects(settings.subject_root, settings.stream_prefix)
    bus = await Bus.for_service(settings, "syncer", stop=stop)
    # No portal, no HTTP client (nor httpx loaded: issue 15, memory).
    client = (
        build_client(settings.tls_proxy(), settings.sync_timeout_s) if settings.sync_url else None
    )
    try:
        await bus.ensure_event_stream()
        # Alerts (crossed/resolved), replacements and orders are what a supplier acts on; each
        # consumer ordered (one in flight), never dropping an event (docs/reliability.md). Their
        # ack wait is the bus's short one: a delivery in progress is announced (working_on), and
        # an ack or nak lost with NATS (a restart) must not hold an ordered consumer for minutes.
        forwarding = [
            ConsumerSpec(
                durable=subjects.name("syncer_alerts"),
                filter_subject=subjects.area(ThresholdCrossed.subject_area()),
                ordered=True,
            ),
            ConsumerSpec(
                durable=subjects.name("syncer_replaced"),
                filter_subject=SupplyReplaced.subject_filter(subjects),
                ordered=True,
            ),
            ConsumerSpec(
                durable=subjects.name("syncer_orders"),
                filter_subject=OrderChanged.subject_filter(subjects),
                ordered=True,
            ),
        ]
        # What the snapshots are made of: readings, and the printers' configuration, reachability
        # and service coverage (the api's announcements: printer.coverage).
        remembering = [
            ConsumerSpec(
                durable=subjects.name("syncer_fleet_readings"),
                filter_subject=SupplyReading.subject_filter(subjects),
                # The fleet is sent daily: each pull request brings a quarter second of readings.
                linger_s=0.25,
            ),
            ConsumerSpec(
                durable=subjects.name("syncer_fleet_printers"),
                filter_subject=subjects.area("printer"),
            ),
            # Orders placed through TonerWatch: the service coverage sent in the snapshot.
            ConsumerSpec(
                durable=subjects.name("syncer_fleet_orders"),
                filter_subject=OrderChanged.subject_filter(subjects),
            ),
        ]
        for spec in forwarding + remembering:
            await bus.ensure_consumer(spec)
        syncer = Syncer(
            settings,
            bus,
            client,
            ModelKv(await bus.key_value(FLEET_BUCKET), KnownPrinter),
            ModelKv(await bus.key_value(STATE_BUCKET), SiteSyncState),
            registry,
            clock=clock,
            remembering=remembering,
            order=await order_bucket(bus, settings.events_max_age),
            forwarding=forwarding,
        )
        await syncer.start_fleet()
        checks.update(
            {
                "nats": bus_check(bus),
                "stream_fill": stream_fill_gauge(registry, bus),
                "lag": consumer_lag_gauge(
                    registry,
                    bus,
                    {spec.durable: subjects.events_stream for spec in forwarding + remembering},
                ),
            }
        )
        if ready is not None:
            ready.set()
        log.info("syncer ready (%s)", settings.sync_url or "no upstream configured")
        async with asyncio.TaskGroup() as tg:
            for spec in forwarding:
                tg.create_task(
                    bus.consume(
                        spec, syncer.handle, stop=stop, handler_timeout_s=settings.sync_ack_wait_s
                    )
                )
            for spec in remembering:
                tg.create_task(bus.consume(spec, syncer.remember, stop=stop))
            tg.create_task(syncer.schedule_loop(stop))
            tg.create_task(syncer.downlink_loop(stop))
        await syncer.stop_fleet()
    finally:
        if client is not None:
            await client.aclose()
        await bus.drain()
