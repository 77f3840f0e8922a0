"""Sweeps over real UDP on loopback: snmpsim agents on a few addresses of a 127.x.y.0/24, the rest silent."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tonerwatch.discover import progress_bar, sweep_command
from tonerwatch_discovery.devices import MemoryDeviceStore, recognise
from tonerwatch_discovery.icmp import IcmpNotPermittedError
from tonerwatch_discovery.identify import FoundPrinter, IdentifyError, identify, resolve
from tonerwatch_discovery.service import SweepRefused, sweep_once
from tonerwatch_discovery.sweep import Sweep, SweepConfig, SweepProgress
from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.simulator import SnmpSimulator, V3User, free_udp_port

from ._lab import Lab, random_block, recording_copy, run_lab, site_devices


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lab(
    printer_walks_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Lab]:
    """Three printers (.10 HP, .20 Konica, .30 Brother) and a switch, Linux host and UPS (.40-.60)."""
    async with run_lab(
        printer_walks_dir, tmp_path_factory.mktemp("lab"), site_devices(printer_walks_dir)
    ) as running:
        yield running


def _config(lab: Lab, **kwargs: object) -> SweepConfig:
    options: dict[str, object] = {
        "targets": [lab.block],
        "port": lab.port,
        "rate_pps": 2000.0,
        "timeout_s": 0.5,
    }
    options.update(kwargs)
    return SweepConfig(**options)  # type: ignore[arg-type]


async def test_site_sweep_finds_three_printers_and_three_other_devices(lab: Lab) -> None:
    progress: list[SweepProgress] = []
    result = await Sweep(_config(lab), on_progress=progress.append).run()
    assert result.end_condition == "completed"
    assert (result.total, result.probed, result.live) == (254, 254, 6)
    found = {p.address: p for p in result.printers}
    assert set(found) == {lab.ip(10), lab.ip(20), lab.ip(30)}
    hp = found[lab.ip(10)].identity
    assert (hp.vendor, hp.model, hp.serial, hp.mac_address) == (
        "HP",
        "Color LaserJet Pro M252dw",
        "VNB3J99999",
        "3c:a8:2a:f6:38:ac",
    )
    konica = found[lab.ip(20)].identity
    assert (konica.vendor, konica.serial, konica.mac_address) == (
        "Konica Minolta",
        "AA2M021115700",
        "00:20:6b:4a:f3:25",
    )
    brother = found[lab.ip(30)].identity
    assert (brother.vendor, brother.model) == ("Brother", "HL-L2340DW")
    for printer in result.printers:  # a first supply snapshot through the shared poll + parser
        assert printer.snapshot is not None and printer.snapshot.supplies, printer.address
        assert printer.first_snapshot.total > 0
    others = {n.address: n.sys_descr or "" for n in result.non_printers}
    assert set(others) == {lab.ip(40), lab.ip(50), lab.ip(60)}
    assert others[lab.ip(40)].startswith("D-Link DES-3028")
    assert not result.unidentified
    # Quiet: one 41-byte probe per silent address; probe + identification well under 900 bytes.
    assert result.silent_addresses == 248
    assert result.bytes_per_silent_address == 41
    assert all(p.discovery_bytes < 900 for p in result.printers), [
        p.discovery_bytes for p in result.printers
    ]
    assert progress and progress[-1].probed == progress[-1].total == 254
    assert progress[-1].printers == 3


async def test_silent_addresses_get_the_next_community_and_answers_name_the_set(lab: Lab) -> None:
    creds = [SnmpCredentials(community="secret-a"), SnmpCredentials(community="public")]
    result = await Sweep(
        _config(lab, credentials=creds, targets=[f"{lab.prefix}.1-{lab.prefix}.40"])
    ).run()
    assert result.end_condition == "completed"
    assert {p.credentials_name for p in result.printers} == {"#2 v2c"}
    assert len(result.printers) == 3 and len(result.non_printers) == 1
    # Each silent address got both probes: 43 + 41 bytes, still small.
    assert result.bytes_per_silent_address == 43 + 41


async def test_rate_limit_is_honoured_at_100_packets_per_second() -> None:
    block = f"{random_block()}.0/24"  # nobody listens: 254 silent addresses
    progress: list[SweepProgress] = []
    config = SweepConfig(
        targets=[block], port=9, rate_pps=100.0, timeout_s=0.2, progress_interval_s=0.25
    )
    result = await Sweep(config, on_progress=progress.append).run()
    assert result.end_condition == "completed" and result.probed == 254
    assert result.elapsed_s >= 2.5  # 254 probes at 100/s cannot take less (lower bound only)
    for p in progress:  # never ahead of the bucket: rate x time plus the one-packet burst
        assert p.probed <= 100.0 * p.elapsed_s + 2, p


async def test_time_limit_ends_the_sweep_early() -> None:
    config = SweepConfig(
        targets=[f"{random_block()}.0/24"], port=9, rate_pps=100.0, time_limit_s=0.5
    )
    result = await Sweep(config).run()
    assert result.end_condition == "time_limit"
    assert 0 < result.probed < result.total


async def test_cancel_stops_a_running_sweep() -> None:
    engine = Sweep(SweepConfig(targets=[f"{random_block()}.0/24"], port=9, rate_pps=50.0))
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(0.3)
    engine.cancel()
    result = await asyncio.wait_for(task, 5.0)
    assert result.end_condition == "cancelled"
    assert result.probed < result.total


async def test_dhcp_move_is_recognised_by_serial(
    lab: Lab, printer_walks_dir: Path, tmp_path: Path
) -> None:
    store = MemoryDeviceStore()
    first = await Sweep(_config(lab, targets=[lab.ip(10)])).run()
    (hp,) = first.printers
    before = await recognise(store, "hq", hp)
    assert before is not None and not before.known
    # The same printer comes back on another address (a new DHCP lease).
    devices = {77: printer_walks_dir / "jetdirect_m252dw.snmprec"}
    async with run_lab(printer_walks_dir, tmp_path, devices, prefix=lab.prefix, port=lab.port):
        moved = await identify(lab.ip(77), [SnmpCredentials()], port=lab.port, timeout_s=1.0)
    again = await recognise(store, "hq", moved)
    assert again is not None and again.known
    assert moved.device_key == hp.device_key == "sn.hp.VNB3J99999"
    assert moved.previous_address == lab.ip(10) and moved.address == lab.ip(77)
    assert moved.identity.serial == hp.identity.serial


async def test_manual_add_identifies_a_printer_by_address(lab: Lab) -> None:
    found = await identify(
        lab.ip(20),
        [SnmpCredentials(community="wrong"), SnmpCredentials()],
        port=lab.port,
        timeout_s=0.5,
        retries=0,
    )
    assert found.identity.model and "C250i" in found.identity.model
    assert found.credentials_name == "#2 v2c"


async def test_manual_add_of_a_switch_says_it_is_not_a_printer(lab: Lab) -> None:
    with pytest.raises(IdentifyError) as info:
        await identify(lab.ip(40), [SnmpCredentials()], port=lab.port, timeout_s=0.5)
    assert info.value.reason == "not_a_printer" and "D-Link" in str(info.value)


async def test_manual_add_of_a_silent_address_says_so(lab: Lab) -> None:
    with pytest.raises(IdentifyError) as info:
        await identify(lab.ip(99), [SnmpCredentials()], port=lab.port, timeout_s=0.2, retries=0)
    assert info.value.reason == "silent" and "no SNMP answer" in str(info.value)


@pytest.mark.parametrize("address", ["300.1.2.3", "127.9.9.0/24", "224.0.0.5", "", "::1"])
async def test_manual_add_of_a_wrong_address_says_so(address: str) -> None:
    with pytest.raises(IdentifyError) as info:
        await identify(address, [SnmpCredentials()])
    assert info.value.reason == "invalid_address"


async def test_manual_add_of_an_unresolvable_name_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # The resolver is replaced: a test sends no DNS query off this machine.
    async def fail(*_args: object, **_kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fail)
    with pytest.raises(IdentifyError) as info:
        await identify("printer-7.example.invalid", [SnmpCredentials()])
    assert info.value.reason == "unresolvable" and "printer-7.example.invalid" in str(info.value)


async def test_localhost_name_resolves_from_the_hosts_file() -> None:
    assert (await resolve("localhost")).startswith("127.")


async def test_sweep_once_hands_each_printer_to_the_callback_as_found(lab: Lab) -> None:
    # The one-shot entry point `tonerwatch discover` loads by name: no bus, callbacks and a result.
    seen: list[FoundPrinter] = []
    progress: list[SweepProgress] = []
    result = await sweep_once(
        [f"{lab.prefix}.1-{lab.prefix}.45"],
        [SnmpCredentials(community="public")],
        rate_pps=500.0,
        timeout_s=0.3,
        port=lab.port,
        on_printer=seen.append,
        on_progress=progress.append,
    )
    assert result.end_condition == "completed" and result.probed == 45
    assert [p.address for p in seen] == [p.address for p in result.printers]
    assert {p.address for p in seen} == {lab.ip(10), lab.ip(20), lab.ip(30)}
    assert progress and progress[-1].probed <= 45


@pytest.mark.parametrize(
    ("targets", "options", "why"),
    [
        (["10.0.0.0/33"], {}, "33"),
        (["127.0.0.1"], {"rate_pps": 0.0}, "rate and timeout must be positive"),
    ],
)
async def test_sweep_once_refuses_bad_arguments_before_sending(
    targets: list[str], options: dict[str, float], why: str
) -> None:
    with pytest.raises(SweepRefused, match=why):
        await sweep_once(targets, [SnmpCredentials()], port=9, timeout_s=0.2, **options)


async def test_sweep_command_prints_json_lines_and_a_summary(lab: Lab) -> None:
    out = io.StringIO()
    targets = [f"{lab.prefix}.1-{lab.prefix}.45"]
    code = await sweep_command(targets, ["public"], 500.0, None, 0.3, True, out=out, port=lab.port)
    assert code == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    printers, summary = lines[:-1], lines[-1]
    assert {p["address"] for p in printers} == {lab.ip(10), lab.ip(20), lab.ip(30)}
    assert all(p["type"] == "printer" and p["model"] for p in printers)
    assert summary["type"] == "summary" and summary["end_condition"] == "completed"
    assert (summary["probed"], summary["live"], summary["printers"], summary["non_printers"]) == (
        45,
        4,
        3,
        1,
    )
    assert summary["bytes_sent"] > 0 and summary["bytes_received"] > 0 and summary["seconds"] > 0


async def test_sweep_command_prints_a_line_per_printer(lab: Lab) -> None:
    out = io.StringIO()
    code = await sweep_command(
        [lab.ip(10)], ["public"], 100.0, None, 0.5, False, out=out, port=lab.port
    )
    assert code == 0
    first, summary = out.getvalue().splitlines()[:2]
    assert first.startswith(lab.ip(10)) and "HP Color LaserJet Pro M252dw" in first
    assert "serial VNB3J99999" in first
    assert summary.startswith("1 printer(s), 0 other SNMP device(s)")


async def test_sweep_command_refuses_bad_targets() -> None:
    out = io.StringIO()
    assert await sweep_command(["10.0.0.0/33"], ["public"], 100.0, None, 0.3, False, out=out) == 2


async def test_v3_only_hp_m252dw_is_found_through_the_third_credential_set(
    printer_walks_dir: Path, tmp_path: Path
) -> None:
    # snmpsim serves a recording by v3 context name; "hq-secret" is no v2c community it answers.
    user = V3User("ops")
    recording = recording_copy(
        printer_walks_dir / "jetdirect_m252dw.snmprec", tmp_path, "hq-secret"
    )
    prefix = random_block()
    port = free_udp_port(f"{prefix}.33")
    creds = [
        SnmpCredentials(community="public"),
        SnmpCredentials(
            version="3",
            user="nobody",
            auth_protocol="SHA256",
            auth_key="x" * 12,
            community="hq-secret",
        ),
        SnmpCredentials(
            version="3",
            user=user.name,
            auth_protocol=user.auth_protocol,
            auth_key=user.auth_key,
            priv_protocol="AES",
            priv_key=user.priv_key,
            community="hq-secret",
        ),
    ]
    async with SnmpSimulator([recording], [(f"{prefix}.33", port)], v3_user=user):
        config = SweepConfig(
            targets=[f"{prefix}.32/28"],
            port=port,
            credentials=creds,
            rate_pps=1000.0,
            timeout_s=0.5,
            identify_timeout_s=1.0,
        )
        result = await Sweep(config).run()
    assert result.end_condition == "completed" and result.live == 1
    (hp,) = result.printers
    assert hp.address == f"{prefix}.33" and hp.credentials_name == "#3 v3 user ops"
    assert hp.credentials.user == "ops" and hp.credentials.priv_key == user.priv_key
    assert (hp.identity.model, hp.identity.serial) == ("Color LaserJet Pro M252dw", "VNB3J99999")
    assert hp.snapshot is not None and hp.snapshot.supplies
    # The v2c probe, then one engine-discovery probe shared by every v3 set.
    assert result.bytes_per_silent_address == 41 + 60  # one v3 probe, whatever the v3 sets
    assert hp.discovery_bytes < 1100, hp.discovery_bytes


@pytest.mark.parametrize("width", [40, 60, 80, 200])
def test_progress_bar_fits_the_terminal_and_keeps_its_size_when_the_eta_goes(width: int) -> None:
    running = SweepProgress(5100, 65534, 12, 3, 2, 1.02, 12.4)
    finished = SweepProgress(65534, 65534, 12, 3, 2, 14.1, 0.0)
    line, last = progress_bar(running, width), progress_bar(finished, width)
    for text in (line, last):  # redrawn in place: "\r" first, erase-to-end last, never wrapped
        assert text.startswith("\r[") and text.endswith("\x1b[K")
        assert len(text) - len("\r\x1b[K") <= width - 1
    assert line.index("]") == last.index("]")
    if width >= 80:
        assert "8% 5,100/65,534 probed, 12 live, 3 printers, 1s, ~12s left" in line
        assert last.endswith("100% 65,534/65,534 probed, 12 live, 3 printers, 14s\x1b[K")


async def test_prepass_on_loopback_finds_the_site_and_counts_the_echoes(lab: Lab) -> None:
    config = SweepConfig(
        targets=[lab.block], port=lab.port, rate_pps=2000.0, timeout_s=0.5, icmp_prepass=True
    )
    try:
        result = await Sweep(config).run()
    except IcmpNotPermittedError as exc:
        pytest.skip(f"this process may open no ICMP socket: {exc}")
    assert result.end_condition == "completed"
    # Linux answers echo on every 127.x address, so every address also gets the SNMP probe.
    assert result.echo_replies == 254 and result.probed == 254 and result.live == 6
    assert {p.address for p in result.printers} == {lab.ip(10), lab.ip(20), lab.ip(30)}
    assert len(result.non_printers) == 3
    assert result.bytes_per_silent_address == 8 + 41  # echo request + SNMP probe
    assert result.probe.sent == 254 * (8 + 41)
