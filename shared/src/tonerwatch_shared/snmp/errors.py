"""Errors raised by the SNMP clients, and the per-operation I/O counters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

ERROR_STATUS_NAMES = {
    1: "tooBig",
    2: "noSuchName",
    3: "badValue",
    4: "readOnly",
    5: "genErr",
    6: "noAccess",
    16: "authorizationError",
}


class SnmpError(Exception):
    """Any failure to read from an SNMP agent; kind names it for people (tonerwatch_shared.failures)."""

    kind: str = "error"


class SnmpTimeoutError(SnmpError, TimeoutError):
    """The agent did not answer within timeout x (retries + 1)."""

    kind = "timeout"


class SnmpProtocolError(SnmpError):
    """The agent answered with something that is not a valid response to the request."""

    kind = "protocol"


class SnmpAccessError(SnmpError):
    """The agent (or our engine, before sending) refused the credentials: an SNMPv3 report
    (usmStatsWrongDigests, UnknownUserNames, DecryptionErrors, UnknownEngineIDs, ...) or a key
    pysnmp cannot use. kind says which (a tonerwatch_shared.failures kind)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class SnmpResponseError(SnmpError):
    """The agent answered with a non-zero error-status."""

    kind = "error_status"

    def __init__(self, target: str, status: int, index: int, oid: str | None) -> None:
        self.status = status
        self.index = index
        self.oid = oid
        name = ERROR_STATUS_NAMES.get(status, str(status))
        super().__init__(f"{target}: {name} at varbind {index}" + (f" ({oid})" if oid else ""))


@dataclass
class IoStats:
    """What an operation cost on the wire: SNMP payload bytes, request messages, round trips."""

    requests: int = 0
    retries: int = 0
    responses: int = 0
    round_trips: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def add(self, other: IoStats) -> None:
        """Adds another operation's counters to these."""
        self.requests += other.requests
        self.retries += other.retries
        self.responses += other.responses
        self.round_trips += other.round_trips
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received


async def gather_or_cancel(*aws: Awaitable[T]) -> list[T]:
    """Return the results of concurrent requests; if one fails, cancel the rest before raising its error."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        # A timed-out sibling must not linger and fail later on a closed client.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
