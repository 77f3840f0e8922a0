"""What to sweep: CIDR blocks, a-b ranges, addresses, DNS names and "local", parsed and iterated lazily (pure).

Address blocks become integer intervals, merged so an address named twice is probed once; iterating
them yields one address at a time, so memory never grows with the size of the range.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

LOCAL = "local"
"""The target meaning "the subnets this host is on"."""

# A /8 at 200 packets/s takes a day: refuse by default, a caller can raise it.
DEFAULT_MAX_ADDRESSES = 1 << 20

MAX_HOST = 253


class TargetError(ValueError):
    """A target that is not a CIDR block, range, address or DNS name; the message says why."""


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
# A last label inet_aton() would read as a number ("1", "0x7f", "017"): such a "name" is an address.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


def check_host(text: str) -> str:
    """Return the address or host name stripped (IPv6 without brackets); ValueError if neither.

    An IP literal (v4, or v6 with an optional zone) or a DNS name of letters, digits, '-' and '_'
    labels whose last label is not a number: `999.1.1.1`, `1.2.3`, `0x7f.1` and `a..b` are refused.
    """
    raw = text.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    if not raw:
        raise ValueError("an address or host name is required")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    if ":" in raw or "%" in raw:
        raise ValueError(f"{raw[:60]!r} is not a valid IPv6 address")
    name = raw[:-1] if raw.endswith(".") else raw
    labels = name.split(".")
    if all(_NUMERIC_LABEL.match(label) for label in labels if label):
        raise ValueError(f"{raw[:60]!r} is not a valid IPv4 address")
    if len(name) > MAX_HOST or not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{raw[:60]!r} is neither an IP address nor a host name "
            "(letters, digits, '-' and '_' in dot-separated labels of at most 63)"
        )
    if _NUMERIC_LABEL.match(labels[-1]):
        raise ValueError(f"{raw[:60]!r} is not a valid IPv4 address or host name")
    return name.lower()


@dataclass(frozen=True, slots=True)
class ParsedTargets:
    """Targets split into merged IPv4 intervals (inclusive ends) and names still to resolve."""

    intervals: tuple[tuple[int, int], ...]
    names: tuple[str, ...]
    local: bool

    @property
    def total(self) -> int:
        """How many addresses the intervals hold (names not yet resolved are not counted)."""
        return sum(end - start + 1 for start, end in self.intervals)


def _block(network: ipaddress.IPv4Network) -> tuple[int, int]:
    """The host addresses of a block: network and broadcast addresses are skipped below /31."""
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.prefixlen < 31:
        first, last = first + 1, last - 1
    return first, last


def _address(text: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise TargetError(f"{text!r} is not an IPv4 address") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise TargetError(f"{text!r}: IPv6 is not swept (SNMP agents are probed over IPv4)")
    return address


def _check_usable(start: int, end: int, text: str) -> None:
    for value in (start, end):
        address = ipaddress.IPv4Address(value)
        if address.is_multicast or address.is_unspecified or value == 0xFFFFFFFF:
            raise TargetError(f"{text!r}: {address} is not a host address (multicast/broadcast/0)")


def parse_target(text: str) -> tuple[int, int] | str:
    """The inclusive integer interval of an address target, or the DNS name (or "local") to resolve."""
    raw = text.strip()
    if not raw:
        raise TargetError("empty target")
    if raw.lower() == LOCAL:
        return LOCAL
    if "/" in raw:
        try:
            network = ipaddress.ip_network(raw, strict=False)
        except ValueError as exc:
            raise TargetError(f"{raw!r} is not a CIDR block: {exc}") from None
        if not isinstance(network, ipaddress.IPv4Network):
            raise TargetError(f"{raw!r}: IPv6 blocks are not swept")
        start, end = _block(network)
    elif "-" in raw and raw.replace("-", "").replace(".", "").isdigit():
        left, _, right = raw.partition("-")
        start = int(_address(left))
        if "." in right:
            end = int(_address(right))
        else:
            # "192.0.2.10-20": the last octet only
            if not right.isdigit() or int(right) > 255:
                raise TargetError(f"{raw!r}: range end must be an address or a last octet")
            end = (start & ~0xFF) | int(right)
        if end < start:
            raise TargetError(f"{raw!r}: range ends before it starts")
    else:
        try:
            start = end = int(_address(raw))
        except TargetError:
            try:
                host = check_host(raw)
            except ValueError:
                raise TargetError(
                    f"{raw[:60]!r} is not a CIDR block, a-b range, IPv4 address or DNS name"
                ) from None
            if ":" in host:
                raise TargetError(
                    f"{raw!r}: IPv6 is not swept (SNMP agents are probed over IPv4)"
                ) from None
            return host
    _check_usable(start, end, raw)
    return start, end


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, non-overlapping intervals covering the same addresses (adjacent ones joined)."""
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((a, b) for a, b in merged)


def parse_targets(
    targets: Sequence[str], *, max_addresses: int = DEFAULT_MAX_ADDRESSES
) -> ParsedTargets:
    """All targets parsed and merged; TargetError for a bad one or a sweep over max_addresses."""
    if not targets:
        raise TargetError("no targets given")
    intervals: list[tuple[int, int]] = []
    names: list[str] = []
    local = False
    for text in targets:
        parsed = parse_target(text)
        if parsed == LOCAL:
            local = True
        elif isinstance(parsed, str):
            names.append(parsed)
        else:
            intervals.append(parsed)
    result = ParsedTargets(merge_intervals(intervals), tuple(dict.fromkeys(names)), local)
    if result.total > max_addresses:
        raise TargetError(
            f"{result.total} addresses is more than the limit of {max_addresses}: "
            "sweep smaller blocks or raise the limit"
        )
    return result


def with_addresses(
    parsed: ParsedTargets, extra: Iterable[tuple[int, int]], *, max_addresses: int
) -> ParsedTargets:
    """The targets with more intervals added (resolved names, local subnets), merged again."""
    result = ParsedTargets(merge_intervals([*parsed.intervals, *extra]), (), False)
    if result.total > max_addresses:
        raise TargetError(f"{result.total} addresses is more than the limit of {max_addresses}")
    return result


def iter_addresses(intervals: Iterable[tuple[int, int]]) -> Iterator[str]:
    """Every address of the intervals in order, as dotted quads, one at a time."""
    for start, end in intervals:
        for value in range(start, end + 1):
            yield f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
