"""An unchanged answer is not parsed again (issue 15: the poller re-parsed every poll)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tonerwatch_shared import reading as reading_module
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.reading import Parsed, ReadingTemplate, read_printer
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
    # The same answer again: the reading is written from the last one's JSON, not built.
    assert again.built is None and again.steady is not None
    assert changed.built is not None and changed.steady is None
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


def test_a_steady_reading_is_the_json_the_model_writes_for_every_recording(
    printer_walks_dir: Path,
) -> None:
    """The kept JSON with a poll's values written in is byte for byte what the event model writes."""
    hostile = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
    walks = sorted([*printer_walks_dir.glob("*.snmprec"), *hostile.glob("*.snmprec")])
    per_poll = [
        (None, datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC), 0, 0, 0, 0.0),
        (1, datetime(2026, 12, 7, 1, 2, 3, 4, tzinfo=UTC), 388, 759, 1, 0.5),
        (2**53, datetime.now(UTC), 4305, 4473, 3, 123.456),
    ]
    for walk in walks:
        reading = reading_module._reading(
            parse_snapshot(load_snmprec(walk)),
            printer_id='p-"1"',
            site_id="hq",
            source="poller/a",
            address="127.0.0.1",
            protocol="snmp",
            sent=1,
            received=2,
            requests=1,
            started=0.0,
        )
        template = ReadingTemplate.of(reading)
        assert template is not None
        for seq, at, sent, received, requests, duration in per_poll:
            event_id = uuid.uuid4()
            fields = {
                "event_id": event_id,
                "occurred_at": at,
                "seq": seq,
                "bytes_sent": sent,
                "bytes_received": received,
                "requests": requests,
                "duration_ms": duration,
            }
            expected = reading.model_copy(update=fields).model_dump_json().encode()
            assert template.encode(**fields) == expected, walk.name  # type: ignore[arg-type]


async def test_the_snapshot_json_is_not_kept_beside_the_template(
    snmp_agent: SnmpSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the reading's template holds an answer only it is kept; a poll that cannot use it
    (the printer at another address) parses the same answer again and reads the same."""
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
        assert steady.parsed is not None and steady.parsed.template is not None
        assert steady.parsed.snapshot_json is None and steady.parsed.snapshot() is None
        moved = await read_printer(
            client,
            target,
            printer_id="p",
            site_id="s",
            source="t-moved",  # the template's key differs: it cannot be used
            plan=steady.plan,
            parsed=steady.parsed,
        )
    finally:
        await client.close()
    assert len(parses) == 3  # learning, the first steady poll, and the moved one parsed again
    assert moved.built is not None and moved.steady is None
    assert moved.parsed is not None and moved.parsed.template is not None
    assert moved.parsed.template.key[0] == "t-moved"
    assert moved.reading.model_dump(
        exclude={"event_id", "occurred_at", "source", "seq"}
        | {"bytes_sent", "bytes_received", "requests", "duration_ms"}
    ) == steady.reading.model_dump(
        exclude={"event_id", "occurred_at", "source", "seq"}
        | {"bytes_sent", "bytes_received", "requests", "duration_ms"}
    )
