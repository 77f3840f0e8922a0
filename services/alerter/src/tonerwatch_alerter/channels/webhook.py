"""Webhook channel: POST each alert event as its JSON, signed HMAC-SHA256, retried with back-off.

Headers and how a receiver verifies them: tonerwatch_shared.signing (the upstream sync uses the
same). Delivery is at least once (a retry after a lost response sends the same event again).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr

from tonerwatch_alerter.channels.base import ChannelConfig, DeliveryFailed
from tonerwatch_shared.events import Event
from tonerwatch_shared.signing import delivery_headers

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

# Worth another try: the receiver is overloaded, restarting or rate limiting us.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookConfig(ChannelConfig):
    """One webhook receiver (an item of TONERWATCH_WEBHOOKS, a JSON list)."""

    url: str = Field(pattern=r"^https?://")
    secret: SecretStr


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
        import httpx  # loaded with the client (the alerter opens one only for webhooks)

        cfg = self.config
        body = event.to_bytes()
        secret = cfg.secret.get_secret_value()
        reason = ""
        for attempt in range(1, cfg.attempts + 1):
            headers = delivery_headers(event, body, secret, int(self.clock()))
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


__all__ = ["DeliveryFailed", "WebhookConfig", "WebhookSender"]
