"""An unchanged answer is not parsed again (issue 15: the poller re-parsed every poll)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonerwatch_shared import reading as reading_module
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.reading import Parsed, read_printer
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.snmprec import load_snmprec


async def test_an_unchanged_answer_reuses_its_snapshot_and_a_changed_one_is_parsed(
    snmp_agent: SnmpSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses: list[int] = []

    def counting(values: dict) -> object:  # type: ignore[type-arg]
        parses.append(len(values))
        return parse_snapshot(values)

    monkeypatch.setattr(reading_module, "parse_snapshot", counting)
    target = snmp_agent.target("jetdirect_m252dw")
    client = SnmpClient()
    try:
        first = await read_printer(client, target, printer_id="p", site_id="s", source="t")
        steady = await read_printer(
            client, target, printer_id="p", site_id="s", source="t", plan=first.plan
        )
        again = await read_printer(
            client,
            target,
            printer_id="p",
            site_id="s",
            source="t",
            plan=steady.plan,
            parsed=steady.parsed,
        )
        assert steady.parsed is not None
        changed = await read_printer(
            client,
            target,
            printer_id="p",
            site_id="s",
            source="t",
            plan=steady.plan,
            parsed=Parsed(steady.parsed.values_hash + 1, steady.parsed.snapshot_json),
        )
    finally:
        await client.close()
    # Learning, the first steady poll, and the one whose previous answer differs: three parses;
    # the steady poll with the same answer as before took the snapshot it parsed to.
    assert len(parses) == 3
    for polled in (again, changed):
        assert polled.reading.supplies == steady.reading.supplies
        assert polled.reading.trays == steady.reading.trays
        assert polled.reading.counters == steady.reading.counters
        assert polled.reading.status == steady.reading.status
        assert polled.reading.printer == steady.reading.printer
        assert polled.reading.event_id != steady.reading.event_id  # a reading of its own


def test_a_kept_snapshot_reads_back_equal_for_every_recording(printer_walks_dir: Path) -> None:
    """The snapshot is kept as JSON: what it reads back as is what parsing gives, every printer."""
    hostile = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
    walks = sorted([*printer_walks_dir.glob("*.snmprec"), *hostile.glob("*.snmprec")])
    assert walks
    for walk in walks:
        snapshot = parse_snapshot(load_snmprec(walk))
        kept = Parsed(0, snapshot.model_dump_json().encode())
        assert kept.snapshot() == snapshot, walk.name
