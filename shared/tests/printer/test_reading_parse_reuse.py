"""An unchanged answer is not parsed again (issue 15: the poller re-parsed every poll)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tonerwatch_shared import reading as reading_module
from tonerwatch_shared.printer.oids import SYS_UPTIME
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.reading import Parsed, ReadingTemplate, read_printer
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.snmprec import load_snmprec


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Return the sizes of the answers parse_snapshot parses from now on in this test."""
    sizes: list[int] = []

    def counting(values: dict) -> object:  # type: ignore[type-arg]
        sizes.append(len(values))
        return parse_snapshot(values)

    monkeypatch.setattr(reading_module, "parse_snapshot", counting)
    return sizes


async def test_an_unchanged_answer_reuses_its_snapshot_and_a_changed_one_is_parsed(
    snmp_agent: SnmpSimulator, parses: list[int]
) -> None:
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
    snmp_agent: SnmpSimulator, parses: list[int]
) -> None:
    """Once the reading's template holds an answer only it is kept; a poll that cannot use it
    (the printer at another address) parses the same answer again and reads the same."""
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


def test_sys_uptime_parses_to_nothing_in_any_recording(printer_walks_dir: Path) -> None:
    """What a steady answer's hash leaves out (sysUpTime's value) changes no snapshot."""
    hostile = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
    demo = Path(reading_module.__file__).resolve().parents[3] / "src" / "tonerwatch" / "demo"
    walks = sorted(
        [
            *printer_walks_dir.glob("*.snmprec"),
            *hostile.glob("*.snmprec"),
            *(demo / "recordings").glob("*.snmprec"),
        ]
    )
    with_uptime = 0
    for walk in walks:
        values = load_snmprec(walk)
        if SYS_UPTIME not in values:
            continue
        with_uptime += 1
        snapshot = parse_snapshot(values)
        for ticks in (0, 1, 123_456_789, 2**32 - 1):
            assert parse_snapshot({**values, SYS_UPTIME: ticks}) == snapshot, walk.name
    assert with_uptime >= 10


class _TickingAgent:
    """The real client, with the agent's sysUpTime moving 10 s between GETs, as a live one's does
    (a recording's stands still)."""

    def __init__(self, client: SnmpClient) -> None:
        self.client = client
        self.gets = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)

    async def get(self, target: object, oids: object, *, stats: object = None) -> object:
        values = await self.client.get(target, oids, stats=stats)  # type: ignore[arg-type]
        self.gets += 1
        if isinstance(values.get(SYS_UPTIME), int):
            values[SYS_UPTIME] += 1000 * self.gets  # type: ignore[operator]
        return values


async def test_a_live_printer_whose_uptime_ticks_is_written_from_its_template(
    snmp_agent: SnmpSimulator, parses: list[int]
) -> None:
    target = snmp_agent.target("jetdirect_m252dw")
    client = SnmpClient()
    agent = _TickingAgent(client)
    try:
        first = await read_printer(agent, target, printer_id="p", site_id="s", source="t")  # type: ignore[arg-type]
        polled = [first]
        for _ in range(4):
            polled.append(
                await read_printer(
                    agent,  # type: ignore[arg-type]
                    target,
                    printer_id="p",
                    site_id="s",
                    source="t",
                    plan=polled[-1].plan,
                    parsed=polled[-1].parsed,
                )
            )
    finally:
        await client.close()
    assert agent.gets == 4 and all(not p.learned for p in polled[1:])
    # Learning and the first steady poll parse; the later ones, whose answers differ only in
    # sysUpTime, are written from the template, and read as the parsed one did.
    assert len(parses) == 2
    assert polled[1].built is not None
    assert all(p.built is None and p.steady is not None for p in polled[2:])
    per_poll = {"event_id", "occurred_at", "seq", "bytes_sent", "bytes_received"}
    per_poll |= {"requests", "duration_ms"}
    for p in polled[2:]:
        assert p.reading.model_dump(exclude=per_poll) == polled[1].reading.model_dump(
            exclude=per_poll
        )
