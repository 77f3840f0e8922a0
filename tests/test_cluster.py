"""A 3-node JetStream cluster as real nats-server processes; one node is killed (-9) mid-run.

Poller, alerter and the api's ingestion run in this process (as `tonerwatch up` runs them) on R3
streams (TONERWATCH_STREAM_REPLICAS=3), polling simulated printers on loopback. After the kill,
polling, alerting and ingestion go on, and every reading in the stream reaches PostgreSQL exactly
once: the same event ids, no more, no fewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from sqlalchemy import text

from tonerwatch.services import service_module
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import FOR_HEADER, Bus
from tonerwatch_shared.embedded import free_tcp_port, nats_server_binary, nats_server_config
from tonerwatch_shared.settings import load_settings
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.storage import make_engine
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually

pytestmark = pytest.mark.timeout(150)

# Recordings with toner below 99%, so the alerter (low at 99%) raises for each.
PRINTERS = ["jetdirect_m252dw", "xerox_phaser", "jetdirect_m252dw"]
INTERVAL_S = 2.0


@dataclass
class Node:
    """One nats-server of the cluster."""

    name: str
    port: int
    cluster_port: int
    store: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(self.config), "-l", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no shutdown, no flush
            self.proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    """Three nats-servers on 127.0.0.1 with routes between them, sync_interval always."""
    names = ["n1", "n2", "n3"]
    client = {n: free_tcp_port() for n in names}
    routes = {n: free_tcp_port() for n in names}
    nodes = []
    for n in names:
        store = tmp_path / n
        store.mkdir()
        config = store / "nats-server.conf"
        config.write_text(
            nats_server_config(
                store_dir=store,
                port=client[n],
                server_name=n,
                max_file_store="20GB",  # a limit, not an allocation: R3 x 2 GiB streams fit,
                max_memory_store="64MB",
                cluster_name="tw-test",
                cluster_port=routes[n],
                routes=[routes[m] for m in names if m != n],
            )
        )
        nodes.append(Node(n, client[n], routes[n], store, config, store / "server.log"))
    for node in nodes:
        node.start()
    try:
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def urls(nodes: list[Node]) -> str:
    return ",".join(f"nats://127.0.0.1:{n.port}" for n in nodes)


async def wait_for_jetstream_cluster(bus: Bus, timeout_s: float = 30.0) -> None:
    """Return once the cluster can place an R3 stream (meta leader elected, all peers known)."""
    probe = StreamConfig(name=f"PROBE_{uuid.uuid4().hex[:6]}", subjects=["probe.>"], num_replicas=3)

    async def placed() -> bool:
        try:
            await bus.js.add_stream(probe)
        except Exception:
            return False
        await bus.js.delete_stream(probe.name or "")
        return True

    await eventually(placed, timeout_s=timeout_s, interval_s=0.5)


@pytest.fixture
def pg_url(database_url: str) -> Iterator[str]:
    """Return a PostgreSQL URL whose search_path is a fresh schema (dropped after)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in database_url else "?"
    yield f"{database_url}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@contextlib.asynccontextmanager
async def service(name: str, **overrides: Any) -> AsyncIterator[None]:
    """Run one service in this process (its public run(settings, stop, ready)) while inside."""
    module = service_module(name)
    settings = load_settings(module.Settings, **overrides)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(module.run(settings, stop=stop, ready=ready), name=name)
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert waiter in done, f"{name} not ready within 60 s"
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        assert not task.cancelled()


async def readings_in_stream(bus: Bus) -> list[ev.SupplyReading]:
    """Return every supply reading the events stream holds, in order, without the copies the
    api split out of a batch for itself (they repeat a reading the stream already holds)."""
    sub = await bus.js.pull_subscribe(
        bus.subjects.filter("supply.reading"),
        stream=bus.subjects.events_stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0
        ),
    )
    found: list[ev.SupplyReading] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(256, timeout=2.0)
            except TimeoutError:
                break
            for msg in msgs:
                if FOR_HEADER in (msg.headers or {}):
                    continue  # a copy split out of its batch for one consumer (Bus._split_out)
                for event in ev.unbatched(ev.parse_event(msg.data)):
                    assert isinstance(event, ev.SupplyReading)
                    found.append(event)
            if msgs and (msgs[-1].metadata.num_pending or 0) == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return found


