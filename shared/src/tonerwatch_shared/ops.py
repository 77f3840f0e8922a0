"""Operations endpoints for a service run alone: /healthz, /readyz and Prometheus /metrics.

Each service keeps its own `CollectorRegistry` (several services share one process under
`tonerwatch up`, so the global registry would mix them). `/readyz` runs the service's checks
(NATS connected, consumers not stalled, ...) with a timeout each and answers 503 naming what failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.lifecycle import PortInUse

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_S = 2.0


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


def ops_app(registry: CollectorRegistry, checks: Mapping[str, Check]) -> web.Application:
    """Return the aiohttp application serving /healthz, /readyz and /metrics."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        failures = await _run_checks(checks)
        if failures:
            return web.json_response({"status": "not ready", "failures": failures}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(_request: web.Request) -> web.Response:
        await _run_checks(checks)  # refreshes gauges such as consumer lag
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


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
    runner = web.AppRunner(ops_app(registry, checks), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=2.0)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise PortInUse(
            f"ops port {host}:{port} (/healthz, /metrics): {exc.strerror}; "
            "set TONERWATCH_OPS_PORT to a free port"
        ) from None
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = int(server.sockets[0].getsockname()[1])
    log.info("ops endpoints on http://%s:%d (/healthz /readyz /metrics)", host, bound)
    try:
        yield bound
    finally:
        await runner.cleanup()
