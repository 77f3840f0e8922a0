"""The first poll against an in-process agent that cuts GETBULK answers short, on every recording."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.snmp.base import SnmpProtocol, VarBindList
from tonerwatch_shared.snmp.ber import oid_key
from tonerwatch_shared.snmp.errors import IoStats
from tonerwatch_shared.snmp.poll import poll_printer
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Missing, SnmpValue

WALKS = Path(__file__).resolve().parents[3].parent / "shared" / "printer-walks"
RECORDINGS = sorted(p.stem for p in WALKS.glob("*.snmprec"))


class TruncatingAgent(SnmpProtocol):
    """A recording answered in-process; GETBULK answers hold at most `cap` varbinds."""

    def __init__(self, values: Mapping[str, SnmpValue], cap: int) -> None:
        self.values = dict(values)
        self.keys = sorted(oid_key(o) for o in values)
        self.by_key = {oid_key(o): o for o in values}
        self.cap = cap

    def _count(self, stats: IoStats | None) -> None:
        if stats is not None:
            stats.requests += 1
            stats.responses += 1
            stats.round_trips += 1

    def _next(self, oid: str) -> tuple[str, SnmpValue]:
        i = bisect.bisect_right(self.keys, oid_key(oid))
        if i == len(self.keys):
            return oid, Missing.END_OF_MIB_VIEW
        found = self.by_key[self.keys[i]]
        return found, self.values[found]

    async def get(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> dict[str, SnmpValue]:
        self._count(stats)
        return {o: self.values.get(o, Missing.NO_SUCH_OBJECT) for o in oids}

    async def get_next(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> VarBindList:
        self._count(stats)
        return [self._next(o) for o in oids]

    async def get_bulk(
        self,
        target: SnmpTarget,
        oids: Sequence[str],
        non_repeaters: int,
        max_repetitions: int,
        *,
        stats: IoStats | None = None,
    ) -> VarBindList:
        self._count(stats)
        answer = [self._next(o) for o in oids[:non_repeaters]]
        cursors = list(oids[non_repeaters:])
        for _ in range(max_repetitions):
            row = [self._next(c) for c in cursors]
            answer += row
            cursors = [oid for oid, _ in row]
        # RFC 3416 4.2.3: an answer too big for the message is cut, whole varbinds at a time.
        return answer[: self.cap]

    async def close(self) -> None:
        """Nothing to release."""


@pytest.mark.parametrize("cap", [3, 10])
@pytest.mark.parametrize("name", RECORDINGS or ["no-recordings"])
async def test_first_poll_with_cut_short_answers_parses_like_the_recording(
    printer_walks_dir: Path, name: str, cap: int
) -> None:
    # Old agents cap messages at 484 octets: ten varbinds, or three long descriptions.
    recording = load_snmprec(printer_walks_dir / f"{name}.snmprec")
    agent = TruncatingAgent(recording, cap=cap)
    result = await poll_printer(agent, SnmpTarget("127.0.0.1", 161, community="public"))
    assert result.learned
    assert parse_snapshot(result.values) == parse_snapshot(recording)


async def test_hp_m252dw_untruncated_in_process_agent_learns_in_two_round_trips(
    printer_walks_dir: Path,
) -> None:
    recording = load_snmprec(printer_walks_dir / "jetdirect_m252dw.snmprec")
    agent = TruncatingAgent(recording, cap=64)
    result = await poll_printer(agent, SnmpTarget("127.0.0.1", 161, community="public"))
    assert result.round_trips == 2
    assert parse_snapshot(result.values) == parse_snapshot(recording)