async def publish_until_acked(bus: Bus, event: ev.Event, timeout_s: float = 30.0) -> None:
    """Publish as a careful publisher does during a leader election: retry (same id) until acked."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await bus.publish(event, timeout_s=2.0)
            return
        except (nats.errors.Error, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def configured(i: int, port: int, community: str) -> ev.PrinterConfigured:
    return ev.PrinterConfigured(
        source="test",
        site_id="default",
        printer_id=f"c{i}",
        address="127.0.0.1",
        port=port,
        name=f"cluster printer {i}",
        credentials=ev.SnmpCredentials(community=community),
        interval_s=INTERVAL_S,
    )


async def test_killing_one_of_three_nodes_loses_no_reading_and_stops_nothing(
    cluster: list[Node], pg_url: str, snmp_agent: SnmpSimulator
) -> None:
    tag = uuid.uuid4().hex[:8]
    subjects = Subjects(root=f"c{tag}", stream_prefix=f"C{tag}")
    bus = await Bus.connect(urls(cluster), subjects=subjects, name="cluster-test", attempts=20)
    bus.replicas = 3
    common: dict[str, Any] = {
        "nats_url": urls(cluster),
        "subject_root": subjects.root,
        "stream_prefix": subjects.stream_prefix,
        "stream_replicas": 3,
        "events_max_bytes": 256 * 1024**2,
        "database_url": pg_url,
    }
    crossed: list[tuple[float, ev.ThresholdCrossed]] = []
    polled: dict[str, list[float]] = {}

    async def on_event(msg: Any) -> None:
        try:
            events = ev.unbatched(ev.parse_event(msg.data))
        except ev.UnreadableEvent:
            return  # poll jobs and KV updates share the subject root
        for event in events:
            if isinstance(event, ev.ThresholdCrossed):
                crossed.append((time.monotonic(), event))
            elif isinstance(event, ev.SupplyReading):
                polled.setdefault(event.printer_id, []).append(time.monotonic())

    engine = make_engine(pg_url)

    def ingested() -> set[str]:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event_id FROM processed_events WHERE consumer = 'api-readings'")
            )
            return {str(r[0]) for r in rows}

    try:
        await wait_for_jetstream_cluster(bus)
        await bus.ensure_event_stream()
        await bus.nc.subscribe(f"{subjects.root}.>", cb=on_event)
        async with service("api", **common, port=free_tcp_port(), admin_password="cluster-pw-1"):
            async with (
                service("alerter", **common, low_percent=99.0, critical_percent=1.0),
                service("poller", **common, poll_timeout_s=0.5, poll_retries=1, job_ack_wait_s=5),
            ):
                info = await bus.js.stream_info(subjects.events_stream)
                assert info.config.num_replicas == 3
                jobs = await bus.js.stream_info(subjects.name("POLLJOBS"))
                assert jobs.config.num_replicas == 3
                for i, community in enumerate(PRINTERS[:2]):
                    await bus.publish(configured(i, snmp_agent.port, community))
                await eventually(
                    lambda: all(len(polled.get(f"c{i}", [])) >= 3 for i in range(2)), timeout_s=30
                )
                await eventually(lambda: len(crossed) > 0, timeout_s=15)

                # Kill the node leading the events stream: the hardest one to lose.
                leader = (await bus.js.stream_info(subjects.events_stream)).cluster
                assert leader is not None
                victim = next(n for n in cluster if n.name == leader.leader)
                victim.kill()
                killed_at = time.monotonic()

                # A printer added after the kill is polled, alerted on and ingested too.
                await publish_until_acked(bus, configured(2, snmp_agent.port, PRINTERS[2]))

                def polled_since_kill(pid: str) -> bool:
                    return sum(1 for t in polled.get(pid, []) if t > killed_at) >= 2

                await eventually(
                    lambda: all(polled_since_kill(f"c{i}") for i in range(3)), timeout_s=45
                )
                await eventually(
                    lambda: any(t > killed_at and e.printer_id == "c2" for t, e in crossed),
                    timeout_s=20,
                )
            # The poller has stopped: no reading is added from here on; the api catches up.
            published = await readings_in_stream(bus)
            ids = {str(r.event_id) for r in published}
            await eventually(lambda: ingested() >= ids, timeout_s=30)
        assert len(published) >= 8
        assert len(ids) == len(published)  # the stream deduplicated any republished reading
        assert {r.printer_id for r in published} == {"c0", "c1", "c2"}
        # Count in = count out: every reading stored once, nothing stored that was not published.
        assert ingested() == ids
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM readings")).scalar_one()
        assert rows == sum(len(r.supplies) for r in published)
    finally:
        await bus.drain()
        engine.dispose()


async def test_a_restart_keeps_the_r3_and_limits_an_operator_set_on_the_cluster(
    cluster: list[Node],
) -> None:
    tag = uuid.uuid4().hex[:8]
    subjects = Subjects(root=f"o{tag}", stream_prefix=f"O{tag}")
    operator = await Bus.connect(urls(cluster), subjects=subjects, name="operator", attempts=20)
    try:
        await wait_for_jetstream_cluster(operator)
        settings = load_settings(
            service_module("poller").Settings,
            nats_url=urls(cluster),
            subject_root=subjects.root,
            stream_prefix=subjects.stream_prefix,
        )  # TONERWATCH_STREAM_REPLICAS unset: 1

        async def start_like_a_service() -> None:
            bus = await Bus.for_service(settings, "poller")
            try:
                await bus.ensure_event_stream()
                await bus.key_value("POLLER_HEALTH")
            finally:
                await bus.drain()

        await start_like_a_service()
        name = subjects.events_stream
        first = (await operator.js.stream_info(name)).config
        assert first.num_replicas == 1 and first.max_bytes == settings.events_max_bytes
        # The operator moves to R3 with a month and 8 GiB (nats stream edit ...).
        await operator.js.update_stream(
            dataclasses.replace(first, num_replicas=3, max_age=30 * 86400.0, max_bytes=8 * 1024**3)
        )
        bucket = f"KV_{subjects.name('POLLER_HEALTH')}"
        kv = (await operator.js.stream_info(bucket)).config
        await operator.js.update_stream(dataclasses.replace(kv, num_replicas=3))

        await start_like_a_service()  # every service does this at every start

        after = (await operator.js.stream_info(name)).config
        assert (after.num_replicas, after.max_age, after.max_bytes) == (
            3,
            30 * 86400.0,
            8 * 1024**3,
        )
        assert (await operator.js.stream_info(bucket)).config.num_replicas == 3
    finally:
        await operator.drain()
