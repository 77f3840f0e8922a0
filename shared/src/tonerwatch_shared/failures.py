"""Why a poll failed, in words a person can act on: a table of known failure kinds (pure).

The poller names each failed poll by a kind (PrinterUnreachable.failure); the api shows it on the
printer's page and the alerter puts the words in its alert. A kind marked `definitive` will not mend
by retrying (wrong key, unknown user, an address that is no address): the poller reports it at the
first failure instead of after `unreachable_after` polls in a row.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from tonerwatch_shared.ipp import IppError
from tonerwatch_shared.sealing import SealingError
from tonerwatch_shared.snmp.errors import SnmpError


@dataclass(frozen=True, slots=True)
class FailureKind:
    """One known reason a poll fails."""

    kind: str
    summary: str
    definitive: bool
    credentials: bool = False
    """True when the fix is the printer's SNMP access (the alert and page say so)."""


KINDS: dict[str, FailureKind] = {
    k.kind: k
    for k in (
        FailureKind("bad_address", "the address is neither an IP address nor a host name", True),
        FailureKind("bad_credentials", "the SNMP credentials cannot be used", True, True),
        FailureKind(
            "auth_failed",
            "the printer refused our SNMPv3 authentication (wrong auth key or protocol)",
            True,
            True,
        ),
        FailureKind("unknown_user", "the printer does not know this SNMPv3 user", True, True),
        FailureKind(
            "priv_failed",
            "the printer could not decrypt our request (wrong privacy key or protocol)",
            True,
            True,
        ),
        FailureKind(
            "unsupported_security",
            "the printer does not support this SNMPv3 security level or protocol",
            True,
            True,
        ),
        FailureKind(
            "unknown_engine_id", "the printer's SNMPv3 engine id could not be learned", True, True
        ),
        FailureKind(
            "not_in_time_window", "the printer's SNMPv3 clock window refused our request", False
        ),
        FailureKind(
            "sealing",
            "the stored credentials cannot be opened with this process's secret key",
            True,
            True,
        ),
        FailureKind(
            "timeout",
            "no answer: the printer is off or unreachable, or SNMP is off, or (SNMPv1/v2c) the "
            "community is wrong — agents ignore a wrong community silently",
            False,
        ),
        FailureKind("refused", "the printer refused the connection", False),
        FailureKind("unresolvable", "the host name does not resolve", False),
        FailureKind("error_status", "the printer answered with an SNMP error", False),
        FailureKind("protocol", "the printer's answer was not valid SNMP", False),
        FailureKind("ipp", "the printer's IPP answer was an error", False),
        FailureKind("error", "the poll failed", False),
    )
}


@dataclass(frozen=True, slots=True)
class PollFailure:
    """A failed poll, named: its kind (a KINDS key) and the reason shown to people."""

    kind: str
    reason: str

    @property
    def definitive(self) -> bool:
        """True when retrying will not mend it (report at once)."""
        return KINDS[self.kind].definitive

    @property
    def credentials(self) -> bool:
        """True when the printer's SNMP access needs changing."""
        return KINDS[self.kind].credentials


def kind_of(exc: BaseException) -> str:
    """Return the failure kind of an exception a poll raised."""
    if isinstance(exc, SnmpError):
        return exc.kind if exc.kind in KINDS else "error"
    if isinstance(exc, SealingError):
        return "sealing"
    if isinstance(exc, IppError):
        return "ipp"
    if isinstance(exc, socket.gaierror):
        return "unresolvable"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "error"


def describe(exc: BaseException, kind: str | None = None) -> PollFailure:
    """Return the named failure of exc ("summary (detail)"); kind overrides the exception's."""
    k = kind or kind_of(exc)
    detail = str(exc) or type(exc).__name__
    return PollFailure(k, f"{KINDS[k].summary} ({detail})"[:500])


def summary(kind: str | None) -> str | None:
    """Return the words for a kind (None for None or a kind this version does not know)."""
    known = KINDS.get(kind) if kind else None
    return known.summary if known else None
