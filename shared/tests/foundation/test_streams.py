"""Streams and buckets are created as settings say and never downgraded from what an operator raised."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from prometheus_client import CollectorRegistry

from tonerwatch_shared.bus import DEAD_MAX_AGE_S, Bus, positions_max_age
from tonerwatch_shared.ops import stream_fill_gauge
from tonerwatch_shared.settings import DEFAULT_EVENTS_MAX_BYTES, CommonSettings
from tonerwatch_shared.streams import larger_limit, merge_stream_config

DAY = 86400.0


def _events(**kw: object) -> StreamConfig:
    base = StreamConfig(
        name="TW_EVENTS",
        subjects=["tw.*.printer.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        num_replicas=1,
        max_bytes=2 * 1024**3,
        max_msgs=-1,
        max_age=7 * DAY,
        duplicate_window=120.0,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_unlimited_counts_as_the_largest_limit() -> None:
    assert larger_limit(-1, 5_000) == -1
    assert larger_limit(0.0, 7 * DAY) == 0.0  # max_age 0: kept forever
    assert larger_limit(10, 20) == 20
    assert larger_limit(30, None) == 30


def test_an_operators_r3_and_bigger_limits_survive_our_defaults() -> None:
    raised = _events(num_replicas=3, max_bytes=40 * 1024**3, max_age=30 * DAY, max_msgs=-1)
    merge = merge_stream_config(raised, _events())
    assert merge.config is None  # nothing to change
    assert merge.kept == ()


def test_limits_below_what_we_need_are_raised_and_nothing_else_changes() -> None:
    small = _events(max_bytes=1024**3, max_age=DAY, description="operator's words")
    merge = merge_stream_config(small, _events(num_replicas=3))
    assert merge.config is not None
    assert (merge.config.num_replicas, merge.config.max_bytes, merge.config.max_age) == (
        3,
        2 * 1024**3,
        7 * DAY,
    )
    assert merge.config.description == "operator's words"


def test_a_different_discard_or_retention_is_reported_not_changed() -> None:
    operator = _events(discard=DiscardPolicy.OLD, subjects=["tw.*.printer.>", "ops.>"])
    merge = merge_stream_config(operator, _events(subjects=["tw.*.printer.>", "tw.*.alert.>"]))
    assert merge.config is not None
    assert merge.config.discard == DiscardPolicy.OLD
    assert merge.config.subjects == ["tw.*.printer.>", "ops.>", "tw.*.alert.>"]
    assert merge.kept == ("discard is old, TonerWatch would use new",)


def test_settings_name_replicas_and_event_limits() -> None:
    s = CommonSettings(stream_replicas=3, events_max_bytes=8 * 1024**3, events_max_age_s=DAY)
    assert (s.stream_replicas, s.events_max_bytes, s.events_max_age) == (3, 8 * 1024**3, DAY)
    default = CommonSettings()
    assert default.stream_replicas == 1
    assert default.events_max_bytes == DEFAULT_EVENTS_MAX_BYTES
    assert default.events_max_age == 7 * DAY


async def test_restart_keeps_limits_an_operator_raised_on_a_real_stream(bus: Bus) -> None:
    name = bus.subjects.events_stream
    created = (await bus.js.stream_info(name)).config
    assert created.discard == DiscardPolicy.NEW
    assert created.max_bytes == bus.events_max_bytes or created.max_bytes == -1
    # The operator gives the stream a month, 4 GiB, a message cap, and old-first discard (4 GiB,
    # not more: the server reserves max_bytes against its store, sized from this disk's free space).
    raised = dataclasses.replace(
        created,
        max_age=30 * DAY,
        max_bytes=4 * 1024**3,
        max_msgs=10_000_000,
        discard=DiscardPolicy.OLD,
    )
    await bus.js.update_stream(raised)
    bus.events_max_bytes = 2 * 1024**3
    await bus.ensure_event_stream()  # what every service does at start
    after = (await bus.js.stream_info(name)).config
    assert (after.max_age, after.max_bytes, after.max_msgs, after.discard) == (
        30 * DAY,
        4 * 1024**3,
        10_000_000,
        DiscardPolicy.OLD,
    )


async def test_a_stream_below_our_limits_is_raised_to_them(bus: Bus) -> None:
    name = bus.subjects.events_stream
    created = (await bus.js.stream_info(name)).config
    await bus.js.update_stream(dataclasses.replace(created, max_age=DAY, max_bytes=64 * 1024**2))
    bus.events_max_bytes = 256 * 1024**2
    await bus.ensure_event_stream()
    after = (await bus.js.stream_info(name)).config
    assert (after.max_age, after.max_bytes) == (bus.max_age_s, 256 * 1024**2)


async def test_kv_bucket_keeps_its_history_and_is_created_with_our_replicas(bus: Bus) -> None:
    kv = await bus.key_value("REPLTEST", history=3)
    await kv.put("k", b"1")
    again = await bus.key_value("REPLTEST", history=1)  # a second start with other wishes
    assert (await again.get("k")).value == b"1"
    info = await bus.js.stream_info(f"KV_{bus.subjects.name('REPLTEST')}")
    assert info.config.num_replicas == 1
    assert info.config.max_msgs_per_subject == 3


def test_positions_are_kept_as_long_as_a_stale_event_can_still_arrive() -> None:
    """Issue 16: the TTL of the position buckets follows the configured events max age, plus the
    dead-letter stream's 90 days in which a set-aside event can be replayed."""
    assert DEAD_MAX_AGE_S == 90 * DAY
    assert positions_max_age(CommonSettings().events_max_age) == 97 * DAY
    month = CommonSettings(events_max_age_s=30 * DAY).events_max_age
    assert positions_max_age(month) == 120 * DAY
    assert positions_max_age(CommonSettings(event_max_age_days=14).events_max_age) == 104 * DAY
    # Never shorter than the events stream keeps an event, whatever it is set to.
    for age in (60.0, DAY, 365 * DAY):
        assert positions_max_age(age) >= age


