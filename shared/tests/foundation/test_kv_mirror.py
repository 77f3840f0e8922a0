"""A KV bucket held in memory (kv_mirror.ModelMirror) on a real NATS: current, compare-and-set, held values."""

from __future__ import annotations

from pydantic import BaseModel

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.kv import ModelKv
from tonerwatch_shared.kv_mirror import ModelMirror
from tonerwatch_shared.testing.infra import eventually


class Toner(BaseModel):
    """A printer's black toner as some service remembers it."""

    percent: float
    read_at: int = 0
    name: str = ""


async def mirror_of(bus: Bus, *, compact: bool) -> tuple[ModelMirror[Toner], ModelKv[Toner]]:
    kv = ModelKv(await bus.key_value("MIRROR_TEST"), Toner)
    mirror = ModelMirror(kv, compact=compact)
    await mirror.start()
    return mirror, kv


async def test_a_value_written_by_another_replica_arrives_and_replaces_a_held_one(
    bus: Bus,
) -> None:
    for compact in (False, True):
        mirror, kv = await mirror_of(bus, compact=compact)
        key = f"hp-m479-{int(compact)}"
        try:
            revision = await mirror.write(key, Toner(percent=40), 0)
            assert mirror.may_hold(key)
            mirror.hold(key, Toner(percent=40, read_at=1), revision)
            assert (await mirror.read(key)).value == Toner(percent=40, read_at=1)
            # Another replica writes the printer: its value wins over the one held here.
            await kv.write(key, Toner(percent=40, name="Finance"), revision)

            async def arrived(mirror: ModelMirror[Toner] = mirror, key: str = key) -> bool:
                return (await mirror.read(key)).value == Toner(percent=40, name="Finance")

            await eventually(arrived, timeout_s=5)
            assert await mirror.flush() == 0
        finally:
            await mirror.stop()


async def test_a_held_value_is_dropped_once_this_replica_writes_the_key_another_way(
    bus: Bus,
) -> None:
    """Two handlers of one replica: one holds a steady value while the other's write is in flight."""
    mirror, _kv = await mirror_of(bus, compact=True)
    try:
        revision = await mirror.write("p1", Toner(percent=30), 0)
        mirror.hold("p1", Toner(percent=30, read_at=5), revision)
        await mirror.write("p1", Toner(percent=30, name="Front desk"), revision)
        mirror.hold("p1", Toner(percent=30, read_at=6), revision)  # based on the older revision
        read = await mirror.read("p1")
        assert read.value == Toner(percent=30, name="Front desk") and read.revision > revision
        assert mirror.values() == [Toner(percent=30, name="Front desk")]
    finally:
        await mirror.stop()


async def test_held_values_are_written_by_flush(bus: Bus) -> None:
    mirror, kv = await mirror_of(bus, compact=True)
    try:
        revision = await mirror.write("p2", Toner(percent=70), 0)
        mirror.hold("p2", Toner(percent=70, read_at=9), revision)
        assert (await kv.read("p2")).value == Toner(percent=70)
        assert await mirror.flush() == 1
        assert (await kv.read("p2")).value == Toner(percent=70, read_at=9)
    finally:
        await mirror.stop()
