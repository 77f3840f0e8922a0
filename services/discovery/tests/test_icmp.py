"""The ICMP echo pre-pass: encoding (pure), the not-permitted error, sweeps on loopback and in a netns."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tonerwatch.discover import sweep_command
from tonerwatch_discovery import icmp
from tonerwatch_discovery.icmp import (
    IcmpNotPermittedError,
    checksum,
    echo_reply_identifier,
    echo_request,
)
from tonerwatch_discovery.sweep import Sweep, SweepConfig

NETNS_SCRIPT = Path(__file__).with_name("_netns_icmp.py")


def test_echo_request_is_8_bytes_with_a_valid_checksum() -> None:
    message = echo_request(0x1234, 7)
    assert message[:2] == b"\x08\x00" and len(message) == 8
    assert message[4:] == b"\x12\x34\x00\x07"
    assert checksum(message) == 0  # RFC 1071: a message with its checksum in sums to zero


def test_checksum_of_the_rfc_1071_example() -> None:
    # RFC 1071 section 3: the one's complement sum of 0001 f203 f4f5 f6f7 is ddf2.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == ~0xDDF2 & 0xFFFF


def test_reply_identifier_with_and_without_the_ip_header() -> None:
    reply = b"\x00\x00" + echo_request(0xBEEF, 1)[2:]
    ip_header = bytes([0x45]) + bytes(19)
    assert echo_reply_identifier(reply, ip_header=False) == 0xBEEF
    assert echo_reply_identifier(ip_header + reply, ip_header=True) == 0xBEEF
    # Raw sockets see the echo requests too (our own on loopback): not replies.
    assert echo_reply_identifier(ip_header + echo_request(0xBEEF, 1), ip_header=True) is None
    assert echo_reply_identifier(b"\x00\x00", ip_header=False) is None


@pytest.fixture
def no_icmp_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that may open neither ICMP socket (no root, ping_group_range excludes it)."""

    def refuse(kind: str) -> socket.socket:
        raise PermissionError(
            13, "Permission denied" if kind == "raw" else "Operation not permitted"
        )

    monkeypatch.setattr(icmp, "_open", refuse)


@pytest.mark.usefixtures("no_icmp_sockets")
async def test_prepass_without_permission_says_what_is_needed() -> None:
    config = SweepConfig(targets=["127.0.0.1"], port=9, icmp_prepass=True)
    with pytest.raises(IcmpNotPermittedError) as info:
        await Sweep(config).run()
    text = str(info.value)
    assert "CAP_NET_RAW" in text and "net.ipv4.ping_group_range" in text
    assert "dgram: Operation not permitted" in text and "raw: Permission denied" in text


@pytest.mark.usefixtures("no_icmp_sockets")
async def test_discover_command_with_prepass_refused_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()
    code = await sweep_command(
        ["127.0.0.1"], ["public"], 100.0, None, 0.2, False, out=out, port=9, icmp_prepass=True
    )
    assert code == 2 and "pre-pass is not permitted" in capsys.readouterr().err


def _netns_available() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    return None if probe.returncode == 0 else f"unshare -n refused: {probe.stderr.decode()[:200]}"


def test_ping_deaf_printer_is_skipped_by_the_prepass_in_a_netns(printer_walks_dir: Path) -> None:
    reason = _netns_available()
    if reason is not None:
        pytest.skip(f"needs a network namespace of its own (root): {reason}")
    done = subprocess.run(
        ["unshare", "-n", sys.executable, str(NETNS_SCRIPT), str(printer_walks_dir)],
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
    # The unprivileged datagram socket (ping_group_range set in that namespace) finds the printer.
    answering = figures["answering"]
    assert answering["printers"] == ["127.0.0.10"] and answering["echo_replies"] == 14
    # With ping ignored, the pre-pass skips the printer: why it is off by default ...
    deaf = figures["deaf_prepass"]
    assert deaf["printers"] == [] and deaf["echo_replies"] == 0 and deaf["live"] == 0
    assert deaf["bytes_per_silent_address"] == 8  # ... but a silent address costs one echo only
    assert figures["deaf_no_prepass"]["printers"] == ["127.0.0.10"]