async def test_a_bucket_with_a_ttl_is_created_with_it_and_an_unbounded_one_is_bounded(
    bus: Bus,
) -> None:
    stream = f"KV_{bus.subjects.name('POSTEST')}"
    # A bucket from before it had a TTL: unbounded (max_age 0).
    kv = await bus.key_value("POSTEST")
    await kv.put("a", b"1")
    assert (await bus.js.stream_info(stream)).config.max_age in (0, None)
    again = await bus.key_value("POSTEST", ttl_s=97 * DAY)
    assert (await bus.js.stream_info(stream)).config.max_age == 97 * DAY
    assert (await again.get("a")).value == b"1"  # bounding it keeps what it holds
    # A longer events max age raises it; a shorter wish never lowers it.
    await bus.key_value("POSTEST", ttl_s=120 * DAY)
    assert (await bus.js.stream_info(stream)).config.max_age == 120 * DAY
    await bus.key_value("POSTEST", ttl_s=97 * DAY)
    assert (await bus.js.stream_info(stream)).config.max_age == 120 * DAY
    # A new bucket is created with its TTL.
    await bus.key_value("POSNEW", ttl_s=97 * DAY)
    info = await bus.js.stream_info(f"KV_{bus.subjects.name('POSNEW')}")
    assert info.config.max_age == 97 * DAY


async def test_stream_fill_ratio_is_exported_per_stream(bus: Bus) -> None:
    name = bus.subjects.events_stream
    created = (await bus.js.stream_info(name)).config
    await bus.js.update_stream(dataclasses.replace(created, max_bytes=1024 * 1024))
    await bus.js.publish(f"{bus.subjects.root}.default.printer.found.x", b"x" * 10_000)
    registry = CollectorRegistry()
    await stream_fill_gauge(registry, bus)()
    ratio = registry.get_sample_value("tonerwatch_stream_fill_ratio", {"stream": name})
    assert ratio is not None and 0.009 < ratio < 0.02


async def test_opening_an_existing_bucket_notes_nothing(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    await bus.key_value("QUIETKV")
    caplog.set_level(logging.WARNING, logger="tonerwatch_shared.bus")
    await bus.key_value("QUIETKV")  # a second service start: discard new is the bucket's own
    # The client's error callback is left out: it speaks for every connection in the session's
    # loop (fresh-clone CI caught an earlier test's reconnecting bus in this test's capture).
    notes = [r.getMessage() for r in caplog.records if r.funcName != "_log_error"]
    assert notes == []
