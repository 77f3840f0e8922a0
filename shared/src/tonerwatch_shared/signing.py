"""Signed HTTP deliveries of events (alert webhooks, the upstream sync): one header set, one check.

A delivery carries the event's JSON as its body and these headers:

- `X-TonerWatch-Timestamp`: unix seconds when it was sent;
- `X-TonerWatch-Signature`: `sha256=<hex>` = HMAC-SHA256(secret, `<timestamp>.` + body), when a
  secret is set;
- `X-TonerWatch-Event-Id` and `X-TonerWatch-Event-Type`: what to dedupe on and how to parse
  (for the upstream's documents, the document's id and type);
- `Idempotency-Key`: the same id again, for gateways that dedupe on that header.

The upstream sync also sends `X-TonerWatch-Event` (its name for the type before the header sets
were joined) with events, for one more version: receivers should read `X-TonerWatch-Event-Type`.
The portal signs its downlink answers the same way (timestamp and signature over its body).

A receiver recomputes the HMAC over the raw body, compares in constant time, rejects a timestamp
further than a tolerance (five minutes) from its clock, and drops Event-Ids it has already taken
within that window: delivery is at least once, and a replayed request is either stale or a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping

from tonerwatch_shared.bus import event_type
from tonerwatch_shared.events import Event

TIMESTAMP_HEADER = "X-TonerWatch-Timestamp"
SIGNATURE_HEADER = "X-TonerWatch-Signature"
EVENT_ID_HEADER = "X-TonerWatch-Event-Id"
EVENT_TYPE_HEADER = "X-TonerWatch-Event-Type"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# The sync's type header before the header sets were joined: still sent with events, goes in 2.0.
LEGACY_EVENT_HEADER = "X-TonerWatch-Event"
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


def document_headers(
    doc_id: uuid.UUID | str,
    doc_type: str,
    body: bytes,
    secret: str | bytes | None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Return the headers of one delivery of a document (id, type) as body, signed unless secret is None."""
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: str(doc_id),
        EVENT_TYPE_HEADER: doc_type,
        IDEMPOTENCY_HEADER: str(doc_id),
        TIMESTAMP_HEADER: str(ts),
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(body, secret, ts)
    return headers


def delivery_headers(
    event: Event, body: bytes, secret: str | bytes | None, timestamp: int | None = None
) -> dict[str, str]:
    """Return the headers of one delivery of event as body (signed unless secret is None)."""
    return document_headers(event.event_id, event_type(event), body, secret, timestamp)


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


class ReplayGuard:
    """A receiver's memory of ids taken within the tolerance: the signature check plus dedupe."""

    def __init__(
        self, secret: str | bytes, tolerance_s: float = DEFAULT_TOLERANCE_S, limit: int = 100_000
    ) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def admit(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> bool:
        """Return True for a fresh, rightly signed delivery seen first, False for a repeat of its id.

        Raises SignatureRejected (saying why) for a missing, stale or wrong signature.
        """
        current = time.time() if now is None else now
        check(headers, body, self.secret, self.tolerance_s, now=current)
        lower = {k.lower(): v for k, v in headers.items()}
        key = lower.get(EVENT_ID_HEADER.lower()) or lower.get(IDEMPOTENCY_HEADER.lower())
        if key is None:
            raise SignatureRejected(f"missing {EVENT_ID_HEADER}")
        # Ids older than twice the window can no longer come with a fresh timestamp: forget them.
        while self._seen and (
            len(self._seen) > self.limit
            or next(iter(self._seen.values())) < current - 2 * self.tolerance_s
        ):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = current
        return True


__all__ = [
    "DEFAULT_TOLERANCE_S",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "IDEMPOTENCY_HEADER",
    "LEGACY_EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ReplayGuard",
    "SignatureRejected",
    "check",
    "delivery_headers",
    "document_headers",
    "sign",
    "signature",
    "verify",
]
