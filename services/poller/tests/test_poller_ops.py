"""The poller's ops endpoints: health, readiness and poll metrics while it polls a real SNMP agent."""

from __future__ import annotations

import httpx

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.simulator import SnmpSimulator

from ._poller import configured, first_reading, replica


async def test_poller_serves_health_and_counts_polls(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    port = free_tcp_port()
    # Polls with the service's own timeout and retries.
    async with replica(bus, nats_url, fast_polls=False, ops_port=port):
        await bus.publish(configured("hp-ops", snmp_agent.port, interval_s=60))
        await first_reading(bus)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).json() == {"status": "ready"}
            text = (await http.get("/metrics")).text
        assert 'tonerwatch_polls_total{protocol="snmp",result="ok"} 1.0' in text
        assert 'tonerwatch_poll_bytes_total{direction="sent"}' in text
        assert "tonerwatch_consumer_pending_messages" in text
