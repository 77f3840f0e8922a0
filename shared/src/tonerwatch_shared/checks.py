"""Input refused at the door, the same way in the api, the CLI and discovery (pure, no DNS lookup).

Each check raises ValueError (a TargetError for targets) whose message names the field and says why,
so a pydantic validator turns it into a 422 naming the field and the CLI prints it as one line.
Nothing here resolves a name or sends a packet: a plausible host name is checked by its shape only.
Stored data is never run through these checks on the way out (an old row that fails them still reads).
"""

from __future__ import annotations

from collections.abc import Sequence

from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.targets import (
    DEFAULT_MAX_ADDRESSES,
    MAX_HOST,
    TargetError,
    check_host,
    parse_targets,
)

__all__ = [
    "MIN_SNMP_KEY",
    "TargetError",
    "check_credentials",
    "check_host",
    "check_sweep_targets",
    "credential_problems",
]

MIN_SNMP_KEY = 8
"""SNMPv3 auth and privacy pass phrases are at least 8 characters (RFC 3414 key localisation)."""
MAX_SNMP_KEY = 255
MAX_SNMP_USER = 32
"""A USM user name is at most 32 octets (SnmpAdminString of RFC 3411)."""
MAX_COMMUNITY = 255


def credential_problems(creds: SnmpCredentials) -> list[tuple[str, str]]:
    """Return (field, why) for each thing wrong with SNMP credentials; empty when they will work."""
    problems: list[tuple[str, str]] = []
    if len(creds.community) > MAX_COMMUNITY:
        problems.append(("community", f"is at most {MAX_COMMUNITY} characters"))
    if creds.version != "3":
        return problems
    if not creds.user:
        problems.append(("user", "SNMPv3 needs a user name"))
    elif len(creds.user) > MAX_SNMP_USER:
        problems.append(("user", f"an SNMPv3 user name is at most {MAX_SNMP_USER} characters"))
    for key, protocol, what in (
        ("auth_key", creds.auth_protocol, "auth_protocol"),
        ("priv_key", creds.priv_protocol, "priv_protocol"),
    ):
        value: str | None = getattr(creds, key)
        if protocol and not value:
            problems.append((key, f"{what} {protocol} needs a key"))
        elif value is not None and len(value) < MIN_SNMP_KEY:
            problems.append(
                (key, f"an SNMPv3 key is at least {MIN_SNMP_KEY} characters (got {len(value)})")
            )
        elif value is not None and len(value) > MAX_SNMP_KEY:
            problems.append((key, f"an SNMPv3 key is at most {MAX_SNMP_KEY} characters"))
    if creds.priv_protocol and not creds.auth_protocol:
        problems.append(("priv_protocol", "SNMPv3 privacy needs authentication (auth_protocol)"))
    return problems


def check_credentials(creds: SnmpCredentials) -> SnmpCredentials:
    """Return creds unchanged; ValueError naming each bad field ("auth_key: ...") otherwise."""
    problems = credential_problems(creds)
    if problems:
        raise ValueError("; ".join(f"{field}: {why}" for field, why in problems))
    return creds


def check_sweep_targets(
    targets: Sequence[str], *, max_addresses: int = DEFAULT_MAX_ADDRESSES
) -> list[str]:
    """Return the targets stripped; TargetError if one is not a CIDR block, range, address or name,
    or if together they hold more than max_addresses (`/33` and `0.0.0.0/0` are refused).

    Names are checked by shape only (not resolved), so their addresses count later, at sweep time.
    """
    out = [t.strip() for t in targets if t.strip()]
    if not out:
        raise TargetError("give at least one address, range, CIDR block or name")
    for t in out:
        if len(t) > MAX_HOST:
            raise TargetError(f"{t[:60]!r}… is longer than {MAX_HOST} characters")
    parse_targets(out, max_addresses=max_addresses)
    return out
