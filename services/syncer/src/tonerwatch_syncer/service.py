"""The syncer: forwards what the fleet needs (threshold crossings, replacements) to an upstream portal.

Each event is POSTed as its JSON to `TONERWATCH_SYNC_URL`, signed with HMAC-SHA256 over
`<timestamp>.<body>` when `TONERWATCH_SYNC_SECRET` is set (headers `X-TonerWatch-Timestamp`,
`X-TonerWatch-Signature: sha256=<hex>`), with `Idempotency-Key: <event_id>` so the upstream can drop
repeats. A failed POST is retried by JetStream with back-off (nak), so nothing is lost while the
upstream is down. Without a URL the syncer acknowledges and forwards nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time

import httpx
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field

from tonerwatch_shared.bus import Bus, ConsumerSpec
from tonerwatch_shared.events import Event
from tonerwatch_shared.lifecycle import stop_event
from tonerwatch_shared.ops import bus_check, consumer_lag_gauge, serve_ops
from tonerwatch_shared.settings import CommonSettings
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger("tonerwatch.syncer")


class Settings(CommonSettings):
    """Syncer knobs (env TONERWATCH_<NAME>)."""

    sync_url: str | None = Field(default=None, description="Upstream endpoint receiving event JSON")
    sync_secret: str | None = Field(default=None, repr=False, description="HMAC-SHA256 key")
    sync_timeout_s: float = Field(default=10.0, gt=0)
    sync_verify_tls: bool = True
    sync_proxy: str | None = Field(default=None, description="HTTP(S) proxy URL for the upstream")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the signature header value for body sent at timestamp."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def headers_for(
    event: Event, body: bytes, secret: str | None, now: float | None = None
) -> dict[str, str]:
    """Return the HTTP headers of one forwarded event."""
    ts = int(now if now is not None else time.time())
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": str(event.event_id),
        "X-TonerWatch-Event": str(getattr(event, "type", "")),
        "X-TonerWatch-Timestamp": str(ts),
    }
    if secret:
        headers["X-TonerWatch-Signature"] = sign(secret, ts, body)
    return headers


class UpstreamError(Exception):
    """The upstream refused or did not answer; the event will be retried."""


async def forward(client: httpx.AsyncClient, settings: Settings, event: Event) -> None:
    """POST event to the upstream; raise UpstreamError (so the bus retries) unless it answered 2xx."""
    if not settings.sync_url:
        return
    body = event.to_bytes()
    try:
        resp = await client.post(
            settings.sync_url, content=body, headers=headers_for(event, body, settings.sync_secret)
        )
    except httpx.HTTPError as exc:
        raise UpstreamError(f"upstream {settings.sync_url} unreachable: {exc!r}") from exc
    if resp.status_code >= 300:
        raise UpstreamError(f"upstream {settings.sync_url} answered {resp.status_code}")


async def run(
    settings: Settings, *, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None
) -> None:
    """Forward alert events upstream until stop (or SIGTERM), then drain."""
    stop = stop_event(stop)
    subjects = Subjects(settings.subject_root, settings.stream_prefix)
    bus = await Bus.for_service(settings, "syncer")
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.sync_timeout_s),
        verify=settings.sync_verify_tls,
        proxy=settings.sync_proxy,
    )
    try:
        await bus.ensure_event_stream()

        registry = CollectorRegistry()
        forwarded = Counter(
            "tonerwatch_sync_forwarded", "Events forwarded upstream", ["result"], registry=registry
        )

        async def handle(event: Event, _msg: Msg) -> None:
            try:
                await forward(client, settings, event)
            except UpstreamError:
                forwarded.labels(result="failed").inc()
                raise
            forwarded.labels(result="ok" if settings.sync_url else "skipped").inc()

        # Alerts (crossed/resolved) and replacements are what a supplier acts on.
        specs = [
            ConsumerSpec(
                durable=subjects.name("syncer_alerts"),
                filter_subject=f"{subjects.root}.*.alert.>",
                max_deliver=1000,
            ),
            ConsumerSpec(
                durable=subjects.name("syncer_replaced"),
                filter_subject=subjects.filter("supply.replaced"),
                max_deliver=1000,
            ),
        ]
        checks = {
            "nats": bus_check(bus),
            "lag": consumer_lag_gauge(
                registry, bus, {spec.durable: subjects.events_stream for spec in specs}
            ),
        }
        for spec in specs:
            await bus.ensure_consumer(spec)
        async with serve_ops(settings.ops_host, settings.ops_port, registry, checks):
            if ready is not None:
                ready.set()
            log.info("syncer ready (%s)", settings.sync_url or "no upstream configured")
            async with asyncio.TaskGroup() as tg:
                for spec in specs:
                    tg.create_task(bus.consume(spec, handle, stop=stop))
    finally:
        await client.aclose()
        await bus.drain()
