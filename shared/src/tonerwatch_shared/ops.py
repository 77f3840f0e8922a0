"""Operations endpoints for a service run alone: /healthz, /readyz and Prometheus /metrics.

Each service keeps its own `CollectorRegistry` (several services share one process under
`tonerwatch up`, so the global registry would mix them). `/readyz` runs the service's checks
(NATS connected, consumers not stalled, ...) with a timeout each and answers 503 naming what failed.

Served by a few lines of asyncio (one GET per connection, then closed), not by an HTTP framework:
the four non-api services would otherwise load aiohttp (~11 MB each) for three fixed answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.lifecycle import PortInUse

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_S = 2.0
# A request line and headers must arrive within this, in at most MAX_HEADER_LINES lines.
REQUEST_TIMEOUT_S = 10.0
MAX_HEADER_LINES = 100
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def not_connected(what: str) -> Check:
    """Return a readiness check that fails until replaced (a service still connecting to what)."""

    async def check() -> None:
        raise RuntimeError(f"{what} not connected yet")

    return check


def bus_check(bus: Bus) -> Check:
    """Return a readiness check that fails while the NATS connection is down."""

    async def check() -> None:
        if not bus.nc.is_connected:
            raise RuntimeError("NATS not connected")

    return check


def consumer_lag_gauge(registry: CollectorRegistry, bus: Bus, durables: Mapping[str, str]) -> Check:
    """Return a check that records each durable consumer's backlog and whether it is paused."""
    lag = Gauge(
        "tonerwatch_consumer_pending_messages",
        "Events waiting for this service's consumer (event lag)",
        ["consumer"],
        registry=registry,
    )

    paused = Gauge(
        "tonerwatch_consumer_paused",
        "1 while this consumer waits for its dependency (database, upstream, mail server) to come back",
        ["consumer"],
        registry=registry,
    )

    async def check() -> None:
        for durable in durables:
            paused.labels(consumer=durable).set(1 if durable in bus.paused else 0)
        for durable, stream in durables.items():
            info = await bus.js.consumer_info(stream, durable)
            lag.labels(consumer=durable).set((info.num_pending or 0) + (info.num_ack_pending or 0))

    return check


def stream_fill_gauge(registry: CollectorRegistry, bus: Bus) -> Check:
    """Return a check that records how full each of our streams is (bytes / max_bytes).

    Every stream and KV bucket named with the bus's prefix that has a byte limit is reported as
    tonerwatch_stream_fill_ratio{stream=...}, so an alert fires well before a stream refuses
    writes (the events stream discards new events when full: nothing is dropped silently).
    """
    fill = Gauge(
        "tonerwatch_stream_fill_ratio",
        "Bytes stored / max_bytes of a JetStream stream (1 = full: new messages refused)",
        ["stream"],
        registry=registry,
    )
    prefixes = (bus.subjects.stream_prefix + "_", "KV_" + bus.subjects.stream_prefix + "_")

    async def check() -> None:
        for info in await bus.js.streams_info():
            name = info.config.name or ""
            limit = info.config.max_bytes or -1
            if name.startswith(prefixes) and limit > 0:
                fill.labels(stream=name).set(info.state.bytes / limit)

    return check


async def _run_checks(checks: Mapping[str, Check]) -> dict[str, str]:
    failures: dict[str, str] = {}
    for name, check in checks.items():
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await check()
        except Exception as exc:  # a check that raises, times out or errors means not ready
            failures[name] = str(exc) or type(exc).__name__
    return failures


Answer = tuple[int, bytes, str]  # status, body, content type


def _json(status: int, value: object) -> Answer:
    return status, json.dumps(value).encode(), "application/json; charset=utf-8"


async def ops_answer(
    method: str, path: str, registry: CollectorRegistry, checks: Mapping[str, Check]
) -> Answer:
    """Return the answer to one request: /healthz, /readyz and /metrics (GET only)."""
    if path not in ("/healthz", "/readyz", "/metrics"):
        return _json(404, {"error": "not found"})
    if method != "GET":
        return _json(405, {"error": "GET only"})
    if path == "/healthz":
        return _json(200, {"status": "ok"})
    failures = await _run_checks(checks)  # /metrics too: it refreshes gauges such as consumer lag
    if path == "/readyz":
        if failures:
            return _json(503, {"status": "not ready", "failures": failures})
        return _json(200, {"status": "ready"})
    return 200, generate_latest(registry), CONTENT_TYPE_LATEST


async def _serve_one(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    registry: CollectorRegistry,
    checks: Mapping[str, Check],
) -> None:
    """Read one HTTP/1.x request, answer it, close the connection."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            request_line = await reader.readline()
            for _ in range(MAX_HEADER_LINES):  # headers are not needed: read past them
                if (await reader.readline()).strip() == b"":
                    break
            else:
                return
            parts = request_line.decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                status, body, content_type = _json(400, {"error": "bad request"})
            else:
                path = parts[1].split("?", 1)[0]
                status, body, content_type = await ops_answer(parts[0], path, registry, checks)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
    except (TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError):
        pass  # a slow, broken or oversized request: dropped
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serve_ops(
    host: str, port: int | None, registry: CollectorRegistry, checks: Mapping[str, Check]
) -> AsyncIterator[int | None]:
    """Serve the ops endpoints on host:port while inside; yield the bound port (None: not served).

    checks is read at every request: a service may serve /healthz before NATS connects, with a
    not_connected check in the mapping, and put its real checks in once it has a bus.
    """
    if port is None:
        yield None
        return

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_one(reader, writer, registry, checks)

    try:
        server = await asyncio.start_server(serve, host, port)
    except OSError as exc:
        raise PortInUse(
            f"ops port {host}:{port} (/healthz, /metrics): {exc.strerror}; "
            "set TONERWATCH_OPS_PORT to a free port"
        ) from None
    bound = int(server.sockets[0].getsockname()[1]) if server.sockets else port
    log.info("ops endpoints on http://%s:%d (/healthz /readyz /metrics)", host, bound)
    try:
        yield bound
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await server.wait_closed()
