"""The collector's status: how many of the site's poll partitions no live poller holds."""

from __future__ import annotations

import json
import time

from nats.js.api import RetentionPolicy, StreamConfig

from tonerwatch.collector import _waiting_partitions
from tonerwatch_shared.bus import Bus


async def test_partitions_held_by_a_dead_poller_count_as_waiting(bus: Bus) -> None:
    """Four partitions: one held by a live replica, one by a replica silent past the lease wait."""
    assert await _waiting_partitions(bus, 60.0) is None  # no poller has made its queue yet
    stream = bus.subjects.name("POLLJOBS")
    subject = f"{bus.subjects.root}-jobs.part"  # apart from the events stream's subjects
    await bus.js.add_stream(
        StreamConfig(name=stream, subjects=[f"{subject}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    for part in range(4):
        await bus.js.publish(f"{subject}.{part}", b"{}")
    assert await _waiting_partitions(bus, 60.0) == 4  # no poller at all: every partition waits
    replicas = await bus.key_value("POLLER_REPLICAS")
    now = time.time()
    await replicas.put("alive", json.dumps({"at": now, "leases": {f"{subject}.0": now}}).encode())
    await replicas.put(
        "dead", json.dumps({"at": now - 300, "leases": {f"{subject}.1": now - 300}}).encode()
    )
    await replicas.put("garbled", b"not json")
    assert await _waiting_partitions(bus, 60.0) == 3
    await replicas.put(
        "alive",
        json.dumps({"at": now, "leases": {f"{subject}.{p}": now for p in range(4)}}).encode(),
    )
    assert await _waiting_partitions(bus, 60.0) == 0
