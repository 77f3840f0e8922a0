"""The optional ICMP echo pre-pass: echo requests from one socket, replies matched by source address.

Two kinds of socket may send an echo: an unprivileged ICMP datagram socket (Linux, when the
process's group is inside sysctl net.ipv4.ping_group_range; the kernel sets the identifier and
hands this socket only its own replies, without the IP header), else a raw ICMP socket (root or
CAP_NET_RAW; it sees every ICMP packet with its IP header, so replies are filtered by identifier).
When neither is permitted the pre-pass cannot run and IcmpNotPermittedError says why.

Encoding and decoding are pure; IcmpEcho is the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Literal

ECHO_REPLY = 0
ECHO_REQUEST = 8
SocketKind = Literal["dgram", "raw"]
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_READ_SIZE = 2048
_READS_PER_WAKE = 512  # bounds one reader callback, so a reply flood cannot starve the loop


class IcmpNotPermittedError(OSError):
    """Neither an unprivileged ICMP socket nor a raw one may be opened by this process."""


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(identifier: int, sequence: int) -> bytes:
    """An 8-byte ICMP echo request without payload (the smallest Linux and printers answer)."""
    header = _HEADER.pack(ECHO_REQUEST, 0, 0, identifier & 0xFFFF, sequence & 0xFFFF)
    return _HEADER.pack(ECHO_REQUEST, 0, checksum(header), identifier & 0xFFFF, sequence & 0xFFFF)


def echo_reply_identifier(data: bytes, *, ip_header: bool) -> int | None:
    """The identifier of an ICMP echo reply (after the IP header if present); None for anything else."""
    offset = 0
    if ip_header:
        if not data or data[0] >> 4 != 4:
            return None
        offset = (data[0] & 0x0F) * 4
    if len(data) < offset + _HEADER.size:
        return None
    kind, code, _sum, identifier, _seq = _HEADER.unpack_from(data, offset)
    return identifier if kind == ECHO_REPLY and code == 0 else None


def _open(kind: SocketKind) -> socket.socket:
    sock_type = socket.SOCK_DGRAM if kind == "dgram" else socket.SOCK_RAW
    return socket.socket(socket.AF_INET, sock_type, socket.IPPROTO_ICMP)


def open_echo_socket(
    kinds: tuple[SocketKind, ...] = ("dgram", "raw"),
) -> tuple[socket.socket, SocketKind]:
    """The first ICMP socket this process may open (unprivileged first); IcmpNotPermittedError if none."""
    reasons: list[str] = []
    for kind in kinds:
        try:
            return _open(kind), kind
        except PermissionError as exc:
            reasons.append(f"{kind}: {exc.strerror or exc}")
        except OSError as exc:  # e.g. EPROTONOSUPPORT where the kernel has no ping sockets
            reasons.append(f"{kind}: {exc.strerror or exc}")
    groups = " ".join(str(g) for g in sorted({os.getgid(), *os.getgroups()}))
    raise IcmpNotPermittedError(
        "the ICMP echo pre-pass is not permitted for this process: it needs root or CAP_NET_RAW "
        "(raw ICMP socket), or one of its groups "
        f"({groups}) inside sysctl net.ipv4.ping_group_range (unprivileged ICMP socket); "
        f"{'; '.join(reasons)}. Run the sweep without the pre-pass (every address gets the SNMP probe)."
    )


class IcmpEcho:
    """Sends echo requests and reports (source address, ICMP bytes) for every echo reply of ours."""

    def __init__(
        self,
        on_reply: Callable[[str, int], None],
        kinds: tuple[SocketKind, ...] = ("dgram", "raw"),
    ) -> None:
        self._sock, self.kind = open_echo_socket(kinds)
        self._sock.setblocking(False)
        self._on_reply = on_reply
        # Raw sockets see every ICMP packet on the host: our identifier tells our replies apart.
        # A datagram socket's identifier is set by the kernel, which routes the replies for us.
        self._identifier = os.getpid() & 0xFFFF
        self._sequence = 0
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._read)
        self.dropped = 0

    def send(self, address: str) -> int:
        """Sends one echo request to address; the bytes sent (0 when the kernel refused it)."""
        self._sequence = (self._sequence + 1) & 0xFFFF
        message = echo_request(self._identifier, self._sequence)
        try:
            self._sock.sendto(message, (address, 0))
        except (BlockingIOError, InterruptedError):
            self.dropped += 1  # send buffer full: the address times out like a silent one
            return 0
        except OSError:
            self.dropped += 1  # e.g. no route: silent too
            return 0
        return len(message)

    def _read(self) -> None:
        raw = self.kind == "raw"
        for _ in range(_READS_PER_WAKE):
            try:
                data, addr = self._sock.recvfrom(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            identifier = echo_reply_identifier(data, ip_header=raw)
            if identifier is None or (raw and identifier != self._identifier):
                continue
            size = len(data) - ((data[0] & 0x0F) * 4 if raw else 0)
            self._on_reply(str(addr[0]), size)

    def close(self) -> None:
        """Stops reading and closes the socket."""
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


__all__ = [
    "IcmpEcho",
    "IcmpNotPermittedError",
    "checksum",
    "echo_reply_identifier",
    "echo_request",
    "open_echo_socket",
]
