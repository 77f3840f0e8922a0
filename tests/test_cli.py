"""The `tonerwatch` command as a user runs it: help, clear one-line errors, `poll` against real SNMP agents."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import tonerwatch as cli_package
from tonerwatch.services import SERVICES, CliError, service_module
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port


def tonerwatch(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "tonerwatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
        check=False,
    )


def test_help_lists_every_command() -> None:
    out = tonerwatch("--help")
    assert out.returncode == 0
    for command in ("up", "serve", "migrate", "poll", "discover", "tenant", "version"):
        assert command in out.stdout


def test_serve_without_nats_says_which_setting_in_one_line() -> None:
    out = tonerwatch("serve", "poller")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "TONERWATCH_NATS_URL" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_setting_is_named_in_one_line() -> None:
    out = tonerwatch(
        "serve",
        "poller",
        env={"TONERWATCH_NATS_URL": "nats://127.0.0.1:1", "TONERWATCH_POLL_TIMEOUT_S": "-1"},
    )
    assert out.returncode == 2
    assert "TONERWATCH_POLL_TIMEOUT_S" in out.stderr and "Traceback" not in out.stderr


def test_serve_with_unreachable_nats_names_the_url() -> None:
    url = f"nats://127.0.0.1:{free_tcp_port()}"
    out = tonerwatch(
        "serve",
        "syncer",
        env={
            "TONERWATCH_NATS_URL": url,
            "TONERWATCH_NATS_CONNECT_ATTEMPTS": "2",
            "TONERWATCH_NATS_CONNECT_TIMEOUT_S": "0.5",
        },
    )
    assert out.returncode == 2 and url in out.stderr and "Traceback" not in out.stderr


def test_poll_hp_m252dw_json_is_the_published_reading(snmp_agent: SnmpSimulator) -> None:
    out = tonerwatch(
        "poll",
        "127.0.0.1",
        "--port",
        str(snmp_agent.port),
        "--community",
        "jetdirect_m252dw",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    reading = json.loads(out.stdout)
    assert reading["type"] == "tonerwatch.supply_reading.v1"
    assert {"vendor", "model", "serial", "sys_object_id", "sys_descr"} <= set(reading["printer"])
    assert reading["printer"]["vendor"] == "HP"
    black = next(s for s in reading["supplies"] if s["colour"] == "black")
    assert {
        "index",
        "description",
        "part_number",
        "kind",
        "colour",
        "level",
        "max_capacity",
        "percent",
        "state",
    } <= set(black)
    assert black["index"] == "1.1" and black["percent"] == 63.0 and black["part_number"] == "CF400X"
    assert "lifetime_pages" in reading["counters"]
    assert {"device_status", "printer_status", "errors", "alerts"} <= set(reading["status"])
    assert reading["bytes_sent"] > 0 and reading["bytes_received"] > 0


def test_poll_brother_hl_l2340dw_prints_levels_for_a_person(snmp_agent: SnmpSimulator) -> None:
    out = tonerwatch(
        "poll", "127.0.0.1", "--port", str(snmp_agent.port), "--community", "brother_hl-l2340dw"
    )
    assert out.returncode == 0, out.stderr
    assert "Brother" in out.stdout and "75.0%" in out.stdout


def test_poll_wrong_community_exits_2_with_one_line(snmp_agent: SnmpSimulator) -> None:
    out = tonerwatch(
        "poll",
        "127.0.0.1",
        "--port",
        str(snmp_agent.port),
        "--community",
        "nope",
        "--timeout",
        "0.3",
        "--retries",
        "0",
    )
    assert out.returncode == 2
    assert out.stdout == "" and out.stderr.count("\n") == 1 and "no SNMP answer" in out.stderr


def test_poll_silent_port_exits_2() -> None:
    out = tonerwatch(
        "poll", "127.0.0.1", "--port", str(free_udp_port()), "--timeout", "0.3", "--retries", "0"
    )
    assert out.returncode == 2 and "127.0.0.1" in out.stderr


def test_poll_unresolvable_name_exits_2() -> None:
    out = tonerwatch("poll", "no-such-printer.invalid", "--timeout", "0.3", "--retries", "0")
    assert (
        out.returncode == 2
        and "no-such-printer.invalid" in out.stderr
        and "Traceback" not in out.stderr
    )


def test_discover_json_finds_the_hp_m252dw_and_summarises(snmp_agent: SnmpSimulator) -> None:
    out = tonerwatch(
        "discover",
        "127.0.0.1-127.0.0.3",
        "--port",
        str(snmp_agent.port),
        "--community",
        "jetdirect_m252dw",
        "--timeout",
        "0.5",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    objects = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    summary = objects[-1]
    assert summary["end_condition"] == "completed"
    assert summary["probed"] == 3 and summary["printers"] == 1
    assert summary["bytes_sent"] > 0 and summary["bytes_received"] > 0
    printer = objects[0]
    assert "VNB3J99999" in json.dumps(printer)


def test_the_command_reaches_services_only_by_loading_them_by_name() -> None:
    # `serve`, `up` and `discover` load tonerwatch_<service>.service through services.service_module;
    # a static import of a service package would tie the command to one service's internals.
    packages = {f"tonerwatch_{name}" for name in SERVICES}
    offenders = []
    for path in Path(cli_package.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in packages]
    assert offenders == []


def test_discover_loads_the_one_shot_sweep_of_the_discovery_service() -> None:
    discovery = service_module("discovery")
    assert callable(discovery.sweep_once) and issubclass(discovery.SweepRefused, Exception)
    try:
        service_module("printer")
    except CliError as exc:
        assert "no service 'printer'" in str(exc)
    else:
        raise AssertionError("an unknown service name was loaded")


def test_poll_refuses_a_bad_address_or_short_v3_key_in_one_line_before_sending() -> None:
    for args, words in (
        (("poll", "999.1.1.1"), "'999.1.1.1' is not a valid IPv4 address"),
        (("poll", "0x7f.1"), "not a valid IPv4 address"),
        (
            ("poll", "127.0.0.1", "--snmp-version", "3", "--user", "tw", "--auth-key", "short"),
            "auth_key: an SNMPv3 key is at least 8 characters",
        ),
        (
            (
                "poll",
                "127.0.0.1",
                "--snmp-version",
                "3",
                "--user",
                "tw",
                "--auth-key",
                "authpass1",
                "--priv-key",
                "1234",
            ),
            "priv_key: an SNMPv3 key is at least 8 characters",
        ),
    ):
        out = tonerwatch(*args, "--timeout", "0.3", "--retries", "0")
        assert out.returncode == 2, (args, out.stderr)
        assert words in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_discover_refuses_ranges_past_cidr_or_the_limit_in_one_line() -> None:
    for target, words in (
        ("192.0.2.0/33", "is not a CIDR block"),
        ("0.0.0.0/0", "more than the limit"),
        ("999.1.1.1", "is not a CIDR block, a-b range, IPv4 address or DNS name"),
    ):
        out = tonerwatch("discover", target, "--timeout", "0.3")
        assert out.returncode == 2 and words in out.stderr, (target, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
