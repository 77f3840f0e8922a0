"""Webhook channel against a real HTTP receiver on 127.0.0.1: signatures, retries, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from tonerwatch_alerter.channels import ledger as ld
from tonerwatch_alerter.channels.webhook import DeliveryFailed, WebhookConfig, WebhookSender
from tonerwatch_alerter.service import Settings, channel_handler, run
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import AlertResolved, SupplyReading, ThresholdCrossed, parse_event
from tonerwatch_shared.printer.model import PrinterIdentity, Supply, SupplyKind
from tonerwatch_shared.settings import load_settings
from tonerwatch_shared.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
    verify,
)
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually

SECRET = "s3cret-for-tests"


class Receiver:
    """A minimal HTTP/1.1 server: answers each request with the next scripted status ("drop" = hang up)."""

    def __init__(self, script: list[int | str] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks/tonerwatch"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                await reader.readline()  # request line
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip()] = value.strip()
                body = await reader.readexactly(int(headers.get("Content-Length", "0")))
            self.requests.append((headers, body))
            action = self.script.pop(0) if self.script else 200
            if action == "drop":
                return
            extra = "Retry-After: 2\r\n" if action == 429 else ""
            writer.write(
                f"HTTP/1.1 {action} X\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def crossing(severity: str = "warning", site: str = "hq") -> ThresholdCrossed:
    return ThresholdCrossed(
        source="alerter-test",
        site_id=site,
        printer_id="kyocera-m2540dn-02",
        alert_id="kyocera-m2540dn-02:1.1:low",
        rule="low",
        severity=severity,  # type: ignore[arg-type]
        supply_index="1.1",
        supply_description="TK-1170",
        percent=18.0,
        threshold=20.0,
        days_to_empty=9.5,
        message="TK-1170 low, 18% left",
    )


def hook(url: str, **kw: object) -> WebhookConfig:
    return WebhookConfig.model_validate({"name": "ops", "url": url, "secret": SECRET, **kw})


class Sleeps:
    """Records back-off sleeps instead of waiting them out."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, s: float) -> None:
        self.calls.append(s)


@contextlib.asynccontextmanager
async def sender(url: str, **kw: object) -> AsyncIterator[tuple[WebhookSender, Sleeps]]:
    sleeps = Sleeps()
    async with httpx.AsyncClient() as client:
        yield WebhookSender(hook(url, **kw), client, sleep=sleeps), sleeps


async def test_delivers_signed_event_json() -> None:
    event = crossing()
    async with Receiver() as rx, sender(rx.url) as (s, _):
        assert await s.send(event) == 1
    [(headers, body)] = rx.requests
    assert verify(headers, body, SECRET.encode(), now=time.time())
    assert headers[EVENT_ID_HEADER] == str(event.event_id)
    assert headers[EVENT_TYPE_HEADER] == "tonerwatch.threshold_crossed.v1"
    assert parse_event(body) == event
    assert json.loads(body)["days_to_empty"] == 9.5


async def test_retries_5xx_with_growing_backoff_then_succeeds() -> None:
    async with Receiver([503, 502]) as rx, sender(rx.url, attempts=4, backoff_s=1.0) as (s, sleeps):
        assert await s.send(crossing()) == 3
    assert len(rx.requests) == 3
    assert len(sleeps.calls) == 2
    assert 0.8 <= sleeps.calls[0] <= 1.2 and 1.6 <= sleeps.calls[1] <= 2.4
    # Same event each time, so the receiver can dedupe; signed afresh each time.
    assert len({h[EVENT_ID_HEADER] for h, _ in rx.requests}) == 1


async def test_dropped_connection_is_retried() -> None:
    async with Receiver(["drop"]) as rx, sender(rx.url) as (s, _):
        assert await s.send(crossing()) == 2


async def test_429_honours_retry_after() -> None:
    async with Receiver([429]) as rx, sender(rx.url, backoff_s=0.1) as (s, sleeps):
        assert await s.send(crossing()) == 2
    assert sleeps.calls[0] >= 2 * 0.8


async def test_4xx_is_permanent_without_retry() -> None:
    async with Receiver([401]) as rx, sender(rx.url) as (s, sleeps):
        with pytest.raises(DeliveryFailed) as err:
            await s.send(crossing())
    assert err.value.permanent
    assert len(rx.requests) == 1 and sleeps.calls == []


async def test_gives_up_after_attempts_as_transient() -> None:
    async with Receiver([500, 500, 500]) as rx, sender(rx.url, attempts=3) as (s, _):
        with pytest.raises(DeliveryFailed) as err:
            await s.send(crossing())
    assert not err.value.permanent
    assert "HTTP 500 after 3 attempts" in str(err.value)
    assert len(rx.requests) == 3


async def test_refused_connection_is_transient() -> None:
    async with Receiver() as rx:
        url = rx.url
    # The receiver is gone: nothing listens on that loopback port any more.
    async with sender(url, attempts=2) as (s, _):
        with pytest.raises(DeliveryFailed) as err:
            await s.send(crossing())
    assert not err.value.permanent and "ConnectError" in str(err.value)


