"""Webhook channel: POST each alert event as its JSON, signed HMAC-SHA256, retried with back-off.

The receiver checks `X-TonerWatch-Signature: sha256=<hex>` = HMAC-SHA256(secret, f"{timestamp}." + body)
with `X-TonerWatch-Timestamp` (unix seconds) recent, and dedupes on `X-TonerWatch-Event-Id`: delivery
is at least once (a retry after a lost response sends the same event again).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx
from pydantic import Field, SecretStr

from tonerwatch_alerter.channels.base import ChannelConfig, DeliveryFailed
from tonerwatch_shared.bus import event_type
from tonerwatch_shared.events import Event

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-TonerWatch-Signature"
TIMESTAMP_HEADER = "X-TonerWatch-Timestamp"
EVENT_ID_HEADER = "X-TonerWatch-Event-Id"
EVENT_TYPE_HEADER = "X-TonerWatch-Event-Type"
# Worth another try: the receiver is overloaded, restarting or rate limiting us.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookConfig(ChannelConfig):
    """One webhook receiver (an item of TONERWATCH_WEBHOOKS, a JSON list)."""

    url: str = Field(pattern=r"^https?://")
    secret: SecretStr


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """Return the signature header value for body sent at timestamp."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: float = 300.0,
) -> bool:
    """Return whether headers carry a valid, fresh signature of body (for receivers and tests)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        ts = int(lower[TIMESTAMP_HEADER.lower()])
        given = lower[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        return False
    if abs(now - ts) > tolerance_s:
        return False  # a replayed old request
    return hmac.compare_digest(given, signature(secret, ts, body))


class WebhookSender:
    """Delivers events to one receiver over a shared HTTP client."""

    def __init__(
        self,
        config: WebhookConfig,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.client = client
        self.clock = clock
        self.sleep = sleep

    async def wants(self, event: Event) -> bool:
        """Return whether event goes to this receiver (the hook's filter)."""
        return self.config.wants(event)

    async def send(self, event: Event) -> int:
        """POST event until the receiver takes it; return the attempts used or raise DeliveryFailed."""
        cfg = self.config
        body = event.to_bytes()
        secret = cfg.secret.get_secret_value().encode()
        reason = ""
        for attempt in range(1, cfg.attempts + 1):
            ts = int(self.clock())
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(ts),
                SIGNATURE_HEADER: signature(secret, ts, body),
                EVENT_ID_HEADER: str(event.event_id),
                EVENT_TYPE_HEADER: event_type(event),
            }
            delay = cfg.backoff(attempt)
            try:
                resp = await self.client.post(
                    cfg.url, content=body, headers=headers, timeout=cfg.timeout_s
                )
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if resp.is_success:
                    return attempt
                reason = f"HTTP {resp.status_code}"
                if resp.status_code not in RETRYABLE_STATUS:
                    raise DeliveryFailed(f"{cfg.name}: {reason}, not retrying", permanent=True)
                delay = max(delay, _retry_after(resp, cfg.max_backoff_s))
            if attempt < cfg.attempts:
                log.info("webhook %s: %s, retry %d in %.1fs", cfg.name, reason, attempt, delay)
                # Jitter so many alerters do not retry in lock step.
                await self.sleep(delay * random.uniform(0.8, 1.2))
        raise DeliveryFailed(f"{cfg.name}: {reason} after {cfg.attempts} attempts")


def _retry_after(resp: httpx.Response, cap_s: float) -> float:
    try:
        return min(cap_s, max(0.0, float(resp.headers.get("Retry-After", "0"))))
    except ValueError:
        return 0.0  # an HTTP date: fall back to our own back-off


__all__ = ["DeliveryFailed", "WebhookConfig", "WebhookSender", "signature", "verify"]
