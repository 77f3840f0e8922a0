"""Target parsing and lazy iteration: pure, no packet sent."""

from __future__ import annotations

import itertools

import pytest

from tonerwatch_shared.targets import (
    TargetError,
    iter_addresses,
    merge_intervals,
    parse_target,
    parse_targets,
)


def _ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def test_cidr_block_sweeps_hosts_without_network_and_broadcast() -> None:
    parsed = parse_targets(["192.0.2.0/24"])
    addresses = list(iter_addresses(parsed.intervals))
    assert parsed.total == 254 == len(addresses)
    assert addresses[0] == "192.0.2.1" and addresses[-1] == "192.0.2.254"


def test_slash_31_and_32_keep_every_address() -> None:
    assert parse_targets(["192.0.2.0/31"]).total == 2
    assert parse_targets(["192.0.2.7/32"]).total == 1


def test_non_strict_cidr_is_the_enclosing_block() -> None:
    assert parse_target("192.0.2.77/30") == (_ip("192.0.2.77"), _ip("192.0.2.78"))


def test_ranges_full_and_last_octet() -> None:
    assert parse_target("192.0.2.10-192.0.2.20") == (_ip("192.0.2.10"), _ip("192.0.2.20"))
    assert parse_target("192.0.2.10-20") == (_ip("192.0.2.10"), _ip("192.0.2.20"))
    assert parse_target("192.0.2.250-198.51.100.3") == (_ip("192.0.2.250"), _ip("198.51.100.3"))


def test_single_address_and_dns_name() -> None:
    assert parse_target("192.0.2.9") == (_ip("192.0.2.9"), _ip("192.0.2.9"))
    assert parse_target("Printer-3.Example.COM.") == "printer-3.example.com"
    assert parse_target(" local ") == "local"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "192.0.2.300",
        "192.0.2.20-10",
        "192.0.2.1-999",
        "2001:db8::/64",
        "::1",
        "224.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "not a host!",
        "10.0.0.0/33",
    ],
)
def test_bad_targets_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_targets([bad])
    assert str(info.value)


def test_overlapping_targets_are_probed_once() -> None:
    parsed = parse_targets(
        ["192.0.2.0/25", "192.0.2.100-192.0.2.200", "192.0.2.150", "192.0.2.129/32"]
    )
    addresses = list(iter_addresses(parsed.intervals))
    assert len(addresses) == len(set(addresses)) == parsed.total == 200


def test_adjacent_intervals_are_joined() -> None:
    assert merge_intervals([(10, 20), (21, 30), (5, 6)]) == ((5, 6), (10, 30))


def test_a_huge_block_is_iterated_lazily() -> None:
    parsed = parse_targets(["10.0.0.0/8"], max_addresses=1 << 24)
    first = list(itertools.islice(iter_addresses(parsed.intervals), 3))
    assert first == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert parsed.total == (1 << 24) - 2


def test_sweeps_over_the_address_limit_are_refused() -> None:
    with pytest.raises(TargetError, match="more than the limit"):
        parse_targets(["10.0.0.0/8"])
