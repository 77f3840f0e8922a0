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

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_S = 2.0


def bus_check(bus: Bus) -> Check:
    """Return a readiness check that fails while the NATS connection is down."""

    async def check() -> None:
        if not bus.nc.is_connected:
            raise RuntimeError("NATS not connected")

    return check


def consumer_lag_gauge(registry: CollectorRegistry, bus: Bus, durables: Mapping[str, str]) -> Check:
    """Return a check that records each durable consumer's backlog (messages not yet delivered or acked)."""
    lag = Gauge(
        "tonerwatch_consumer_pending_messages",
        "Events waiting for this service's consumer (event lag)",
        ["consumer"],
        registry=registry,
    )

    async def check() -> None:
        for durable, stream in durables.items():
            info = await bus.js.consumer_info(stream, durable)
            lag.labels(consumer=durable).set((info.num_pending or 0) + (info.num_ack_pending or 0))

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
    """Serve the ops endpoints on host:port while inside; yield the bound port (None: not served)."""
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
        raise RuntimeError(f"cannot serve /healthz on {host}:{port}: {exc.strerror}") from None
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = int(server.sockets[0].getsockname()[1])
    log.info("ops endpoints on http://%s:%d (/healthz /readyz /metrics)", host, bound)
    try:
        yield bound
    finally:
        await runner.cleanup()
