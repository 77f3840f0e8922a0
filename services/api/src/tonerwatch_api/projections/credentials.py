"""Credentials a discovery sweep found, as stored beside a user's own (never overwriting them)."""

from __future__ import annotations

from typing import Any

from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.sealing import Sealer, SealingError, open_credentials

FROM_DISCOVERY = "from_discovery"  # marks stored credentials a sweep found (not a user's)


def discovered_credentials(credentials: SnmpCredentials) -> dict[str, Any]:
    """Return credentials a sweep found, as stored: marked so a user's own are never overwritten."""
    return {**credentials.model_dump(), FROM_DISCOVERY: True}


def same_credentials(sealer: Sealer, stored: dict[str, Any], found: dict[str, Any]) -> bool:
    """Return whether two stored credential sets say the same in the clear (sealing differs each time)."""
    try:
        return open_credentials(sealer, SnmpCredentials.model_validate(stored)) == open_credentials(
            sealer, SnmpCredentials.model_validate(found)
        )
    except SealingError:
        return False  # sealed with a key we lack: take what the sweep found
