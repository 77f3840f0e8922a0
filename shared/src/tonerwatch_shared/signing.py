"""Signed HTTP deliveries of events (alert webhooks, the upstream sync): one header set, one check.

A delivery carries the event's JSON as its body and these headers:

- `X-TonerWatch-Timestamp`: unix seconds when it was sent;
- `X-TonerWatch-Signature`: `sha256=<hex>` = HMAC-SHA256(secret, `<timestamp>.` + body), when a
  secret is set;
- `X-TonerWatch-Event-Id` and `X-TonerWatch-Event-Type`: what to dedupe on and how to parse.

A receiver recomputes the HMAC over the raw body, compares in constant time, rejects a timestamp
further than a tolerance (five minutes) from its clock, and drops Event-Ids it has already taken
within that window: delivery is at least once, and a replayed request is either stale or a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from tonerwatch_shared.bus import event_type
from tonerwatch_shared.events import Event

TIMESTAMP_HEADER = "X-TonerWatch-Timestamp"
SIGNATURE_HEADER = "X-TonerWatch-Signature"
EVENT_ID_HEADER = "X-TonerWatch-Event-Id"
EVENT_TYPE_HEADER = "X-TonerWatch-Event-Type"
SCHEME = "sha256="
# How far a timestamp may be from the receiver's clock: replay window and clock skew in one.
DEFAULT_TOLERANCE_S = 300.0


class SignatureRejected(Exception):
    """A delivery's signature is missing, malformed, stale, or not the body's; the message says which."""


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def signature(body: bytes, secret: str | bytes, timestamp: int) -> str:
    """Return the signature header value of body sent at timestamp (`sha256=<hex>`)."""
    signed = f"{timestamp}.".encode() + body
    return SCHEME + hmac.new(_secret_bytes(secret), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str | bytes, timestamp: int) -> dict[str, str]:
    """Return the timestamp and signature headers of body sent at timestamp."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(body, secret, timestamp)}


def delivery_headers(
    event: Event, body: bytes, secret: str | bytes | None, timestamp: int | None = None
) -> dict[str, str]:
    """Return the headers of one delivery of event as body (signed unless secret is None)."""
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: str(event.event_id),
        EVENT_TYPE_HEADER: event_type(event),
        TIMESTAMP_HEADER: str(ts),
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(body, secret, ts)
    return headers


def check(
    headers: Mapping[str, str],
    body: bytes,
    secret: str | bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> None:
    """Return if headers carry a fresh signature of body by secret; else raise SignatureRejected."""
    lower = {k.lower(): v for k, v in headers.items()}
    given = lower.get(SIGNATURE_HEADER.lower())
    raw_ts = lower.get(TIMESTAMP_HEADER.lower())
    if given is None or raw_ts is None:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    try:
        ts = int(raw_ts)
    except ValueError:
        raise SignatureRejected(f"{TIMESTAMP_HEADER} is not unix seconds: {raw_ts!r}") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        # Checked first but not trusted alone: the timestamp is inside the signed text.
        raise SignatureRejected(f"timestamp {ts} is more than {tolerance_s:g}s from now")
    if not hmac.compare_digest(given.encode(), signature(body, secret, ts).encode()):
        raise SignatureRejected("signature does not match the body")


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secret: str | bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Return whether headers carry a fresh signature of body by secret (check() says why not)."""
    try:
        check(headers, body, secret, tolerance_s, now=now)
    except SignatureRejected:
        return False
    return True


__all__ = [
    "DEFAULT_TOLERANCE_S",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureRejected",
    "check",
    "delivery_headers",
    "sign",
    "signature",
    "verify",
]
