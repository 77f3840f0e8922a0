"""A replica serving named sites purges the fleet's partitions only when no replica serves them."""

from __future__ import annotations

import time

from tonerwatch_poller.leases import Beat
from tonerwatch_poller.mirror import KvMirror
from tonerwatch_poller.service import (
    FLEET,
    LEASE_DURABLE,
    REPLICAS_BUCKET,
    REPLICAS_TTL_S,
    Poller,
)
from tonerwatch_shared.bus import Bus


async def fleet_jobs(poller: Poller) -> int:
    subject = poller.partition_subject(FLEET, 0)
    info = await poller.bus.js.stream_info(poller.jobs_stream, subjects_filter=subject)
    return info.state.messages


async def test_the_fleets_partitions_stay_while_a_replica_serves_every_site(
    poller: Poller, bus: Bus
) -> None:
    poller.settings = poller.settings.model_copy(update={"sites": ["hq"]})
    poller.beats = KvMirror(await bus.key_value(REPLICAS_BUCKET, ttl_s=REPLICAS_TTL_S))
    await poller.beats.start()
    try:
        await bus.js.publish(poller.partition_subject(FLEET, 0), b"")
        fleet = Beat("every-site-replica", time.time(), (bus.subjects.name(LEASE_DURABLE),))
        await poller.beats.put(fleet.replica, fleet.to_bytes())

        await poller._retire_printer_jobs()
        assert await fleet_jobs(poller) == 1  # still served: kept

        await poller.beats.delete(fleet.replica)
        await poller._retire_printer_jobs()
        assert await fleet_jobs(poller) == 0  # no one serves every site: purged
    finally:
        await poller.beats.stop()
