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
from tonerwatch_shared.snmp.learn import Table
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
        self.asked: list[str] = []  # every OID a request named, GET or GETBULK

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
        self.asked += oids
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
        self.asked += oids
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


PUBLIC = SnmpTarget("127.0.0.1", 161, community="public")
SUPPLIES = "1.3.6.1.2.1.43.11.1.1"
COLORANTS = "1.3.6.1.2.1.43.12.1.1"
INPUT = "1.3.6.1.2.1.43.8.2.1"


def test_input_walk_stepping_past_the_table_shows_the_later_columns_absent() -> None:
    # Konica C250i: prtInputTable has columns 9 and 10 only; the walk steps from 10 straight
    # into prtMarkerTable, so name, media and description need no request of their own.
    table = Table.group(f"{INPUT}.{c}" for c in (8, 9, 10, 12, 13, 18))[0]
    table.feed_lead(
        [
            (f"{INPUT}.9.1.1", 500),
            (f"{INPUT}.9.1.2", 500),
            (f"{INPUT}.10.1.1", 500),
            (f"{INPUT}.10.1.2", 0),
            ("1.3.6.1.2.1.43.10.2.1.4.1.1", 33810),
        ]
    )
    assert table.rows == ["1.1", "1.2"]
    assert table.done
    assert table.column_requests() == []


def test_lead_stepping_to_a_later_column_shows_the_columns_between_absent() -> None:
    table = Table.group(f"{INPUT}.{c}" for c in (9, 10, 12, 13))[0]
    table.feed_lead([(f"{INPUT}.9.1.1", 500), (f"{INPUT}.13.1.1", b"Tray 1")])
    assert table.lacks(10) and table.lacks(12)
    assert not table.lacks(13) and table.done


async def test_konica_c250i_supplies_without_colorant_index_skip_the_colorant_table(
    printer_walks_dir: Path,
) -> None:
    recording = load_snmprec(printer_walks_dir / "konica_c250i.snmprec")
    agent = TruncatingAgent(recording, cap=64)
    result = await poll_printer(agent, PUBLIC)
    assert not [o for o in agent.asked if o.startswith(COLORANTS)]
    assert result.round_trips == 2
    assert parse_snapshot(result.values) == parse_snapshot(recording)


async def test_hp_m252dw_with_a_colorant_table_reads_colours_from_it(
    printer_walks_dir: Path,
) -> None:
    # The M252dw names colorant indexes 1-4 (prtMarkerSuppliesColorantIndex) but its recording
    # has no prtMarkerColorantTable; add one naming them the other way round to see it is read.
    recording = dict(load_snmprec(printer_walks_dir / "jetdirect_m252dw.snmprec"))
    for index, colour in enumerate((b"yellow", b"magenta", b"cyan", b"black"), start=1):
        recording[f"{COLORANTS}.4.1.{index}"] = colour
    agent = TruncatingAgent(recording, cap=64)
    result = await poll_printer(agent, PUBLIC)
    snapshot = parse_snapshot(result.values)
    assert snapshot == parse_snapshot(recording)
    assert result.round_trips <= 3
    colours = {s.index: s.colour for s in snapshot.supplies}
    assert colours["1.1"] == "yellow" and colours["1.4"] == "black"


async def test_ricoh_mpc3002_named_trays_are_not_asked_for_descriptions(
    printer_walks_dir: Path,
) -> None:
    recording = load_snmprec(printer_walks_dir / "ricoh_mpc3002.snmprec")
    agent = TruncatingAgent(recording, cap=64)
    result = await poll_printer(agent, PUBLIC)
    assert not [o for o in agent.asked if o.startswith(f"{INPUT}.18")]
    assert [t.name for t in parse_snapshot(result.values).trays][:2] == ["Tray 1", "Tray 2"]


async def test_ricoh_mpc3002_trays_without_names_are_named_by_their_descriptions(
    printer_walks_dir: Path,
) -> None:
    recording = {
        o: v
        for o, v in load_snmprec(printer_walks_dir / "ricoh_mpc3002.snmprec").items()
        if not o.startswith(f"{INPUT}.13.")
    }
    for row in range(1, 6):
        recording[f"{INPUT}.18.1.{row}"] = f"Cassette {row}".encode()
    agent = TruncatingAgent(recording, cap=64)
    result = await poll_printer(agent, PUBLIC)
    assert result.round_trips <= 3
    trays = parse_snapshot(result.values).trays
    assert [t.name for t in trays] == [f"Cassette {row}" for row in range(1, 6)]
