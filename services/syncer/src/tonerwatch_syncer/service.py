"""The syncer: forwards what the fleet needs (alerts, replacements, orders) to an upstream portal.

Each event is POSTed as its JSON to `TONERWATCH_SYNC_URL` with the headers of
tonerwatch_shared.signing (the alert webhooks' too): signed with HMAC-SHA256 over `<timestamp>.<body>`
when `TONERWATCH_SYNC_SECRET` is set, plus `Idempotency-Key: <event_id>` so the upstream can drop
repeats. A failed POST is retried by JetStream with back-off (nak), so nothing is lost while the
upstream is down. Without a URL the syncer acknowledges and forwards nothing.

What every exchange costs is measured (`exchange_bytes`) and, once the upstream took the event,
published as `upstream-synced` (bytes of every answered attempt), so the api can show sync beside
polling and discovery on the network impact page.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import httpx
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field

from tonerwatch_shared.bus import Bus, ConsumerSpec, event_type
from tonerwatch_shared.events import (
    Event,
    OrderChanged,
    PrinterEvent,
    SupplyReplaced,
    ThresholdCrossed,
    UpstreamSynced,
)
from tonerwatch_shared.lifecycle import stop_event
from tonerwatch_shared.ops import (
    Check,
    bus_check,
    consumer_lag_gauge,
    not_connected,
    serve_ops,
    stream_fill_gauge,
)
from tonerwatch_shared.settings import CommonSettings
from tonerwatch_shared.signing import delivery_headers
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger("tonerwatch.syncer")


class Settings(CommonSettings):
    """Syncer knobs (env TONERWATCH_<NAME>)."""

    sync_url: str | None = Field(default=None, description="Upstream endpoint receiving event JSON")
    sync_secret: str | None = Field(default=None, repr=False, description="HMAC-SHA256 key")
    sync_timeout_s: float = Field(default=10.0, gt=0)
    sync_verify_tls: bool = True
    sync_proxy: str | None = Field(default=None, description="HTTP(S) proxy URL for the upstream")


def headers_for(
    event: Event, body: bytes, secret: str | None, now: float | None = None
) -> dict[str, str]:
    """Return the HTTP headers of one forwarded event."""
    ts = int(now if now is not None else time.time())
    # An empty secret, like none, sends unsigned.
    headers = delivery_headers(event, body, secret or None, ts)
    headers["Idempotency-Key"] = str(event.event_id)
    # Before the shared header set; kept so existing upstreams reading it go on working.
    headers["X-TonerWatch-Event"] = event_type(event)
    return headers


class UpstreamError(Exception):
    """The upstream refused or did not answer; the event will be retried."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        # The refusal, when there was one: its bytes crossed the wire and count too.
        self.response = response


async def forward(
    client: httpx.AsyncClient, settings: Settings, event: Event
) -> httpx.Response | None:
    """Return the upstream's 2xx answer to event (None without a URL); else raise UpstreamError."""
    if not settings.sync_url:
        return None
    body = event.to_bytes()
    try:
        resp = await client.post(
            settings.sync_url, content=body, headers=headers_for(event, body, settings.sync_secret)
        )
    except httpx.HTTPError as exc:
        raise UpstreamError(f"upstream {settings.sync_url} unreachable: {exc!r}") from exc
    if resp.status_code >= 300:
        raise UpstreamError(f"upstream {settings.sync_url} answered {resp.status_code}", resp)
    return resp


def _header_bytes(headers: httpx.Headers) -> int:
    # Each field as "Name: value\r\n", then the empty line ending the head.
    return sum(len(name) + 2 + len(value) + 2 for name, value in headers.raw) + 2


def exchange_bytes(response: httpx.Response) -> tuple[int, int]:
    """Return (bytes sent, bytes received) of one answered HTTP/1.1 exchange."""
    # Counted as h11 writes and reads them: request line, header fields and body out; status
    # line, header fields and body (as it came, before any content decoding) back. Like the
    # poller's SNMP UDP payloads, TCP/IP and TLS framing are not counted, nor what a proxy adds
    # (CONNECT, absolute target) or the size lines of a chunked answer. The client speaks HTTP/1.1 only (no HTTP/2).
    request = response.request
    line = len(request.method) + 1 + len(request.url.raw_path) + len(" HTTP/1.1\r\n")
    sent = line + _header_bytes(request.headers) + len(request.content)
    version = response.extensions.get("http_version", b"HTTP/1.1")
    reason = response.extensions.get("reason_phrase", b"")
    # "HTTP/1.1 202 Accepted\r\n": version, space, three digits, then the reason if any.
    status = len(version) + 4 + (1 + len(reason) if reason else 0) + 2
    received = status + _header_bytes(response.headers) + response.num_bytes_downloaded
    return sent, received


