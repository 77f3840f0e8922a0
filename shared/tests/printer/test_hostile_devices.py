"""Hostile and broken devices: absurd values are stored or clamped (and said so), never fatal.

The recordings are our own (shared/tests/fixtures/hostile/): an HP M404dn whose agent sends a
Counter32 page count at its maximum, a Counter64 beyond any BIGINT, a level five times its
capacity, a negative capacity RFC 3805 does not define, a 3,000-character description and
terminal escapes; and one inventing 200 supply rows. snmpsim serves them on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tonerwatch_shared.printer.clamp import (
    MAX_ROWS,
    MAX_STORED_INT,
    TRUNCATED,
    clamp_snapshot,
)
from tonerwatch_shared.printer.model import PrinterSnapshot, Supply
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.reading import read_printer
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.snmprec import load_snmprec

HOSTILE = Path(__file__).parents[1] / "fixtures" / "hostile"


def _by_index(supplies: tuple[Supply, ...]) -> dict[str, Supply]:
    return {s.index: s for s in supplies}


def test_absurd_values_recording_parses_into_storable_values_with_anomalies() -> None:
    snapshot = parse_snapshot(load_snmprec(HOSTILE / "absurd-values.snmprec"))
    supplies = _by_index(snapshot.supplies)

    # A Counter32 at its maximum is a real value: kept. A Counter64 past BIGINT is dropped.
    assert snapshot.counters.lifetime_pages == 4_294_967_295
    assert snapshot.counters.power_on_pages is None
    assert any("power_on_pages" in a and "out of range" in a for a in snapshot.anomalies)

    # Level 5000 of 1000: percent clamped to 100 and said so; the raw level kept.
    over = supplies["1.1"]
    assert (over.level, over.max_capacity, over.percent) == (5000, 1000, 100.0)
    assert any(
        a.startswith("supply 1.1: level 5000 above max capacity 1000") for a in snapshot.anomalies
    )

    # 3,000 characters: cut to the column's 255 with a mark; the part number still read.
    assert len(over.description) == 255 and over.description.endswith(TRUNCATED)
    assert over.part_number == "CF259A"
    assert any("supply 1.1 description" in a and "cut to 255" in a for a in snapshot.anomalies)

    # A capacity of -7 means nothing in RFC 3805: dropped, the level kept.
    drum = supplies["1.2"]
    assert (drum.max_capacity, drum.level) == (None, 40)
    assert any("max capacity -7 is no RFC 3805 value" in a for a in snapshot.anomalies)

    # A Gauge32 level at 2^32-1: stored as is, no percent made of it.
    spare = supplies["1.3"]
    assert spare.level == 4_294_967_295 and spare.percent is None
    assert "\x1b" not in spare.description and "\x07" not in spare.description

    # RFC 3805's own -2 and -3 are states, never anomalies.
    waste = supplies["1.4"]
    assert (waste.level, waste.max_capacity) == (-3, -2)
    assert not any(a.startswith("supply 1.4") for a in snapshot.anomalies)

    # Terminal escapes never reach a column or a log line.
    assert snapshot.printer.serial is not None and "\x1b" not in snapshot.printer.serial
    assert snapshot.printer.sys_name is not None and len(snapshot.printer.sys_name) == 200


def test_clamping_is_idempotent() -> None:
    snapshot = parse_snapshot(load_snmprec(HOSTILE / "absurd-values.snmprec"))
    assert clamp_snapshot(snapshot) == snapshot


def test_values_beyond_bigint_are_dropped_everywhere() -> None:
    huge = MAX_STORED_INT + 1
    snapshot = PrinterSnapshot.model_validate(
        {
            "printer": {"serial": "A\x00B"},
            "supplies": [
                {"index": "1.1", "description": "Toner", "level": huge, "max_capacity": huge},
                {"index": "1.2", "description": "Toner", "percent": 250.0, "pages_left": -5},
            ],
            "trays": [{"index": "1.1", "name": "Tray", "level": -9, "max_capacity": huge}],
            "counters": {"mono_pages": -1, "per_marker": {"1.1": huge}},
        }
    )
    fitted = clamp_snapshot(snapshot)
    first, second = fitted.supplies
    assert (first.level, first.max_capacity) == (None, None)
    assert (second.percent, second.pages_left) == (100.0, None)
    assert (fitted.trays[0].level, fitted.trays[0].max_capacity) == (None, None)
    assert fitted.counters.mono_pages is None and fitted.counters.per_marker == {}
    assert fitted.printer.serial == "A B"  # PostgreSQL refuses NUL in text
    assert len(fitted.anomalies) >= 7


def test_rows_beyond_the_cap_are_cut_and_said_so() -> None:
    many = tuple(
        Supply(index=f"1.{i}", description=f"Phantom {i}", level=50, max_capacity=100)
        for i in range(1, 1001)
    )
    fitted = clamp_snapshot(PrinterSnapshot(printer={}, supplies=many))  # type: ignore[arg-type]
    assert len(fitted.supplies) == MAX_ROWS
    assert "supplies: 1000 rows, kept the first 64" in fitted.anomalies


@pytest_asyncio.fixture(loop_scope="function")
async def hostile_agent() -> AsyncIterator[SnmpSimulator]:
    simulator = SnmpSimulator(sorted(HOSTILE.glob("*.snmprec")))
    async with simulator:
        yield simulator


async def test_absurd_mfp_polled_over_snmp_gives_a_reading_with_anomalies(
    hostile_agent: SnmpSimulator,
) -> None:
    client = SnmpClient()
    try:
        polled = await read_printer(
            client,
            hostile_agent.target("absurd-values"),
            printer_id="p-absurd",
            site_id="default",
            source="test",
        )
    finally:
        await client.close()
    reading = polled.reading
    assert reading.counters.lifetime_pages == 4_294_967_295
    assert any("above max capacity" in a for a in reading.anomalies)
    assert all(len(s.description) <= 255 for s in reading.supplies)
    # The event round-trips through JSON as the api reads it.
    assert type(reading).model_validate_json(reading.model_dump_json()) == reading


async def test_agent_inventing_supply_rows_gives_at_most_64_and_a_small_event(
    hostile_agent: SnmpSimulator,
) -> None:
    client = SnmpClient()
    try:
        polled = await read_printer(
            client,
            hostile_agent.target("phantom-rows"),
            printer_id="p-phantom",
            site_id="default",
            source="test",
        )
    finally:
        await client.close()
    reading = polled.reading
    assert len(reading.supplies) == MAX_ROWS
    assert any("more than 64 rows" in a for a in reading.anomalies)
    # 200 rows x 8 columns would be ~60 kB of event; the cap keeps it near what a real MFP sends.
    assert len(reading.model_dump_json()) < 40_000


def test_text_where_rfc_3805_has_an_integer_leaves_the_value_unknown_and_is_named() -> None:
    values = dict(load_snmprec(HOSTILE / "absurd-values.snmprec"))
    levels = sorted(o for o in values if o.startswith("1.3.6.1.2.1.43.11.1.1.9.1."))
    assert levels
    values[levels[0]] = b"lots"  # wrong type: text
    values[levels[-1]] = b"42"  # numeric text: a vendor habit, read as the number
    snapshot = parse_snapshot(values)
    index = levels[0].removeprefix("1.3.6.1.2.1.43.11.1.1.9.")
    assert _by_index(snapshot.supplies)[index].level is None
    assert f"prtMarkerSuppliesLevel.{index}: OCTET STRING where RFC 3805 has an INTEGER" in (
        snapshot.anomalies
    )
    assert not any(
        levels[-1].removeprefix("1.3.6.1.2.1.43.11.1.1.9.") in a and "INTEGER" in a
        for a in snapshot.anomalies
    )
    assert clamp_snapshot(snapshot) == snapshot
