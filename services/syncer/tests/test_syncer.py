"""The syncer against a real local HTTP upstream: signed POSTs, retried while the upstream is down, nothing lost."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
from aiohttp import web

from tonerwatch_shared import events as ev
from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.ordering import Position, StoredPosition
from tonerwatch_shared.signing import EVENT_ID_HEADER, EVENT_TYPE_HEADER, signature, verify
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_syncer.fleet import ORDER_BUCKET
from tonerwatch_syncer.service import Settings, headers_for, order_bucket, run, synced_event_id

SECRET = "s3cret-shared-with-the-portal"


def crossed(printer_id: str = "p-1", rule: str = "low") -> ev.ThresholdCrossed:
    return ev.ThresholdCrossed(
        source="test",
        site_id="hq",
        printer_id=printer_id,
        alert_id=f"{printer_id}:1.1:{rule}",
        rule=rule,
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
        == signature(body, SECRET, 1_700_000_000)
    )
    assert headers["Idempotency-Key"] == str(event.event_id)
    assert "X-TonerWatch-Signature" not in headers_for(event, body, None)
    # The webhooks' header set: a receiver of both checks them the same way.
    assert headers[EVENT_ID_HEADER] == str(event.event_id)
    assert headers[EVENT_TYPE_HEADER] == "tonerwatch.threshold_crossed.v1"
    assert verify(headers, body, SECRET, now=1_700_000_000)


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
    app.router.add_post("/tonerwatch/v1/events", portal.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield portal, f"http://127.0.0.1:{port}/tonerwatch"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_syncer(
    bus: Bus, nats_url: str, url: str, ops_port: int | None = None
) -> AsyncIterator[None]:
    settings = Settings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        sync_url=url,
        sync_allow_http=True,
        sync_secret=SECRET,
        sync_timeout_s=2,
        ops_port=ops_port,
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
    assert headers["X-TonerWatch-Signature"] == signature(body, SECRET, ts)


async def test_portal_down_then_up_gets_the_event_once(bus: Bus, nats_url: str) -> None:
    async with upstream() as (portal, url), running_syncer(bus, nats_url, url):
        portal.fail_next = 2  # refused twice, then accepted: JetStream redelivers with back-off
        await bus.publish(crossed("p-2"))
        await eventually(lambda: portal.received, timeout_s=20)
        await asyncio.sleep(1.0)
    assert len(portal.received) == 1


class CountingPortal:
    """An HTTP/1.1 portal on 127.0.0.1 that counts the raw bytes it reads and writes."""

    def __init__(self) -> None:
        self.bytes_read = 0
        self.bytes_written = 0
        self.accepted: list[bytes] = []
        self.fail_next = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one connection may carry several exchanges
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.bytes_read += len(head) + len(body)
                if self.fail_next > 0:
                    self.fail_next -= 1
                    status, payload = b"503 Service Unavailable", b'{"error":"busy, retry"}'
                else:
                    status, payload = b"202 Accepted", b'{"accepted":true}'
                    self.accepted.append(body)
                answer = (
                    b"HTTP/1.1 " + status + b"\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: " + str(len(payload)).encode() + b"\r\n"
                    b"Server: portal-test\r\n\r\n" + payload
                )
                # Counted before it leaves, so the total is final once the syncer has the answer.
                self.bytes_written += len(answer)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        finally:
            writer.close()


async def metric(port: int, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as c:
        text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_delivery_publishes_the_bytes_the_portal_really_exchanged(
    bus: Bus, nats_url: str
) -> None:
    portal = CountingPortal()
    portal.fail_next = 1  # the first POST is refused: its bytes count too
    server = await asyncio.start_server(portal.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ops_port = free_tcp_port()
    # Critical is not a reorder point: the event is the only delivery, so its bytes are all there are.
    event = crossed("p-7", rule="critical")
    try:
        async with running_syncer(
            bus, nats_url, f"http://127.0.0.1:{port}/tonerwatch", ops_port=ops_port
        ):
            await bus.publish(event)
            synced = await wait_for_event(
                bus,
                bus.subjects.filter(sj.UPSTREAM_SYNCED),
                lambda e: isinstance(e, ev.UpstreamSynced),
                timeout_s=20,
            )
            sent = await metric(ops_port, 'tonerwatch_sync_bytes_total{direction="sent"')
            received = await metric(ops_port, 'tonerwatch_sync_bytes_total{direction="received"')
            refused = await metric(
                ops_port, 'tonerwatch_sync_bytes_total{direction="received",result="failed"}'
            )
    finally:
        server.close()
        await server.wait_closed()
    assert isinstance(synced, ev.UpstreamSynced)
    assert len(portal.accepted) == 1 and ev.parse_event(portal.accepted[0]) == event
    assert synced.attempts == 2 and synced.status_code == 202
    assert synced.bytes_sent == portal.bytes_read > 2 * len(event.to_bytes())
    assert synced.bytes_received == portal.bytes_written
    assert (sent, received) == (portal.bytes_read, portal.bytes_written)
    assert 0 < refused < received
    assert synced.site_id == "hq" and synced.printer_id == "p-7"
    assert synced.forwarded_event_id == event.event_id
    assert synced.forwarded_type == "tonerwatch.threshold_crossed.v1"
    # A re-forward after a lost ack publishes the same id, so JetStream and the api drop it.
    assert synced.event_id == synced_event_id(event.event_id)
    assert synced.subject(bus.subjects) == f"{bus.subjects.root}.hq.sync.delivered.p-7"


async def test_orders_reach_the_portal_as_they_change(bus: Bus, nats_url: str) -> None:
    placed = datetime.now(UTC)
    common = {
        "source": "api/test",
        "site_id": "hq",
        "printer_id": "p-1",
        "order_id": "o-5c1e9a7b3d20",
        "supply_index": "1",
        "supply_description": "Black Cartridge HP W2030A",
        "part_number": "W2030X",
        "quantity": 2,
        "created_at": placed,
    }
    created = ev.OrderChanged(change="created", status="requested", **common)
    ordered = ev.OrderChanged(
        change="status",
        status="ordered",
        previous_status="requested",
        supplier_reference="PO-2026-0412",
        ordered_at=placed,
        **common,
    )
    async with upstream() as (portal, url), running_syncer(bus, nats_url, url):
        await bus.publish(created)
        await bus.publish(ordered)
        await eventually(lambda: len(portal.received) == 2, timeout_s=10)
    got = [ev.parse_event(body) for _, body in portal.received]
    assert got == [created, ordered]
    headers, body = portal.received[1]
    assert headers["X-TonerWatch-Event"] == "tonerwatch.order_changed.v1"
    assert headers["Idempotency-Key"] == str(ordered.event_id)
    assert headers["X-TonerWatch-Signature"] == signature(
        body, SECRET, int(headers["X-TonerWatch-Timestamp"])
    )


def alert_event(
    seq: int, minute: int, resolved: bool = False
) -> ev.ThresholdCrossed | ev.AlertResolved:
    """The critical alert of p-9's black toner (critical is no reorder point: events only)."""
    common = {
        "source": "alerter/a",
        "site_id": "hq",
        "printer_id": "p-9",
        "alert_id": "p-9:1.1:critical",
        "rule": "critical",
        "occurred_at": datetime(2026, 3, 2, 8, minute, tzinfo=UTC),
        "seq": seq,
    }
    if resolved:
        return ev.AlertResolved(**common, message="cleared")
    return ev.ThresholdCrossed(**common, severity="critical", message=f"Critical (seq {seq})")