# Namespace of upstream-synced event ids: derived from the forwarded event's id, so a re-forward
# after a lost ack publishes the same id and JetStream (Nats-Msg-Id) and the api drop the repeat.
_SYNCED_NS = uuid.UUID("6f1d2c7e-8b0a-4f5e-9d3c-2a7b1e4c9f60")


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


async def run(
    settings: Settings, *, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None
) -> None:
    """Forward alert events upstream until stop (or SIGTERM), then drain."""
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
    bus = await Bus.for_service(settings, "syncer", stop=stop)
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.sync_timeout_s),
        verify=settings.sync_verify_tls,
        proxy=settings.sync_proxy,
    )
    try:
        await bus.ensure_event_stream()

        forwarded = Counter(
            "tonerwatch_sync_forwarded", "Events forwarded upstream", ["result"], registry=registry
        )
        wire = Counter(
            "tonerwatch_sync_bytes",
            "HTTP bytes of upstream exchanges that got an answer (TLS/TCP framing excluded)",
            ["direction", "result"],
            registry=registry,
        )
        pending = PendingExchanges()

        def count(tally: Exchanges, response: httpx.Response, result: str) -> None:
            sent, received = exchange_bytes(response)
            tally.bytes_sent += sent
            tally.bytes_received += received
            wire.labels(direction="sent", result=result).inc(sent)
            wire.labels(direction="received", result=result).inc(received)

        async def handle(event: Event, _msg: Msg) -> None:
            if not settings.sync_url:
                forwarded.labels(result="skipped").inc()
                return
            tally = pending.attempt(event.event_id)
            try:
                response = await forward(client, settings, event)
            except UpstreamError as exc:
                forwarded.labels(result="failed").inc()
                if exc.response is not None:  # refused, but the bytes crossed the wire
                    count(tally, exc.response, "failed")
                raise
            assert response is not None
            forwarded.labels(result="ok").inc()
            count(tally, response, "ok")
            # Published before the ack: if it fails, the redelivery re-POSTs (the upstream drops
            # the repeat by Idempotency-Key) and reports all attempts under the same event id.
            await bus.publish(
                UpstreamSynced(
                    event_id=synced_event_id(event.event_id),
                    source=bus.source,
                    site_id=event.site_id,
                    printer_id=event.printer_id if isinstance(event, PrinterEvent) else None,
                    forwarded_event_id=event.event_id,
                    forwarded_type=event_type(event),
                    status_code=response.status_code,
                    attempts=tally.attempts,
                    bytes_sent=tally.bytes_sent,
                    bytes_received=tally.bytes_received,
                )
            )
            pending.done(event.event_id)

        # Alerts (crossed/resolved), replacements and orders are what a supplier acts on.
        specs = [
            ConsumerSpec(
                durable=subjects.name("syncer_alerts"),
                filter_subject=subjects.area(ThresholdCrossed.subject_area()),
                max_deliver=1000,
            ),
            ConsumerSpec(
                durable=subjects.name("syncer_replaced"),
                filter_subject=SupplyReplaced.subject_filter(subjects),
                max_deliver=1000,
            ),
            ConsumerSpec(
                durable=subjects.name("syncer_orders"),
                filter_subject=OrderChanged.subject_filter(subjects),
                max_deliver=1000,
            ),
        ]
        for spec in specs:
            await bus.ensure_consumer(spec)
        checks.update(
            {
                "nats": bus_check(bus),
                "stream_fill": stream_fill_gauge(registry, bus),
                "lag": consumer_lag_gauge(
                    registry, bus, {spec.durable: subjects.events_stream for spec in specs}
                ),
            }
        )
        if ready is not None:
            ready.set()
        log.info("syncer ready (%s)", settings.sync_url or "no upstream configured")
        async with asyncio.TaskGroup() as tg:
            for spec in specs:
                tg.create_task(bus.consume(spec, handle, stop=stop))
    finally:
        await client.aclose()
        await bus.drain()
