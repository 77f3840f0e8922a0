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
