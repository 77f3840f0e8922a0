"""Signed deliveries (webhooks and the upstream sync): what a receiver accepts and what it refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tonerwatch_shared import events as ev
from tonerwatch_shared.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRejected,
    check,
    delivery_headers,
    sign,
    verify,
)

SECRET = "whsec-test-only"
NOW = 1_770_000_000


def _delivery() -> tuple[dict[str, str], bytes]:
    event = ev.ThresholdCrossed(
        source="alerter/test",
        site_id="hq",
        printer_id="hp-m252dw-01",
        alert_id="hp-m252dw-01:1.1:low",
        rule="low",
        severity="warning",
        percent=8.0,
        message="Low toner",
    )
    body = event.to_bytes()
    return delivery_headers(event, body, SECRET, NOW), body


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"type":"tonerwatch.threshold_crossed.v1"}'
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert sign(body, SECRET, NOW) == {
        TIMESTAMP_HEADER: str(NOW),
        SIGNATURE_HEADER: f"sha256={expected}",
    }
    assert sign(body, SECRET.encode(), NOW) == sign(body, SECRET, NOW)


def test_valid_delivery_is_accepted_within_the_window() -> None:
    headers, body = _delivery()
    assert headers[EVENT_TYPE_HEADER] == "tonerwatch.threshold_crossed.v1"
    assert headers[EVENT_ID_HEADER] == str(ev.parse_event(body).event_id)
    check(headers, body, SECRET, now=NOW + 299)
    assert verify(headers, body, SECRET, now=NOW - 299)
    # Header names are case-insensitive in HTTP: a receiver's framework may lower them.
    assert verify({k.lower(): v for k, v in headers.items()}, body, SECRET, now=NOW)


def test_tampered_body_is_rejected() -> None:
    headers, body = _delivery()
    tampered = body.replace(b'"percent":8.0', b'"percent":80.0')
    assert tampered != body
    with pytest.raises(SignatureRejected, match="does not match"):
        check(headers, tampered, SECRET, now=NOW)
    assert not verify(headers, tampered, SECRET, now=NOW)


def test_wrong_secret_is_rejected() -> None:
    headers, body = _delivery()
    assert not verify(headers, body, "another-secret", now=NOW)


def test_stale_or_future_timestamp_is_rejected_as_a_replay() -> None:
    headers, body = _delivery()
    with pytest.raises(SignatureRejected, match="more than 300s"):
        check(headers, body, SECRET, now=NOW + 301)
    assert not verify(headers, body, SECRET, now=NOW - 301)
    assert verify(headers, body, SECRET, tolerance_s=3600, now=NOW + 3000)


def test_moved_timestamp_breaks_the_signature() -> None:
    # A replayer cannot freshen an old request: the timestamp is part of what is signed.
    headers, body = _delivery()
    moved = {**headers, TIMESTAMP_HEADER: str(NOW + 1000)}
    assert not verify(moved, body, SECRET, now=NOW + 1000)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TIMESTAMP_HEADER: str(NOW)},
        {TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: "sha256=00"},
    ],
)
def test_missing_or_malformed_headers_are_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureRejected):
        check(headers, b"{}", SECRET, now=NOW)


def test_unsigned_delivery_carries_no_signature() -> None:
    event = ev.PrinterRemoved(source="t", site_id="hq", printer_id="p-1")
    headers = delivery_headers(event, event.to_bytes(), None, NOW)
    assert SIGNATURE_HEADER not in headers and headers[TIMESTAMP_HEADER] == str(NOW)


def test_a_receiver_takes_a_delivery_once_and_refuses_a_forged_one() -> None:
    from tonerwatch_shared.signing import IDEMPOTENCY_HEADER, ReplayGuard

    headers, body = _delivery()
    assert headers[IDEMPOTENCY_HEADER] == headers[EVENT_ID_HEADER]
    guard = ReplayGuard(SECRET)
    assert guard.admit(headers, body, now=NOW) is True
    assert guard.admit(headers, body, now=NOW + 10) is False  # a retry after a lost answer
    with pytest.raises(SignatureRejected):
        guard.admit(headers, body + b" ", now=NOW)
    with pytest.raises(SignatureRejected):
        guard.admit(headers, body, now=NOW + 3600)  # a replay an hour later
