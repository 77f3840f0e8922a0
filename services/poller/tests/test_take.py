"""A partition received beyond this replica's share is handed back, not held."""

from __future__ import annotations

import time
from unittest import mock

from tonerwatch_poller.service import FLEET, Poller, _Lease


async def test_a_partition_beyond_the_share_is_nakked_and_not_held(poller: Poller) -> None:
    durable, _filter, _site = poller.lease_consumers()[0]
    partitions = poller.settings.poll_partitions
    for partition in range(1, partitions):  # alone, its share is every partition
        subject = poller.partition_subject(FLEET, partition)
        poller.leases[subject] = _Lease(
            subject, FLEET, partition, durable, mock.Mock(), taken_at=time.time()
        )
    # One more held (say a partition it is handing back): no room for partition 0.
    extra = _Lease("x", FLEET, -1, durable, mock.Mock(), taken_at=time.time())
    poller.leases["beyond the share"] = extra
    assert poller._room(durable) <= 0

    msg = mock.Mock(subject=poller.partition_subject(FLEET, 0))
    msg.nak, msg.term = mock.AsyncMock(), mock.AsyncMock()
    await poller._take(msg, durable, FLEET)

    msg.nak.assert_awaited_once()
    assert poller.partition_subject(FLEET, 0) not in poller.leases

    # With room again, the same partition is held.
    del poller.leases["beyond the share"]
    del poller.leases[poller.partition_subject(FLEET, 1)]
    msg = mock.Mock(subject=poller.partition_subject(FLEET, 0))
    msg.nak = mock.AsyncMock()
    await poller._take(msg, durable, FLEET)
    msg.nak.assert_not_awaited()
    assert poller.leases[poller.partition_subject(FLEET, 0)].msg is msg
