"""Ops endpoints: /healthz, /readyz naming what failed, /metrics in Prometheus text."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter

from tonerwatch_shared.ops import serve_ops


async def test_readyz_names_the_failing_check_and_metrics_render() -> None:
    registry = CollectorRegistry()
    Counter("tonerwatch_things", "Things", registry=registry).inc(3)

    async def broken() -> None:
        raise RuntimeError("database unreachable")

    async def fine() -> None:
        return None

    async with serve_ops("127.0.0.1", 0, registry, {"db": broken, "nats": fine}) as port:
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5)
        async with http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["failures"] == {"db": "database unreachable"}
            metrics = await http.get("/metrics")
            assert "tonerwatch_things_total 3.0" in metrics.text


async def test_ops_answers_only_its_paths_and_survives_garbage() -> None:
    import asyncio

    async with serve_ops("127.0.0.1", 0, CollectorRegistry(), {}) as port:
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5)
        async with http:
            assert (await http.get("/nope")).status_code == 404
            assert (await http.post("/metrics")).status_code == 405
            assert (await http.get("/readyz?verbose=1")).json() == {"status": "ready"}
        # Not HTTP at all, then a connection closed mid-request: each answered or dropped.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        writer.close()
        async with httpx.AsyncClient(timeout=5) as again:  # the server still serves
            assert (await again.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