def test_verify_rejects_tampering_old_requests_and_wrong_secret() -> None:
    body = crossing().to_bytes()
    now = 1_770_000_000
    headers = {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: signature(body, SECRET.encode(), now)}
    assert verify(headers, body, SECRET.encode(), now=now + 10)
    assert not verify(headers, body.replace(b"18.0", b"98.0"), SECRET.encode(), now=now)
    assert not verify(headers, body, SECRET.encode(), now=now + 3600)
    assert not verify(headers, body, b"other", now=now)
    assert not verify({}, body, SECRET.encode(), now=now)


def test_wants_filters_severity_and_site() -> None:
    h = hook("http://127.0.0.1:1/x", min_severity="warning", sites=["hq"])
    assert h.wants(crossing("warning"))
    assert h.wants(crossing("critical"))
    assert not h.wants(crossing("info"))
    assert not h.wants(crossing("critical", site="branch"))
    resolved = AlertResolved(
        source="t", site_id="hq", printer_id="p", alert_id="p:1.1:low", rule="low"
    )
    assert h.wants(resolved)


def test_secret_never_in_repr() -> None:
    assert SECRET not in repr(hook("http://127.0.0.1:1/x"))


async def test_service_delivers_crossing_to_webhook_retrying_through_the_bus(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    async with Receiver([503]) as rx:
        settings = load_settings(
            Settings,
            nats_url=nats_url,
            subject_root=subjects.root,
            stream_prefix=subjects.stream_prefix,
            instance="wh",
            # One try per delivery: the 503 goes back to JetStream, which redelivers after ~1 s.
            webhooks=[{"name": "ops", "url": rx.url, "secret": SECRET, "attempts": 1}],
        )
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run(settings, stop=stop, ready=ready))
        try:
            await asyncio.wait_for(ready.wait(), 20)
            for i, pct in enumerate([30.0, 19.0]):
                await bus.publish(
                    SupplyReading(
                        source="poller-test",
                        site_id="hq",
                        printer_id="kyocera-m2540dn-02",
                        address="127.0.0.1",
                        printer=PrinterIdentity(vendor="Kyocera", model="ECOSYS M2540dn"),
                        supplies=(
                            Supply(
                                index="1.1",
                                description="TK-1170",
                                kind=SupplyKind.TONER,
                                percent=pct,
                            ),
                        ),
                        occurred_at=datetime(2026, 3, 2, 8, i, tzinfo=UTC),
                    )
                )
            await eventually(lambda: len(rx.requests) >= 2, timeout_s=15)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
    assert len(rx.requests) == 2
    ids = {h[EVENT_ID_HEADER] for h, _ in rx.requests}
    assert len(ids) == 1
    headers, body = rx.requests[-1]
    assert verify(headers, body, SECRET.encode(), now=time.time())
    event = parse_event(body)
    assert isinstance(event, ThresholdCrossed) and event.rule == "low" and event.percent == 19


async def test_a_late_crossed_is_not_posted_after_its_resolve(bus: Bus) -> None:
    """The webhook channel keeps each alert's order like mail: a "crossed" older (by seq) than
    the "resolved" it already posted (a late redelivery, a replayed dead letter) is not posted,
    and the events it posts carry seq for the receiver's own check."""
    ledger = await ld.open_ledger(bus, 7 * 86400.0)
    raised = crossing().model_copy(update={"seq": 10})
    cleared = AlertResolved(
        source="alerter-test",
        site_id="hq",
        printer_id=raised.printer_id,
        alert_id=raised.alert_id,
        rule="low",
        seq=12,
    )
    late = crossing().model_copy(update={"seq": 11})
    async with Receiver() as rx, sender(rx.url) as (s, _):
        handle = channel_handler(s, channel="webhook_ops", ledger=ledger)
        for event in (raised, cleared, late):
            await handle(event, None)  # type: ignore[arg-type]
    posted = [parse_event(body) for _headers, body in rx.requests]
    assert [e.event_id for e in posted] == [raised.event_id, cleared.event_id]
    assert [json.loads(body)["seq"] for _headers, body in rx.requests] == [10, 12]


async def test_the_sent_ledger_keeps_positions_as_long_as_the_events_stream_says(
    bus: Bus,
) -> None:
    """Issue 16: ALERTER_SENT's TTL follows the configured events max age (30 days here, plus
    the dead-letter replay window), and a bucket an older alerter made with 7 days is raised."""
    day = 86400.0
    stream = f"KV_{bus.subjects.name(ld.BUCKET)}"
    await bus.key_value(ld.BUCKET, ttl_s=7 * day)  # as the alerter before issue 16 made it
    ledger = await ld.open_ledger(bus, 30 * day)
    assert (await bus.js.stream_info(stream)).config.max_age == ld.ttl_s(30 * day) == 120 * day
    await ledger.record("webhook", "e-1")
    assert await ledger.delivered("webhook", "e-1")
