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


def test_polls_kept_between_scrapes_are_all_in_the_metrics_when_read() -> None:
    """ok_poll keeps its counts as numbers; any read of the registry sees them all, as the
    counters and histogram fed at every poll would have shown them."""
    from prometheus_client import generate_latest as scraped

    def generate_latest(registry: object) -> list[bytes]:
        """The scrape's lines but for the series' creation times (each registry its own)."""
        return [line for line in scraped(registry).splitlines() if b"_created" not in line]  # type: ignore[arg-type]

    from tonerwatch_poller.service import PollerMetrics

    kept, direct = PollerMetrics(), PollerMetrics()
    polls = [
        ("snmp" if n % 3 else "both", 300 + n, 900 + 2 * n, 0.004 * (n % 7)) for n in range(50)
    ]
    for n, (protocol, sent, received, duration_s) in enumerate(polls):
        kept.ok_poll(protocol, sent, received, duration_s)
        direct.poll_done("ok", protocol)
        direct.sent.inc(sent)
        direct.received.inc(received)
        direct.duration.observe(duration_s)
        if n % 10 == 0:
            kept.poll_done("failed", protocol)
            direct.poll_done("failed", protocol)
        if n == 20:  # a scrape midway, then more polls
            assert generate_latest(kept.registry) == generate_latest(direct.registry)
    assert generate_latest(kept.registry) == generate_latest(direct.registry)
    assert kept.registry.get_sample_value(
        "tonerwatch_polls_total", {"result": "ok", "protocol": "snmp"}
    ) == sum(1 for p in polls if p[0] == "snmp")
    assert kept.registry.get_sample_value("tonerwatch_poll_duration_seconds_count") == 50
    # Never scraped: what is kept stays bounded (flushed every FLUSH_EVERY polls).
    for _ in range(PollerMetrics.FLUSH_EVERY + 5):
        kept.ok_poll("snmp", 1, 1, 0.01)
    assert len(kept._durations) == 5
    assert kept.sent._value.get() == sum(p[1] for p in polls) + PollerMetrics.FLUSH_EVERY
