"""Get-Printer-Attributes against CUPS' ippeveprinter on loopback, and the client's failure modes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tonerwatch_shared.ipp import (
    IppConnectionError,
    IppConnectionRefused,
    IppNotAPrinter,
    IppResponseTooLarge,
    IppStatusError,
    IppTimeout,
    fetch_printer_attributes,
    get_printer_attributes,
    parse_ipp_attributes,
)
from tonerwatch_shared.printer.model import SupplyClass, SupplyKind, SupplyState
from tonerwatch_shared.testing.ippeve import IppEvePrinter, Marker, ippeveprinter, missing_tools

COLOUR_LASER_MARKERS = (
    Marker("Black Toner", "toner", "#000000", 7, low=10),
    Marker("Cyan Toner", "toner", "#00FFFF", -3),
    Marker("Magenta Toner", "toner", "#FF00FF", 0),
    Marker("Yellow Toner", "toner", "#FFFF00", 64),
    Marker("Waste Toner Box", "waste-toner", "none", 92, low=0, high=90),
    Marker("Fuser", "fuser", "none", 55, low=5),
)


def _need_ippeveprinter() -> None:
    missing = missing_tools()
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install cups-ipp-utils dbus-daemon)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def colour_laser() -> AsyncIterator[IppEvePrinter]:
    _need_ippeveprinter()
    async with ippeveprinter(
        COLOUR_LASER_MARKERS,
        ["toner-low", "toner-empty", "media-jam"],
        make_and_model="Acme ColorLaser 9000",
        device_id="MFG:Acme;MDL:ColorLaser 9000;CMD:PWG;SN:ACM0001;",
        firmware="4.2.0",
        location="Lab 3",
    ) as printer:
        yield printer


async def test_ippeveprinter_colour_laser_supplies_end_to_end(colour_laser: IppEvePrinter) -> None:
    attrs = await get_printer_attributes(colour_laser.host, colour_laser.port, timeout=5)
    snapshot = parse_ipp_attributes(attrs)
    got = {s.description: (s.kind, s.colour, s.percent, s.state) for s in snapshot.supplies}
    assert got == {
        "Black Toner": (SupplyKind.TONER, "black", 7.0, SupplyState.LOW),
        "Cyan Toner": (SupplyKind.TONER, "cyan", None, SupplyState.SOME_REMAINING),
        "Magenta Toner": (SupplyKind.TONER, "magenta", 0.0, SupplyState.EMPTY),
        "Yellow Toner": (SupplyKind.TONER, "yellow", 64.0, SupplyState.OK),
        "Waste Toner Box": (SupplyKind.WASTE_TONER, None, 8.0, SupplyState.ALMOST_FULL),
        "Fuser": (SupplyKind.FUSER, None, 55.0, SupplyState.OK),
    }
    waste = next(s for s in snapshot.supplies if s.kind is SupplyKind.WASTE_TONER)
    assert waste.supply_class is SupplyClass.RECEPTACLE and waste.level == 92
    assert [s.index for s in snapshot.supplies] == [f"ipp.{n}" for n in range(1, 7)]
    assert snapshot.missing == ()


async def test_ippeveprinter_state_reasons_become_printer_mib_errors(
    colour_laser: IppEvePrinter,
) -> None:
    status = parse_ipp_attributes(
        await get_printer_attributes(colour_laser.host, colour_laser.port, timeout=5)
    ).status
    assert status.printer_status == "idle"
    assert set(status.errors) == {"low_toner", "no_toner", "jammed"}
    # ippeveprinter suffixes reasons "-report" while idle.
    assert {(a.code, a.severity) for a in status.alerts} == {
        ("toner-low", "info"),
        ("toner-empty", "info"),
        ("media-jam", "info"),
    }


async def test_ippeveprinter_identity(colour_laser: IppEvePrinter) -> None:
    printer = parse_ipp_attributes(
        await get_printer_attributes(colour_laser.host, colour_laser.port, timeout=5)
    ).printer
    assert (printer.vendor, printer.model, printer.serial) == ("Acme", "ColorLaser 9000", "ACM0001")
    assert (printer.firmware, printer.sys_location) == ("4.2.0", "Lab 3")
    assert printer.uuid is not None and printer.uuid.startswith("urn:uuid:")


async def test_ippeveprinter_exchange_counts_bytes_and_time(colour_laser: IppEvePrinter) -> None:
    exchange = await fetch_printer_attributes(colour_laser.host, colour_laser.port, timeout=5)
    assert exchange.status_code == 0 and exchange.ipp_version == (2, 0)
    # The request names 20 attributes (~600 bytes); the answer carries the marker arrays.
    assert 300 < exchange.bytes_sent < 2000
    assert exchange.bytes_received > exchange.bytes_sent
    assert 0 < exchange.elapsed_s < 5


async def test_ippeveprinter_ipps_with_self_signed_certificate(colour_laser: IppEvePrinter) -> None:
    attrs = await get_printer_attributes(
        colour_laser.host, colour_laser.port, tls=True, verify=False, timeout=5
    )
    assert parse_ipp_attributes(attrs).supplies[0].percent == 7.0
    with pytest.raises(IppConnectionError, match="certificate verify failed"):
        await get_printer_attributes(
            colour_laser.host, colour_laser.port, tls=True, verify=True, timeout=5
        )


async def test_ippeveprinter_wrong_path_is_a_clear_error(colour_laser: IppEvePrinter) -> None:
    with pytest.raises(IppStatusError, match="nothing-here") as caught:
        await get_printer_attributes(
            colour_laser.host, colour_laser.port, path="/ipp/nothing-here", timeout=5
        )
    assert caught.value.status_code == 0x0406  # client-error-not-found


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_reported_as_such() -> None:
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(IppConnectionRefused, match=f"127.0.0.1:{port}"):
        await get_printer_attributes("127.0.0.1", port, timeout=3)
    assert time.monotonic() - started < 2


@contextlib.asynccontextmanager
async def _tcp_server(reply: bytes | None) -> AsyncIterator[int]:
    """Serve loopback: send reply after the request headers, or never answer (reply None)."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            if reply is None:
                held.append(writer)
                return
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_silent_server_times_out_within_the_bound() -> None:
    async with _tcp_server(None) as port:
        started = time.monotonic()
        with pytest.raises(IppTimeout, match=r"within 0\.5 s"):
            await get_printer_attributes("127.0.0.1", port, timeout=0.5)
        assert 0.4 < time.monotonic() - started < 2.0


