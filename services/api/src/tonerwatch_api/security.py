"""Passwords (argon2), bearer/session tokens (random, stored as SHA-256) and CSRF tokens (HMAC)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

Role = Literal["provider", "admin", "operator", "viewer"]
# provider: an admin of the provider's own tenant who also manages customer tenants and acts in them.
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin", "provider")
SCOPES = ("read", "write")

_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as for a known one.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """Return the argon2id hash of password."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Return True when password matches password_hash (constant work when the user is unknown)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """Return a fresh random token (256 bits, URL-safe)."""
    return "tw_" + secrets.token_urlsafe(32)


def new_enrolment_token() -> str:
    """Return a fresh one-time enrolment token for a site's collector (256 bits, URL-safe)."""
    return "twe_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_password() -> str:
    """Return a random password that is easy to copy (no look-alike characters)."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(20))


def csrf_token(secret: str, session_hash: str) -> str:
    """Return the CSRF token for forms of one session."""
    return hmac.new(secret.encode(), b"csrf:" + session_hash.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: str, session_hash: str, given: str | None) -> bool:
    """Return True when given is the CSRF token of the session."""
    return bool(given) and hmac.compare_digest(csrf_token(secret, session_hash), given or "")


def role_at_least(role: str, needed: Role) -> bool:
    """Return True when role grants at least what needed grants."""
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(needed)
