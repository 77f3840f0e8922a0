"""The clients and poll_printer against real snmpsim on loopback serving the real recordings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.errors import IoStats, SnmpTimeoutError
from tonerwatch_shared.snmp.poll import PollPlan, poll_printer
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Missing, Oid
from tonerwatch_shared.snmp.udp import _RID_MAX, _RID_MIN, UdpSnmpClient

pytestmark = pytest.mark.recordings

SUPPLIES = "1.3.6.1.2.1.43.11.1.1"
SUPPLY_COLUMNS = [f"{SUPPLIES}.{c}" for c in range(2, 10)]
INPUT_COLUMNS = [f"1.3.6.1.2.1.43.8.2.1.{c}" for c in (9, 10, 12, 13)]


def _under(recording: Mapping[str, object], prefixes: list[str]) -> dict[str, object]:
    return {o: v for o, v in recording.items() if o.startswith(tuple(p + "." for p in prefixes))}


@pytest.fixture
async def client() -> SnmpClient:  # type: ignore[misc]
    c = SnmpClient()
    yield c
    await c.close()


async def test_hp_m252dw_get_returns_recorded_identity(
    client: SnmpClient, snmp_agent: SnmpSimulator, printer_walks_dir: Path
) -> None:
    recording = load_snmprec(printer_walks_dir / "jetdirect_m252dw.snmprec")
    oids = ["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.7.0"]
    values = await client.get(snmp_agent.target("jetdirect_m252dw"), oids)
    assert values["1.3.6.1.2.1.1.1.0"] == recording["1.3.6.1.2.1.1.1.0"]
    assert values["1.3.6.1.2.1.1.2.0"] == Oid("1.3.6.1.4.1.11.2.3.9.1")
    assert values["1.3.6.1.2.1.1.3.0"] == 220329339
    assert isinstance(values["1.3.6.1.2.1.1.7.0"], Missing)  # sysServices not recorded


@pytest.mark.parametrize(
    "name", ["jetdirect_m252dw", "fujifilmprinter_c810", "ricoh_mpc3002", "konica_c250i"]
)
@pytest.mark.parametrize("version", ["1", "2c"])
async def test_walked_columns_equal_the_recording(
    client: SnmpClient,
    snmp_agent: SnmpSimulator,
    printer_walks_dir: Path,
    name: str,
    version: str,
) -> None:
    recording = load_snmprec(printer_walks_dir / f"{name}.snmprec")
    columns = [*SUPPLY_COLUMNS, *INPUT_COLUMNS, "1.3.6.1.2.1.43.12.1.1.4"]
    values = await client.walk_columns(snmp_agent.target(name, version=version), columns)
    assert values == _under(recording, columns)
    assert values  # these printers do have supplies


async def test_fujifilm_c810_trimmed_supply_table_with_gaps_walks_in_two_round_trips(
    client: SnmpClient, snmp_agent: SnmpSimulator, printer_walks_dir: Path
) -> None:
    # Supplies indexed 1..9 then 30, 31 and no columns 2-5: sizing must not assume otherwise.
    recording = load_snmprec(printer_walks_dir / "fujifilmprinter_c810.snmprec")
    stats = IoStats()
    values = await client.walk_columns(
        snmp_agent.target("fujifilmprinter_c810"), SUPPLY_COLUMNS, stats=stats
    )
    assert values == _under(recording, SUPPLY_COLUMNS)
    assert stats.round_trips <= 3


async def test_byte_counts_are_the_sizes_of_the_snmp_messages(
    client: SnmpClient, snmp_agent: SnmpSimulator
) -> None:
    stats = IoStats()
    await client.get(snmp_agent.target("jetdirect_m252dw"), ["1.3.6.1.2.1.1.3.0"], stats=stats)
    # 0x30 len | version | community "jetdirect_m252dw" | PDU: rid(4) status index | varbind
    assert stats.bytes_sent == 2 + 3 + 18 + 2 + 6 + 3 + 3 + 2 + 14
    assert stats.requests == stats.responses == stats.round_trips == 1
    # Same shape back, with TimeTicks 220329339 (4 octets) instead of NULL.
    assert stats.bytes_received == stats.bytes_sent + 4


async def test_v3_auth_priv_sha256_aes128_reads_the_recording(
    client: SnmpClient, snmp_agent: SnmpSimulator, printer_walks_dir: Path
) -> None:
    try:
        import cryptography  # noqa: F401  (pysnmp needs it for privacy)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("cryptography not installed: SNMPv3 privacy unavailable")
        pytest.skip("cryptography not installed: SNMPv3 privacy unavailable")
    target = snmp_agent.v3_target("jetdirect_m252dw")
    assert (target.auth_protocol, target.priv_protocol) == ("SHA256", "AES128")
    assert "privpass" not in repr(target) and "authpass" not in repr(target)
    recording = load_snmprec(printer_walks_dir / "jetdirect_m252dw.snmprec")
    values = await client.get(target, ["1.3.6.1.2.1.1.1.0"])
    assert values == {"1.3.6.1.2.1.1.1.0": recording["1.3.6.1.2.1.1.1.0"]}
    walked = await client.walk_columns(target, SUPPLY_COLUMNS)
    assert walked == _under(recording, SUPPLY_COLUMNS)


async def test_wrong_community_gets_no_answer_and_times_out(
    client: SnmpClient, snmp_agent: SnmpSimulator
) -> None:
    target = SnmpTarget(
        snmp_agent.host, snmp_agent.port, community="not-a-printer", timeout=0.3, retries=0
    )
    with pytest.raises(SnmpTimeoutError):
        await client.get(target, ["1.3.6.1.2.1.1.1.0"])


@pytest.mark.parametrize("name", ["jetdirect_m252dw", "canonprinter_tm", "fujifilmprinter_c810"])
async def test_first_poll_learns_in_three_round_trips_then_steady_polls_are_one_get(
    client: SnmpClient, snmp_agent: SnmpSimulator, printer_walks_dir: Path, name: str
) -> None:
    recording = load_snmprec(printer_walks_dir / f"{name}.snmprec")
    target = snmp_agent.target(name)
    first = await poll_printer(client, target)
    assert first.learned and first.round_trips <= 3
    assert _under(first.values, SUPPLY_COLUMNS) == _under(recording, SUPPLY_COLUMNS)
    steady = await poll_printer(client, target, first.plan)
    assert not steady.learned
    assert (steady.requests, steady.round_trips) == (1, 1)
    assert steady.values == first.values  # a recording does not change
    assert steady.bytes_sent + steady.bytes_received < first.bytes_sent + first.bytes_received


async def test_hp_m252dw_steady_poll_is_one_small_get(
    client: SnmpClient, snmp_agent: SnmpSimulator
) -> None:
    target = snmp_agent.target("jetdirect_m252dw")
    first = await poll_printer(client, target)
    steady = await poll_printer(client, target, first.plan)
    assert steady.requests == 1
    assert steady.bytes_sent + steady.bytes_received < 600
    levels = {o: v for o, v in steady.values.items() if o.startswith(f"{SUPPLIES}.9.")}
    assert levels == {f"{SUPPLIES}.9.1.{i}": lvl for i, lvl in enumerate((63, 63, 88, 36), 1)}


@pytest.mark.parametrize("version", ["1", "2c"])
async def test_steady_gets_across_the_request_id_wrap_read_the_recording(
    client: SnmpClient, snmp_agent: SnmpSimulator, version: str
) -> None:
    # The steady GET's PDU is kept and only its request id written anew: ids running over the top
    # of their range and starting again at the bottom still match their answers, the same size.
    target = snmp_agent.target("jetdirect_m252dw", version=version)
    first = await poll_printer(client, target)
    udp = client._for(target)
    assert isinstance(udp, UdpSnmpClient)
    udp._next_rid = _RID_MAX - 2
    sizes = set()
    for _ in range(6):
        steady = await poll_printer(client, target, first.plan)
        assert not steady.learned and (steady.requests, steady.round_trips) == (1, 1)
        assert steady.values == first.values  # a recording does not change
        sizes.add(steady.bytes_sent)
    assert udp._next_rid == _RID_MIN + 3
    assert len(sizes) == 1


async def test_a_vanished_supply_makes_the_poll_relearn(
    client: SnmpClient, snmp_agent: SnmpSimulator
) -> None:
    target = snmp_agent.target("jetdirect_m252dw")
    first = await poll_printer(client, target)
    # A plan learned when a fifth supply existed: its level now answers noSuchInstance.
    stale = PollPlan(
        volatile=(*first.plan.volatile, f"{SUPPLIES}.9.1.5"),
        static=first.plan.static,
        triggers=first.plan.triggers,
        uptime=first.plan.uptime,
    )
    result = await poll_printer(client, target, stale)
    assert result.learned
    assert f"{SUPPLIES}.9.1.5" not in result.plan.volatile
    assert result.values == first.values


async def test_plan_is_relearned_periodically(
    client: SnmpClient, snmp_agent: SnmpSimulator
) -> None:
    target = snmp_agent.target("canonprinter_tm")
    plan = (await poll_printer(client, target)).plan
    learned = []
    for _ in range(4):
        result = await poll_printer(client, target, plan, relearn_every=2)
        plan = result.plan
        learned.append(result.learned)
    assert learned == [False, False, True, False]


async def test_identity_only_recording_polls_without_errors(
    client: SnmpClient, snmp_agent: SnmpSimulator
) -> None:
    # xerox_phaser holds sysDescr and sysObjectID only: empty tables, no steady OIDs.
    result = await poll_printer(client, snmp_agent.target("xerox_phaser"))
    assert set(result.values) == {"1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"}
    assert result.round_trips <= 2


async def test_identity_only_xerox_phaser_steady_poll_is_one_small_get(
    client: SnmpClient, snmp_agent: SnmpSimulator
) -> None:
    target = snmp_agent.target("xerox_phaser")
    first = await poll_printer(client, target)
    steady = await poll_printer(client, target, first.plan)
    assert not steady.learned and steady.requests == 1
    assert steady.values == first.values
    assert steady.bytes_sent + steady.bytes_received < first.bytes_sent + first.bytes_received


async def test_simulator_refuses_non_loopback_endpoints(printer_walks_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        SnmpSimulator([printer_walks_dir / "brother.snmprec"], [("192.0.2.1", 1161)])
