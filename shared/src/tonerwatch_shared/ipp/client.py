"""IPP Get-Printer-Attributes over HTTP(S), through pyipp, with explicit timeouts and byte counts."""

from __future__ import annotations

import asyncio
import errno
import ssl
import struct
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

# aiohttp and pyipp are imported when an IPP request is made, not with this module: most
# processes that import it (every service, through tonerwatch_shared.reading) never speak IPP, and
# the two cost ~10 MB each (issue 15).
if TYPE_CHECKING:
    import aiohttp

# What TonerWatch asks for: supplies, state and identity (RFC 8011, PWG 5100.13, CUPS marker-*).
SUPPLY_ATTRIBUTES: tuple[str, ...] = (
    "marker-names",
    "marker-levels",
    "marker-colors",
    "marker-types",
    "marker-low-levels",
    "marker-high-levels",
    "printer-supply",
    "printer-supply-description",
    "printer-state",
    "printer-state-reasons",
    "printer-state-message",
    "printer-make-and-model",
    "printer-device-id",
    "printer-info",
    "printer-location",
    "printer-name",
    "printer-firmware-string-version",
    "printer-uuid",
    "printer-serial-number",
    "printer-up-time",
)

DEFAULT_TIMEOUT = 5.0
# A Get-Printer-Attributes answer is a few kB (ippeveprinter's colour laser: under 4 kB); one of
# 250 MB raised the poller's memory by 480 MB before this cap. Read in chunks, refused past it.
MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK = 64 * 1024
# IPP/1.1 (RFC 8010 3.1.1): version-number major byte is 1 or 2 in every real implementation.
_IPP_MAJOR_VERSIONS = (1, 2)
_SUCCESS_MAX = 0x00FF  # RFC 8011 4.1.6: 0x0000-0x00FF are successful-*


class IppError(Exception):
    """Base of every error get_printer_attributes raises."""


class IppConnectionError(IppError):
    """The printer could not be reached (refused, reset, unreachable, TLS failure)."""


class IppConnectionRefused(IppConnectionError):
    """Nothing listens on the port (TCP RST)."""


class IppTimeout(IppError):
    """No complete answer within the timeout."""


class IppNotAPrinter(IppError):
    """Something answered, but not with an IPP response (HTTP error, HTML, garbage)."""


class IppResponseTooLarge(IppNotAPrinter):
    """The answer was longer than max_bytes: not read further."""


class IppStatusError(IppError):
    """The printer answered with an IPP error status (client-error-*, server-error-*)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class IppExchange:
    """One Get-Printer-Attributes round trip: the printer group plus what it cost."""

    attributes: dict[str, Any]
    status_code: int
    ipp_version: tuple[int, int]
    bytes_sent: int  # IPP message bytes (HTTP request body)
    bytes_received: int  # IPP message bytes (HTTP response body)
    elapsed_s: float


def _plain(value: Any) -> Any:
    """Return pyipp values as plain Python (its IntEnums as int), lists kept."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, IntEnum):
        return int(value)
    return value


def _ssl_for(tls: bool, verify: bool | ssl.SSLContext) -> bool | ssl.SSLContext:
    """Return the aiohttp ssl argument: False to skip verification (self-signed printers)."""
    if not tls:
        return False
    if isinstance(verify, ssl.SSLContext):
        return verify
    return ssl.create_default_context() if verify else False


