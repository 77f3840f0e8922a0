"""A KV mirror is caught up only once its watch delivered every write, not when its own landed."""

from __future__ import annotations

from tonerwatch_poller.mirror import KvMirror
from tonerwatch_shared.bus import Bus


async def test_own_write_does_not_count_as_caught_up_with_anothers_earlier_one(bus: Bus) -> None:
    kv = await bus.key_value("MIRROR_CATCH_UP")
    mirror = KvMirror(kv=kv)
    await kv.put("last-poll.a", b"written by the previous holder")
    await mirror.put("last-poll.b", b"written here after it")  # a higher revision, kept at once
    await mirror.get_fresh("last-poll.b")  # a KV read is no watch either

    # No watch yet: the previous holder's write has not arrived, whatever this replica wrote.
    assert not await mirror.caught_up(timeout_s=0.2)
    assert mirror.get("last-poll.a") is None

    await mirror.start()
    try:
        assert await mirror.caught_up()
        assert mirror.get("last-poll.a") == b"written by the previous holder"
        assert mirror.get("last-poll.b") == b"written here after it"
    finally:
        await mirror.stop()