async def test_portal_down_then_a_late_crossed_is_not_forwarded_after_its_resolve(
    bus: Bus, nats_url: str
) -> None:
    """Through an upstream outage, a "crossed" older than the "resolved" already forwarded (a
    redelivery held back, a dead letter replayed) is not sent: the portal's last word on the
    alert stays the true final state. In: 4 events; out: 3 delivered once each, 1 stale."""
    ops_port = free_tcp_port()
    raised, cleared = alert_event(2, 2), alert_event(4, 4, resolved=True)
    late, again = alert_event(3, 3), alert_event(6, 6)
    async with upstream() as (portal, url), running_syncer(bus, nats_url, url, ops_port=ops_port):
        portal.fail_next = 3  # the portal is down for the first tries
        for event in (raised, cleared, late, again):
            await bus.publish(event)
        await eventually(lambda: len(portal.received) >= 3, timeout_s=30)

        async def counted() -> bool:
            return await metric(ops_port, 'tonerwatch_sync_forwarded_total{result="stale"}') == 1

        await eventually(counted, timeout_s=10)
        await asyncio.sleep(1.0)  # anything more (a repeat, the stale one) would arrive now
        assert await metric(ops_port, 'tonerwatch_sync_forwarded_total{result="ok"}') == 3
    got = [ev.parse_event(body) for _headers, body in portal.received]
    assert [e.event_id for e in got] == [raised.event_id, cleared.event_id, again.event_id]
    assert [getattr(e, "seq", None) for e in got] == [2, 4, 6]


async def test_the_order_bucket_is_bounded_by_the_events_max_age(bus: Bus) -> None:
    """Issue 16: SYNC_ORDER (one position per alert) expires entries no stale event can need any
    more: the configured events max age (30 days here) plus the dead-letter replay window; a
    bucket an older syncer made without a TTL gets one."""
    day = 86400.0
    stream = f"KV_{bus.subjects.name(ORDER_BUCKET)}"
    await bus.key_value(ORDER_BUCKET)  # as the syncer before this change made it: unbounded
    order = await order_bucket(bus, 30 * day)
    assert (await bus.js.stream_info(stream)).config.max_age == 120 * day
    at = datetime(2026, 12, 6, tzinfo=UTC)
    await order.write("k", StoredPosition.of(Position(3, at)), 0)
    stored = (await order.read("k")).value
    assert stored is not None and stored.position() == Position(3, at)