def _connection_error(exc: BaseException, where: str, timeout: float) -> IppError:
    """Return the clear error for a pyipp/aiohttp connection failure."""
    import aiohttp

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return IppConnectionRefused(f"connection refused by {where}")
        if isinstance(cause, asyncio.TimeoutError | TimeoutError):
            return IppTimeout(f"no answer from {where} within {timeout:g} s")
        if isinstance(cause, aiohttp.ServerDisconnectedError):
            return IppNotAPrinter(f"{where} closed the connection without an HTTP answer")
        if isinstance(cause, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
            return IppNotAPrinter(f"{where} sent a malformed HTTP answer: {cause}")
        if isinstance(cause, ssl.SSLError | aiohttp.ClientSSLError):
            return IppConnectionError(f"TLS failure with {where}: {cause}")
        cause = cause.__cause__ or cause.__context__
    return IppConnectionError(f"cannot reach {where}: {exc}")


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    ssl_arg: bool | ssl.SSLContext,
    where: str,
    max_bytes: int,
) -> bytes:
    """The HTTP body of one IPP POST, read in chunks and refused past max_bytes."""
    headers = {
        "Content-Type": "application/ipp",
        "Accept": "application/ipp, text/plain, */*",
        "User-Agent": "TonerWatch",
    }
    async with session.post(url, data=body, headers=headers, ssl=ssl_arg) as response:
        if response.status == 426:
            raise IppNotAPrinter(f"{where} demands TLS (HTTP 426); use tls=True")
        if response.status // 100 != 2:
            raise IppNotAPrinter(f"{where} answered HTTP {response.status}, not IPP")
        declared = response.content_length
        if declared is not None and declared > max_bytes:
            raise IppResponseTooLarge(f"{where} announced {declared} bytes (cap {max_bytes})")
        raw = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            raw += chunk
            if len(raw) > max_bytes:
                raise IppResponseTooLarge(f"{where} sent more than {max_bytes} bytes")
        return bytes(raw)


async def fetch_printer_attributes(
    host: str,
    port: int = 631,
    *,
    tls: bool = False,
    path: str = "/ipp/print",
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109  # also bounds connect and body read
    verify: bool | ssl.SSLContext = True,
    requested: tuple[str, ...] = SUPPLY_ATTRIBUTES,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> IppExchange:
    """Return the printer's attributes and the byte/time cost of one Get-Printer-Attributes."""
    import aiohttp
    from pyipp import IPP
    from pyipp.enums import IppOperation
    from pyipp.parser import parse as parse_ipp_message
    from pyipp.serializer import encode_dict
    from yarl import URL

    scheme = "ipps" if tls else "ipp"
    where = f"{scheme}://{host}:{port}{path}"
    started = time.monotonic()
    # pyipp encodes the request and parses the answer; the HTTP exchange is ours, so the body
    # is read with a cap (pyipp reads any length into memory) inside one overall timeout.
    client = IPP(host=host, port=port, base_path=path, tls=tls)
    body = encode_dict(
        client._message(
            IppOperation.GET_PRINTER_ATTRIBUTES,
            {"operation-attributes-tag": {"requested-attributes": list(requested)}},
        )
    )
    url = str(URL.build(scheme="https" if tls else "http", host=host, port=port, path=path))
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout, connect=timeout))
    try:
        async with asyncio.timeout(timeout):
            raw = await _post(session, url, body, _ssl_for(tls, verify), where, max_bytes)
    except TimeoutError as exc:
        raise IppTimeout(f"no answer from {where} within {timeout:g} s") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise _connection_error(exc, where, timeout) from exc
    finally:
        await session.close()
    elapsed = time.monotonic() - started

    if len(raw) < 9 or raw[0] not in _IPP_MAJOR_VERSIONS:
        raise IppNotAPrinter(f"{where} answered {len(raw)} bytes that are not an IPP message")
    try:
        message = parse_ipp_message(raw)
    except (struct.error, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise IppNotAPrinter(f"{where} sent an IPP message that does not parse: {exc!r}") from exc
    status_code = int(message["status-code"])
    if status_code > _SUCCESS_MAX:
        text = (message.get("operation-attributes") or {}).get("status-message", "")
        raise IppStatusError(
            f"{where} refused Get-Printer-Attributes: status 0x{status_code:04x} {text}".strip(),
            status_code,
        )
    printers = message.get("printers") or [{}]
    attributes = {name: _plain(value) for name, value in printers[0].items()}
    return IppExchange(
        attributes=attributes,
        status_code=status_code,
        ipp_version=tuple(message["version"]),
        bytes_sent=len(body),
        bytes_received=len(raw),
        elapsed_s=elapsed,
    )


async def get_printer_attributes(
    host: str,
    port: int = 631,
    *,
    tls: bool = False,
    path: str = "/ipp/print",
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109  # also bounds connect and body read
    verify: bool | ssl.SSLContext = True,
    requested: tuple[str, ...] = SUPPLY_ATTRIBUTES,
) -> dict[str, Any]:
    """Return the printer-attributes group of one Get-Printer-Attributes (values as pyipp gives)."""
    exchange = await fetch_printer_attributes(
        host, port, tls=tls, path=path, timeout=timeout, verify=verify, requested=requested
    )
    return exchange.attributes
