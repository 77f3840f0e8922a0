"""A timed poll keeps its printer scheduled while its partition is held, and nothing of one not held."""

from __future__ import annotations

import asyncio
import time
from unittest import mock

import pytest

from tonerwatch_poller.service import FAILED_JOB_RETRY_S, FLEET, Poller, _Lease, partition_of
from tonerwatch_shared import events as ev
from tonerwatch_shared.subjects import token

from ._poller import configured


async def hold_printer(poller: Poller, printer_id: str) -> tuple[str, str]:
    """Hold the printer's partition here and place it on it; return (key, lease subject)."""
    key = token(printer_id)
    partition = partition_of(key, poller.settings.poll_partitions)
    subject = poller.partition_subject(FLEET, partition)
    poller.leases[subject] = _Lease(
        subject, FLEET, partition, "durable", mock.Mock(), taken_at=time.time()
    )
    assert poller.config_mirror is not None
    config = configured(printer_id, community="public", interval_s=300)
    await poller.config_mirror.put(key, config.model_dump_json().encode())
    assert poller.lease_of[key] == subject  # placed by the configuration's change
    return key, subject


async def test_a_cancelled_poll_sets_a_retry_timer_and_still_propagates(poller: Poller) -> None:
    key, _subject = await hold_printer(poller, "timed-cancel")
    poller.timers.cancel(key)  # its timer came due: popped

    async def cancelled_poll(*_args: object) -> None:
        raise asyncio.CancelledError  # the batcher cancels a poll whose batch send was cancelled

    poller.poll = cancelled_poll  # type: ignore[method-assign]
    slots = asyncio.Semaphore(0)
    before = time.time()
    with pytest.raises(asyncio.CancelledError):
        await poller._timed_poll(key, slots)

    assert key in poller.timers.due
    assert poller.timers.due[key] >= before + FAILED_JOB_RETRY_S
    assert slots.locked() is False  # its slot was given back


async def test_a_printer_removed_during_its_poll_leaves_nothing_behind(poller: Poller) -> None:
    key, _subject = await hold_printer(poller, "timed-removed")
    poller.timers.cancel(key)
    assert poller.config_mirror is not None
    config_mirror = poller.config_mirror

    async def poll_while_removed(config: ev.PrinterConfigured, *_args: object) -> None:
        await config_mirror.delete(key)  # removed meanwhile: its state is forgotten...
        assert key not in poller.lease_of
        poller.plans[config.printer_id] = mock.Mock()  # ...then the poll keeps what it learned
        poller.parsed[config.printer_id] = mock.Mock()
        poller.recent[config.printer_id] = mock.Mock()

    poller.poll = poll_while_removed  # type: ignore[method-assign]
    await poller._timed_poll(key, asyncio.Semaphore(0))

    assert "timed-removed" not in poller.plans
    assert "timed-removed" not in poller.parsed
    assert "timed-removed" not in poller.recent
    assert key not in poller.timers.due
