"""Input checks shared by the api, the CLI and discovery: pure, no name looked up, no packet sent."""

from __future__ import annotations

import socket

import pytest

from tonerwatch_shared.checks import (
    TargetError,
    check_credentials,
    check_host,
    check_sweep_targets,
    credential_problems,
)
from tonerwatch_shared.events import SnmpCredentials


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("192.0.2.31", "192.0.2.31"),
        (" 192.0.2.31 ", "192.0.2.31"),
        ("2001:DB8::31", "2001:db8::31"),
        ("[2001:db8::31]", "2001:db8::31"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("Printer-Finance.ACME.example", "printer-finance.acme.example"),
        ("prn_lobby", "prn_lobby"),
        ("hp4250.local.", "hp4250.local"),
        ("3com-switch.example", "3com-switch.example"),
    ],
)
def test_addresses_and_plausible_host_names_pass(text: str, stored: str) -> None:
    assert check_host(text) == stored


@pytest.mark.parametrize(
    "text",
    [
        "999.1.1.1",
        "256.0.0.1",
        "1.2.3",
        "10.1",
        "0x7f.1",
        "017.0.0.1x.1",
        "12345",
        "a..b",
        "-a.b",
        "a-.b",
        "printer.example/24",
        "fe80::zz",
        "x" * 64 + ".example",
        "",
        "  ",
        "printer 7",
    ],
)
def test_what_is_neither_an_ip_nor_a_host_name_is_refused(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_dns(*_a: object, **_k: object) -> None:
        raise AssertionError("a check looked a name up")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(socket, "gethostbyname", no_dns)
    with pytest.raises(ValueError):
        check_host(text)


def test_snmpv3_keys_under_eight_characters_are_named() -> None:
    creds = SnmpCredentials(
        version="3",
        user="tw",
        auth_protocol="SHA",
        auth_key="short",
        priv_protocol="AES",
        priv_key="1234567",
    )
    assert [f for f, _ in credential_problems(creds)] == ["auth_key", "priv_key"]
    with pytest.raises(ValueError, match=r"auth_key: an SNMPv3 key is at least 8 characters"):
        check_credentials(creds)
    ok = SnmpCredentials(
        version="3",
        user="tw",
        auth_protocol="SHA",
        auth_key="12345678",
        priv_protocol="AES",
        priv_key="abcdefgh",
    )
    assert check_credentials(ok) is ok


def test_snmpv3_without_user_key_or_auth_is_named() -> None:
    assert [f for f, _ in credential_problems(SnmpCredentials(version="3"))] == ["user"]
    no_key = SnmpCredentials(version="3", user="tw", auth_protocol="MD5")
    assert [f for f, _ in credential_problems(no_key)] == ["auth_key"]
    priv_only = SnmpCredentials(version="3", user="tw", priv_protocol="DES", priv_key="12345678")
    assert [f for f, _ in credential_problems(priv_only)] == ["priv_protocol"]
    # v1/v2c: keys are not used, so not checked; a community is.
    assert credential_problems(SnmpCredentials(community="public", auth_key="x")) == []


@pytest.mark.parametrize(
    "targets",
    [
        ["192.0.2.0/33"],
        ["0.0.0.0/0"],
        ["10.0.0.0/8"],
        ["1.2.3"],
        ["999.1.1.1-20"],
        [" "],
        ["10.0.0.0/12", "10.16.0.0/12"],
        ["0x7f.1"],
    ],
)
def test_sweep_targets_not_cidr_or_past_the_limit_are_refused(targets: list[str]) -> None:
    with pytest.raises(TargetError):
        check_sweep_targets(targets)


def test_sweep_targets_within_the_limit_pass_stripped() -> None:
    assert check_sweep_targets([" 192.0.2.0/24", "10.0.0.0/13", "printer7.example", "local"]) == [
        "192.0.2.0/24",
        "10.0.0.0/13",
        "printer7.example",
        "local",
    ]
