"""Secrets sealed at rest and on the bus: Fernet with a key from settings, old keys kept for rotation.

A sealed value is a string `tw-sealed:1:<Fernet token>`, so it travels in the JSON of events, KV
values and database rows where the plaintext used to be, and a reader tells sealed from legacy
plaintext by its prefix. The key is TONERWATCH_SECRET_KEY (any random string of 32 characters or
more; it is stretched to a Fernet key with SHA-256); keys it replaced go in
TONERWATCH_PREVIOUS_SECRET_KEYS, so values sealed with them still open until they are sealed
again with the current key (the api does that at start). Only the processes that need a secret
in the clear (the poller and discovery for SNMP) open it, just before use.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.settings import CommonSettings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

PREFIX = "tw-sealed:1:"
MIN_KEY_CHARS = 32
# The community every agent answers by default is no secret: it stays readable, as the API shows it.
DEFAULT_COMMUNITY = "public"


class SealingError(Exception):
    """A sealed value cannot be opened (no key, or a key it was not sealed with); says what to set."""


def generate_key() -> str:
    """Return a new random secret key (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def _fernet(key: str) -> Fernet:
    # cryptography is imported at the first seal or open, not with this module: its Rust extension
    # (OpenSSL inside) is ~4-6 MB of a process, and `up` on the defaults ("public") opens nothing.
    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def is_sealed(value: object) -> bool:
    """Return whether value is a sealed string."""
    return isinstance(value, str) and value.startswith(PREFIX)


class Sealer:
    """Seals and opens secrets with the current key; opens with the previous keys too."""

    def __init__(self, key: str | None, previous: Sequence[str] = ()) -> None:
        for candidate in (key, *previous):
            if candidate is not None and len(candidate) < MIN_KEY_CHARS:
                raise ValueError(
                    f"a secret key needs at least {MIN_KEY_CHARS} random characters "
                    "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        self._key = key or None
        self._previous = [k for k in previous if k and k != key]
        self._ciphers: tuple[Fernet | None, MultiFernet | None] | None = None

    def _fernets(self) -> tuple[Fernet | None, MultiFernet | None]:
        """Return (the current key's Fernet, every key's MultiFernet), built at the first use."""
        if self._ciphers is None:
            from cryptography.fernet import MultiFernet

            current = _fernet(self._key) if self._key else None
            everyone = ([current] if current else []) + [_fernet(k) for k in self._previous]
            self._ciphers = (current, MultiFernet(everyone) if everyone else None)
        return self._ciphers

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> Sealer:
        """Return the sealer of TONERWATCH_SECRET_KEY and TONERWATCH_PREVIOUS_SECRET_KEYS."""
        return cls(settings.secret_key, settings.previous_secret_keys)

    @property
    def enabled(self) -> bool:
        """Return whether there is a key to seal with (without one, secrets stay as they are)."""
        return self._key is not None

    def seal(self, plaintext: str) -> str:
        """Return plaintext sealed with the current key (a sealed value, or no key: unchanged)."""
        if self._key is None or is_sealed(plaintext):
            return plaintext
        current, _ = self._fernets()
        assert current is not None, "a key gives a current Fernet"
        return PREFIX + current.encrypt(plaintext.encode()).decode()

    def open(self, value: str) -> str:
        """Return the plaintext of a sealed value (plaintext is returned as it is).

        Raises SealingError when it was sealed and no key given (current or previous) opens it.
        """
        if not is_sealed(value):
            return value
        _, everyone = self._fernets()
        if everyone is None:
            raise SealingError(
                "a secret is sealed but TONERWATCH_SECRET_KEY is not set: give this service "
                "the key the api seals with"
            )
        from cryptography.fernet import InvalidToken

        try:
            return everyone.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SealingError(
                "a secret was sealed with a key that is neither TONERWATCH_SECRET_KEY nor one of "
                "TONERWATCH_PREVIOUS_SECRET_KEYS: set the key it was sealed with (or put the "
                "old one in TONERWATCH_PREVIOUS_SECRET_KEYS)"
            ) from None

    def is_current(self, value: str) -> bool:
        """Return whether value is as this sealer would store it (sealed with the current key)."""
        if self._key is None:
            return True
        if not is_sealed(value):
            return False
        current, _ = self._fernets()
        assert current is not None, "a key gives a current Fernet"
        from cryptography.fernet import InvalidToken

        try:
            current.decrypt(value[len(PREFIX) :].encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, value: str) -> str:
        """Return value sealed with the current key (plaintext sealed, an old key's value rotated)."""
        if self.is_current(value):
            return value
        return self.seal(self.open(value))


def _secret_fields(creds: SnmpCredentials) -> dict[str, str]:
    fields = {}
    if creds.community != DEFAULT_COMMUNITY:
        fields["community"] = creds.community
    if creds.auth_key is not None:
        fields["auth_key"] = creds.auth_key
    if creds.priv_key is not None:
        fields["priv_key"] = creds.priv_key
    return fields


def seal_credentials(sealer: Sealer, creds: SnmpCredentials) -> SnmpCredentials:
    """Return SNMP credentials with their secrets (a community other than public, v3 keys) sealed."""
    return creds.model_copy(update={k: sealer.seal(v) for k, v in _secret_fields(creds).items()})


def open_credentials(sealer: Sealer, creds: SnmpCredentials) -> SnmpCredentials:
    """Return SNMP credentials with their secrets in the clear, for the one request that needs them.

    Credentials with nothing sealed are returned as they are (the same object: no copy per poll).
    """
    hidden = _secret_fields(creds)
    if not any(is_sealed(v) for v in hidden.values()):
        return creds
    return creds.model_copy(update={k: sealer.open(v) for k, v in hidden.items()})


def _sealed_default_community(sealer: Sealer, creds: SnmpCredentials) -> bool:
    """Return whether creds hold the default community sealed (a writer that sealed everything).

    "public" is no secret and stays readable, so the API can say "the default community"; a sealed
    one would read as a community of the user's own. A value this sealer cannot open is left be.
    """
    if not sealer.enabled or not is_sealed(creds.community):
        return False
    try:
        return sealer.open(creds.community) == DEFAULT_COMMUNITY
    except SealingError:
        return False


def reseal_credentials(sealer: Sealer, creds: SnmpCredentials) -> SnmpCredentials:
    """Return SNMP credentials with every secret sealed with the current key ("public" in the clear)."""
    if _sealed_default_community(sealer, creds):
        creds = creds.model_copy(update={"community": DEFAULT_COMMUNITY})
    return creds.model_copy(update={k: sealer.reseal(v) for k, v in _secret_fields(creds).items()})


def credentials_are_current(sealer: Sealer, creds: SnmpCredentials) -> bool:
    """Return whether creds are as stored: every secret sealed with the current key, "public" clear.

    No key: always.
    """
    if _sealed_default_community(sealer, creds):
        return False
    return all(sealer.is_current(v) for v in _secret_fields(creds).values())
