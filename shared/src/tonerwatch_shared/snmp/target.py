"""Where and how to reach one SNMP agent; secrets stay out of repr and logs."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

SnmpVersion = Literal["1", "2c", "3"]
AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "3DES", "AES", "AES128", "AES192", "AES256"]


@dataclass(frozen=True, slots=True)
class SnmpTarget:
    """One agent: address, version and credentials (community and keys hidden from repr)."""

    host: str
    port: int = 161
    version: SnmpVersion = "2c"
    community: str = field(default="public", repr=False)
    user: str | None = None
    auth_protocol: AuthProtocol | None = None
    auth_key: str | None = field(default=None, repr=False)
    priv_protocol: PrivProtocol | None = None
    priv_key: str | None = field(default=None, repr=False)
    timeout: float = 2.0
    retries: int = 1

    def __post_init__(self) -> None:
        if self.version not in ("1", "2c", "3"):
            raise ValueError(f"unknown SNMP version {self.version!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"bad port {self.port}")
        if self.timeout <= 0 or self.retries < 0:
            raise ValueError("timeout must be > 0 and retries >= 0")
        if self.version == "3":
            if not self.user:
                raise ValueError("SNMPv3 needs a user")
            if self.priv_protocol and not self.auth_protocol:
                raise ValueError("SNMPv3 privacy needs authentication")
            if self.auth_protocol and not self.auth_key:
                raise ValueError("SNMPv3 auth protocol given without a key")
            if self.priv_protocol and not self.priv_key:
                raise ValueError("SNMPv3 priv protocol given without a key")

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) pair."""
        return (self.host, self.port)

    @property
    def is_ip_literal(self) -> bool:
        """True when host is an IP address rather than a name."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (SNMPv{self.version})"
