"""The subnets this host is on: a pure computation from interface addresses, and the one read of them."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_MAX_PREFIX = 22  # larger than a /22 (1,022 hosts) is not swept unless asked
_IP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One IPv4 address of one interface, with its prefix length."""

    interface: str
    address: str
    prefixlen: int


@dataclass(frozen=True, slots=True)
class SkippedSubnet:
    """A subnet of this host that is not swept, and why."""

    network: str
    interface: str
    reason: str


def local_subnets(
    addresses: Iterable[InterfaceAddress],
    *,
    max_prefix: int = DEFAULT_MAX_PREFIX,
    include_loopback: bool = False,
    include_link_local: bool = False,
) -> tuple[list[ipaddress.IPv4Network], list[SkippedSubnet]]:
    """The networks to sweep (deduplicated, in order) and the ones left out with the reason."""
    networks: list[ipaddress.IPv4Network] = []
    skipped: list[SkippedSubnet] = []
    for item in addresses:
        try:
            iface = ipaddress.IPv4Interface(f"{item.address}/{item.prefixlen}")
        except ValueError:
            skipped.append(
                SkippedSubnet(f"{item.address}/{item.prefixlen}", item.interface, "not IPv4")
            )
            continue
        network = iface.network
        reason = None
        if iface.ip.is_loopback and not include_loopback:
            reason = "loopback"
        elif iface.ip.is_link_local and not include_link_local:
            reason = "link-local"
        elif network.prefixlen < max_prefix:
            reason = f"larger than /{max_prefix} ({network.num_addresses} addresses)"
        elif network.prefixlen == 32:
            reason = "a single address (/32): no neighbours"
        if reason is not None:
            skipped.append(SkippedSubnet(str(network), item.interface, reason))
        elif network not in networks:
            networks.append(network)
    return networks, skipped


def parse_ip_json(text: str) -> list[InterfaceAddress]:
    """The IPv4 addresses in the output of `ip -j addr` (interfaces that are down are skipped)."""
    found: list[InterfaceAddress] = []
    for link in json.loads(text or "[]"):
        if not isinstance(link, dict):
            continue
        flags = link.get("flags") or []
        if "UP" not in flags:
            continue
        for info in link.get("addr_info") or []:
            if info.get("family") == "inet" and "local" in info and "prefixlen" in info:
                found.append(
                    InterfaceAddress(
                        str(link.get("ifname", "?")), str(info["local"]), int(info["prefixlen"])
                    )
                )
    return found


def host_interface_addresses() -> list[InterfaceAddress]:
    """This host's IPv4 interface addresses, read with `ip -j addr` (empty when it is not installed)."""
    ip = shutil.which("ip")
    if ip is None:
        return []
    done = subprocess.run(
        [ip, "-j", "-4", "addr", "show"],
        capture_output=True,
        text=True,
        timeout=_IP_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        return []
    return parse_ip_json(done.stdout)
