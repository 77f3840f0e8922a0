"""needs_relearn's quick steady-case check gives the same answer as the loops alone (issue 15)."""

from __future__ import annotations

import random

from tonerwatch_shared.printer import oids
from tonerwatch_shared.snmp.poll import PollPlan, needs_relearn, relearn_reason
from tonerwatch_shared.snmp.types import IpAddress, Missing, Oid, SnmpValue


def test_the_quick_check_answers_as_the_loops_do() -> None:
    rng = random.Random(15)
    values: list[SnmpValue] = [
        0,
        1,
        7,
        True,
        b"x",
        b"",
        Oid("1.3.6.1"),
        IpAddress("10.0.0.1"),
        Missing.NO_SUCH_INSTANCE,
        Missing.NO_SUCH_OBJECT,
        Missing.END_OF_MIB_VIEW,
    ]
    names = [f"1.3.6.1.2.1.43.{n}" for n in range(6)] + [oids.SYS_UPTIME]
    answers: dict[str | None, int] = {}
    for _ in range(5000):
        volatile = tuple(rng.sample(names, rng.randint(0, 4)))
        triggers = {oid: rng.choice(values) for oid in rng.sample(names, rng.randint(0, 3))}
        plan = PollPlan(
            volatile=volatile,
            static={},
            triggers=triggers,
            uptime=rng.choice([None, 0, 5, 100]),
        )
        fresh: dict[str, SnmpValue] = {}
        for oid in names:
            if rng.random() < 0.8:
                # Mostly the same as the trigger (the steady case), sometimes another value.
                keep = oid in triggers and rng.random() < 0.7
                fresh[oid] = triggers[oid] if keep else rng.choice(values)
        if rng.random() < 0.5:
            fresh[oids.SYS_UPTIME] = rng.choice([3, 50, 200])
        answer = needs_relearn(plan, fresh)
        assert answer == relearn_reason(plan, fresh), (plan, fresh)
        kind = answer.split(" ")[1] if answer and answer.startswith("1.") else answer
        answers[kind] = answers.get(kind, 0) + 1
    # Every kind of answer came up (the comparison covered each branch).
    assert {None, "is", "changed", "agent restarted"} <= set(answers), answers
