"""The subnets this host is on, computed from interface addresses: pure, no packet sent."""

from __future__ import annotations

import ipaddress

from tonerwatch_discovery.netinfo import InterfaceAddress, local_subnets, parse_ip_json

IFACES = [
    InterfaceAddress("lo", "127.0.0.1", 8),
    InterfaceAddress("eth0", "192.168.10.37", 24),
    InterfaceAddress("eth0", "192.168.10.38", 24),  # a second address on the same subnet
    InterfaceAddress("eth1", "10.20.0.5", 16),
    InterfaceAddress("eth2", "169.254.3.4", 16),
    InterfaceAddress("wg0", "10.99.0.1", 32),
    InterfaceAddress("eth3", "172.16.4.9", 22),
]


def test_office_host_sweeps_its_small_subnets_only() -> None:
    networks, skipped = local_subnets(IFACES)
    assert networks == [
        ipaddress.IPv4Network("192.168.10.0/24"),
        ipaddress.IPv4Network("172.16.4.0/22"),
    ]
    reasons = {s.network: s.reason for s in skipped}
    assert reasons["127.0.0.0/8"] == "loopback"
    assert reasons["169.254.0.0/16"] == "link-local"
    assert reasons["10.20.0.0/16"].startswith("larger than /22")
    assert "single address" in reasons["10.99.0.1/32"]


def test_a_larger_limit_takes_the_slash_16_when_asked() -> None:
    networks, _ = local_subnets(IFACES, max_prefix=16)
    assert ipaddress.IPv4Network("10.20.0.0/16") in networks
    assert ipaddress.IPv4Network("169.254.0.0/16") not in networks


def test_loopback_and_link_local_only_when_asked() -> None:
    networks, _ = local_subnets(
        [InterfaceAddress("lo", "127.5.6.7", 24), InterfaceAddress("e", "169.254.9.1", 24)],
        include_loopback=True,
        include_link_local=True,
    )
    assert [str(n) for n in networks] == ["127.5.6.0/24", "169.254.9.0/24"]


IP_JSON = """[
 {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],
  "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},{"family":"inet6","local":"::1","prefixlen":128}]},
 {"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
  "addr_info":[{"family":"inet","local":"192.168.10.37","prefixlen":24}]},
 {"ifindex":3,"ifname":"eth9","flags":["BROADCAST","MULTICAST"],
  "addr_info":[{"family":"inet","local":"192.168.77.2","prefixlen":24}]}
]"""


def test_ip_json_output_is_read_and_down_links_ignored() -> None:
    assert parse_ip_json(IP_JSON) == [
        InterfaceAddress("lo", "127.0.0.1", 8),
        InterfaceAddress("eth0", "192.168.10.37", 24),
    ]
