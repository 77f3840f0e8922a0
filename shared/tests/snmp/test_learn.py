"""The first poll (index columns, then exact columns) against snmpsim serving every recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.learn import private_for, split_scalars, vendor_enterprise
from tonerwatch_shared.snmp.poll import learn_columns, learn_scalars, poll_printer
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.types import Oid

WALKS = Path(__file__).resolve().parents[3].parent / "shared" / "printer-walks"
RECORDINGS = sorted(p.stem for p in WALKS.glob("*.snmprec"))


@pytest.fixture
async def client() -> SnmpClient:  # type: ignore[misc]
    c = SnmpClient()
    yield c
    await c.close()


@pytest.mark.recordings
@pytest.mark.parametrize("name", RECORDINGS or ["no-recordings"])
async def test_first_poll_parses_like_the_whole_recording(
    client: SnmpClient, snmp_agent: SnmpSimulator, printer_walks_dir: Path, name: str
) -> None:
    # What the poller publishes must not depend on reading less than the whole walk.
    recording = load_snmprec(printer_walks_dir / f"{name}.snmprec")
    first = await poll_printer(client, snmp_agent.target(name))
    assert first.learned and first.round_trips <= 3
    assert parse_snapshot(first.values) == parse_snapshot(recording)


@pytest.mark.recordings
@pytest.mark.parametrize(
    ("name", "budget"),
    [("jetdirect_m252dw", 3000), ("canonprinter_tm", 2200), ("konica_c250i", 2700)],
)
async def test_colour_printer_first_poll_fits_three_round_trips_and_the_byte_budget(
    client: SnmpClient, snmp_agent: SnmpSimulator, name: str, budget: int
) -> None:
    first = await poll_printer(client, snmp_agent.target(name))
    assert first.round_trips <= 3
    assert first.bytes_sent + first.bytes_received < budget
    steady = await poll_printer(client, snmp_agent.target(name), first.plan)
    assert (steady.requests, steady.round_trips) == (1, 1)
    assert steady.bytes_sent + steady.bytes_received < 800


@pytest.mark.recordings
@pytest.mark.parametrize(
    ("name", "steady_budget"),
    # Konica C250i: 620 -> 771 B since its five private counters (mono, colour, duplex) are read
    # on every steady poll (issue #10; they were read only on the first poll before).
    [("jetdirect_m252dw", 600), ("konica_c250i", 800), ("ricoh_mpc3002", 800)],
)
async def test_colour_printer_first_poll_under_3000_bytes_with_community_public(
    client: SnmpClient, printer_walks_dir: Path, tmp_path: Path, name: str, steady_budget: int
) -> None:
    # snmpsim picks a recording by community, so the shared agent's communities are the file
    # names ("jetdirect_m252dw", 10 octets more than "public" in every message). A printer
    # answering to "public" is what the byte budget is about.
    (tmp_path / "public.snmprec").symlink_to(printer_walks_dir / f"{name}.snmprec")
    async with SnmpSimulator([tmp_path / "public.snmprec"]) as agent:
        target = agent.target("public")
        first = await poll_printer(client, target)
        steady = await poll_printer(client, target, first.plan)
    assert first.round_trips <= 3
    assert first.bytes_sent + first.bytes_received < 3000
    assert steady.requests == 1 and steady.bytes_sent + steady.bytes_received < steady_budget
    assert parse_snapshot(first.values) == parse_snapshot(
        load_snmprec(printer_walks_dir / f"{name}.snmprec")
    )


def test_hp_enterprise_asks_only_hp_private_scalars() -> None:
    _first, private, _covered = split_scalars(learn_scalars(), learn_columns())
    hp = private_for(
        private, vendor_enterprise({"1.3.6.1.2.1.1.2.0": Oid("1.3.6.1.4.1.11.2.3.9.1")})
    )
    assert hp == ["1.3.6.1.4.1.11.2.3.9.1.1.7.0"]  # the IEEE 1284 device ID


def test_brother_enterprise_asks_brother_scalars_and_the_charset() -> None:
    _first, private, _covered = split_scalars(learn_scalars(), learn_columns())
    brother = private_for(private, 2435)
    assert "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.8.0" in brother  # maintenance blob
    assert "1.3.6.1.2.1.43.7.1.1.4.1.1" in brother  # status text charset
    assert not [o for o in brother if o.startswith("1.3.6.1.4.1.367.")]


def test_unknown_vendor_asks_every_private_scalar() -> None:
    _first, private, _covered = split_scalars(learn_scalars(), learn_columns())
    assert vendor_enterprise({"1.3.6.1.2.1.1.1.0": b"Network Printer"}) is None
    assert private_for(private, None) == private


def test_brand_in_sys_descr_names_the_vendor_without_sys_object_id() -> None:
    assert vendor_enterprise({"1.3.6.1.2.1.1.1.0": b"Brother NC-8300h"}) == 2435