async def test_web_server_answering_html_is_not_an_ipp_printer() -> None:
    body = b"<!DOCTYPE html><html><body>Router login</body></html>"
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    async with _tcp_server(reply) as port:
        with pytest.raises(IppNotAPrinter, match="not an IPP message"):
            await get_printer_attributes("127.0.0.1", port, timeout=3)


async def test_http_404_is_not_an_ipp_printer() -> None:
    reply = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
    async with _tcp_server(reply) as port:
        with pytest.raises(IppNotAPrinter, match="HTTP 404"):
            await get_printer_attributes("127.0.0.1", port, timeout=3)


async def test_answer_announced_larger_than_the_cap_is_refused_unread() -> None:
    # 250 MB announced: refused on the header, the body never read into memory.
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: 262144000\r\n"
        b"Connection: close\r\n\r\n" + b"\x02\x00" * 1000
    )
    async with _tcp_server(reply) as port:
        with pytest.raises(IppResponseTooLarge, match="announced 262144000 bytes"):
            await get_printer_attributes("127.0.0.1", port, timeout=3)


async def test_chunked_answer_past_the_cap_is_cut_off() -> None:
    # No length announced: read in chunks and abandoned past the cap (here 64 KiB of 4 MiB).
    chunk = b"\x02\x00" * 32768
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(64)) + b"0\r\n\r\n"
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    async with _tcp_server(reply) as port:
        with pytest.raises(IppResponseTooLarge, match="more than 65536 bytes"):
            await fetch_printer_attributes("127.0.0.1", port, timeout=3, max_bytes=65536)
