"""A fleet's plans keep one copy of the OIDs and static values their printers share (issue 15)."""

from __future__ import annotations

from pathlib import Path

from tonerwatch_shared.printer import oids
from tonerwatch_shared.snmp import poll
from tonerwatch_shared.snmp.poll import plan_from_values, shared_value
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.types import IpAddress, Oid


def _decoded_again(values: dict[str, object]) -> dict[str, object]:
    """The same walk as a second printer's answer: equal strings and values, objects of its own."""
    copy: dict[str, object] = {}
    for oid, value in values.items():
        if isinstance(value, bytes):
            value = bytes(bytearray(value))
        elif isinstance(value, str):
            value = type(value)("".join(list(value)))
        elif isinstance(value, int) and not isinstance(value, bool):
            value = int(str(value))
        copy["".join(list(oid))] = value
    return copy


def test_two_printers_of_a_model_share_their_plans_oids_and_static_values(
    printer_walks_dir: Path,
) -> None:
    values = load_snmprec(printer_walks_dir / "jetdirect_m252dw.snmprec")
    first = plan_from_values(values)
    second = plan_from_values(_decoded_again(values))  # type: ignore[arg-type]
    assert first == second  # the same plan
    assert first.static and first.volatile
    for (oid_a, value_a), (oid_b, value_b) in zip(
        first.static.items(), second.static.items(), strict=True
    ):
        assert oid_a is oid_b
        assert value_a is value_b
        assert type(value_a) is type(value_b)
    for oid_a, oid_b in zip(first.volatile, second.volatile, strict=True):
        assert oid_a is oid_b


def test_a_shared_value_keeps_its_type_and_the_table_stays_bounded() -> None:
    text = "10.0.0.1"
    oid, address = shared_value(Oid(text)), shared_value(IpAddress(text))
    assert type(oid) is Oid and type(address) is IpAddress
    assert shared_value(b"toner") == b"toner" and shared_value(7) == 7
    for n in range(poll.SHARED_VALUES_KEPT + 10):
        shared_value(f"serial {n}".encode())
    assert len(poll._shared_values) <= poll.SHARED_VALUES_KEPT


def test_counters_and_levels_are_not_kept_in_the_shared_table(printer_walks_dir: Path) -> None:
    values = load_snmprec(printer_walks_dir / "jetdirect_m252dw.snmprec")
    first = plan_from_values(values)
    kept = len(poll._shared_values)
    assert first.volatile
    # Another printer of the model: the same static values, counters and levels of its own.
    other = dict(values)
    for n, oid in enumerate(first.volatile):
        if isinstance(values[oid], int):
            other[oid] = 10**12 + n
    second = plan_from_values(other)
    assert second.static == first.static
    assert len(poll._shared_values) == kept


async def test_a_steady_polls_values_hash_tells_its_values_apart(printer_walks_dir: Path) -> None:
    values = load_snmprec(printer_walks_dir / "jetdirect_m252dw.snmprec")
    plan = plan_from_values(values)
    fresh = {oid: values[oid] for oid in plan.volatile}

    class Agent:
        """Answers a GET from `answer` (no I/O)."""

        answer = fresh

        async def get(self, _target: object, oids: object, *, stats: object = None) -> object:
            return dict(self.answer)

    async def steady(a_plan: poll.PollPlan) -> poll.PollResult:
        return await poll.poll_printer(Agent(), None, a_plan)  # type: ignore[arg-type]

    first, again = await steady(plan), await steady(plan)
    assert first.values_hash is not None and first.values_hash == again.values_hash
    level = next(o for o in plan.volatile if o.startswith("1.3.6.1.2.1.43.11.1.1.9."))
    Agent.answer = {**fresh, level: 12345}  # a level moved
    assert (await steady(plan)).values_hash != first.values_hash
    Agent.answer = fresh
    static = dict(plan.static)
    oid, text = next((o, v) for o, v in static.items() if isinstance(v, bytes))
    static[oid] = b"another " + text
    other = plan_from_values({**static, **fresh})  # learned again: another static value
    assert (await steady(other)).values_hash != first.values_hash


async def test_a_ticking_sys_uptime_alone_leaves_a_steady_polls_values_hash_as_it_was(
    printer_walks_dir: Path,
) -> None:
    # A live agent's sysUpTime moves at every poll and nothing parses it: the same hash, so the
    # reading is written from the last one's (else every poll of a real printer parsed again).
    values = load_snmprec(printer_walks_dir / "jetdirect_m252dw.snmprec")
    plan = plan_from_values(values)
    assert oids.SYS_UPTIME in plan.volatile
    fresh = {oid: values[oid] for oid in plan.volatile}
    assert plan.static_hash is not None
    first = poll.steady_values_hash(plan.static_hash, fresh)
    for ticks in (fresh[oids.SYS_UPTIME] + 1000, 0, 2**32 - 1):  # type: ignore[operator]
        assert poll.steady_values_hash(plan.static_hash, {**fresh, oids.SYS_UPTIME: ticks}) == first
    # Its type still counts, as does every other value.
    assert poll.steady_values_hash(plan.static_hash, {**fresh, oids.SYS_UPTIME: b"\x01"}) != first
    level = next(o for o in plan.volatile if o.startswith("1.3.6.1.2.1.43.11.1.1.9."))
    assert poll.steady_values_hash(plan.static_hash, {**fresh, level: 12345}) != first
    # An identity-only printer (no sysUpTime among its values) is hashed as before.
    assert poll.steady_values_hash(7, {"1.3.6.1.2.1.1.2.0": 1}) == hash(
        (7, (("1.3.6.1.2.1.1.2.0", 1),))
    )
