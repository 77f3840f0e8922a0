"""The service end to end: run() on SQLite with real NATS and uvicorn, SSE toasts, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlmodel import Session, select

from tonerwatch_api.db.models import SupplyStateRow
from tonerwatch_api.db.tx import ensure_admin
from tonerwatch_api.service import Settings, run
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.events import PrinterConfigured, SupplyReading, ThresholdCrossed
from tonerwatch_shared.storage import make_engine
from tonerwatch_shared.testing.infra import eventually


def test_ensure_admin_returns_generated_password_only_once(tmp_path: Path) -> None:
    from tonerwatch_api.db.tx import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    first = ensure_admin(engine, None)
    assert first is not None and len(first) >= 16
    assert ensure_admin(engine, None) is None
    assert ensure_admin(engine, "other") is None


async def test_service_serves_projects_and_streams_alerts(
    tmp_path: Path,
    nats_url: str,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    port = free_tcp_port()
    settings = Settings(
        nats_url=nats_url,
        data_dir=tmp_path,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        port=port,
        admin_password="service-admin-pw",
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/readyz")).json()["ready"] is True
            tok = await c.post(
                "/api/v1/auth/token", data={"username": "admin", "password": "service-admin-pw"}
            )
            h = {"Authorization": f"Bearer {tok.json()['access_token']}"}

            await bus.publish(configured())
            await bus.publish(reading())
            engine = make_engine(f"sqlite:///{tmp_path / 'tonerwatch.db'}")

            def stored() -> bool:
                with Session(engine) as s:
                    return len(s.exec(select(SupplyStateRow)).all()) == 5

            await eventually(stored, timeout_s=15)
            engine.dispose()

            async with c.stream("GET", "/api/v1/events/stream", headers=h) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                assert (await asyncio.wait_for(anext(lines), 5)).startswith("retry:")

                async def keep_publishing() -> None:
                    for _ in range(40):
                        await bus.publish(
                            ThresholdCrossed(
                                source="alerter",
                                site_id="default",
                                printer_id="p-hp479",
                                alert_id="p-hp479:1:critical",
                                rule="critical",
                                severity="critical",
                                message="Black Cartridge HP W2030A empty",
                            )
                        )
                        await asyncio.sleep(0.25)

                pub = asyncio.create_task(keep_publishing())
                try:
                    data = None
                    async with asyncio.timeout(10):
                        async for line in lines:
                            if line.startswith("data: "):
                                data = json.loads(line[6:])
                                break
                finally:
                    pub.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pub
                assert data is not None
                assert data["title"] == "Finance HP" and data["severity"] == "critical"
                assert data["url"] == "/printers/p-hp479"
            metrics = (await c.get("/metrics")).text
            assert (
                'tonerwatch_api_events_total{consumer="api-readings",type="SupplyReading",outcome="applied"} 1'
                in metrics
            )
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
