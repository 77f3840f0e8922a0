"""The syncer against a real local HTTP upstream: signed POSTs, retried while the upstream is down, nothing lost."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator

from aiohttp import web

from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_syncer.service import Settings, headers_for, run, sign

SECRET = "s3cret-shared-with-the-portal"


def crossed(printer_id: str = "p-1") -> ev.ThresholdCrossed:
    return ev.ThresholdCrossed(
        source="test",
        site_id="hq",
        printer_id=printer_id,
        alert_id=f"{printer_id}:1.1:low",
        rule="low",
        severity="warning",
        supply_index="1.1",
        part_number="CF400X",
        percent=8.0,
        message="Low toner",
    )


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    event = crossed()
    body = event.to_bytes()
    headers = headers_for(event, body, SECRET, now=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert (
        headers["X-TonerWatch-Signature"]
        == f"sha256={expected}"
        == sign(SECRET, 1_700_000_000, body)
    )
    assert headers["Idempotency-Key"] == str(event.event_id)
    assert "X-TonerWatch-Signature" not in headers_for(event, body, None)


class Upstream:
    """A real HTTP portal on 127.0.0.1 that can be told to fail."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        self.received.append((dict(request.headers), body))
        return web.Response(status=202)


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    portal = Upstream()
    app = web.Application()
    app.router.add_post("/tonerwatch", portal.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield portal, f"http://127.0.0.1:{port}/tonerwatch"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_syncer(bus: Bus, nats_url: str, url: str) -> AsyncIterator[None]:
    settings = Settings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        sync_url=url,
        sync_secret=SECRET,
        sync_timeout_s=2,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 15)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_threshold_crossed_reaches_the_portal_signed(bus: Bus, nats_url: str) -> None:
    async with upstream() as (portal, url), running_syncer(bus, nats_url, url):
        event = crossed()
        await bus.publish(event)
        await eventually(lambda: portal.received, timeout_s=10)
    headers, body = portal.received[0]
    assert ev.parse_event(body) == event
    ts = int(headers["X-TonerWatch-Timestamp"])
    assert headers["X-TonerWatch-Signature"] == sign(SECRET, ts, body)


async def test_portal_down_then_up_gets_the_event_once(bus: Bus, nats_url: str) -> None:
    async with upstream() as (portal, url), running_syncer(bus, nats_url, url):
        portal.fail_next = 2  # refused twice, then accepted: JetStream redelivers with back-off
        await bus.publish(crossed("p-2"))
        await eventually(lambda: portal.received, timeout_s=20)
        await asyncio.sleep(1.0)
    assert len(portal.received) == 1
