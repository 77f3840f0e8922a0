"""The poller's ops endpoints: health, readiness and poll metrics while it polls a real SNMP agent."""

from __future__ import annotations

import asyncio

import httpx

from tonerwatch_poller.service import Settings, run
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.simulator import SnmpSimulator


async def test_poller_serves_health_and_counts_polls(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    port = free_tcp_port()
    settings = Settings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        ops_port=port,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        await bus.publish(
            ev.PrinterConfigured(
                source="test",
                site_id="hq",
                printer_id="hp-ops",
                address="127.0.0.1",
                port=snmp_agent.port,
                credentials=ev.SnmpCredentials(community="jetdirect_m252dw"),
                interval_s=60,
            )
        )
        await wait_for_event(
            bus,
            bus.subjects.filter("supply.reading"),
            lambda e: isinstance(e, ev.SupplyReading),
            timeout_s=20,
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).json() == {"status": "ready"}
            text = (await http.get("/metrics")).text
        assert 'tonerwatch_polls_total{protocol="snmp",result="ok"} 1.0' in text
        assert 'tonerwatch_poll_bytes_total{direction="sent"}' in text
        assert "tonerwatch_consumer_pending_messages" in text
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
