"""A test CA and a 127.0.0.1 server certificate (PEM files) for the portal over HTTPS."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from tonerwatch_shared.testing.tls import make_tls as make_pki


@dataclass(frozen=True)
class Tls:
    """A test CA and a server certificate for 127.0.0.1 it signed (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """Return a server-side context presenting the 127.0.0.1 certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def make_tls(directory: Path) -> Tls:
    """Write a fresh CA and a 127.0.0.1 server certificate into directory (the shared test PKI)."""
    hub = make_pki(directory, ["hub"])["hub"]
    return Tls(hub.ca, hub.cert, hub.key)
