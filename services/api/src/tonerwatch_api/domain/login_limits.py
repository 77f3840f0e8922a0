"""Login limits: failed logins per user and address slow guessing down."""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.db.logins import LoginFailure
from tonerwatch_api.db.tx import run_tx


@dataclass(frozen=True)
class Attempt:
    """A reserved login attempt; retry_after is set (seconds) when it was refused."""

    id: str
    username: str
    ip: str | None
    retry_after: int | None = None


@dataclass
class LoginLimiter:
    """Counts failed logins per username and per client IP across replicas; refuses more at a limit."""

    engine: Engine
    max_per_user: int = 5
    max_per_ip: int = 20  # an office behind one NAT address shares it: more generous
    window_s: float = 900.0
    clock: Callable[[], float] = field(default=time.time)

    async def start(self, username: str, ip: str | None) -> Attempt:
        """Reserve an attempt for username from ip; its retry_after says if it must wait instead."""
        attempt = Attempt(secrets.token_hex(8), username, ip)
        now = self.clock()
        keys = self._keys(username, ip)
        if not keys:
            return attempt

        def reserve(s: Session) -> None:
            s.exec(delete(LoginFailure).where(col(LoginFailure.at) <= now - self.window_s))
            s.add_all(LoginFailure(key=k, at=now, attempt=attempt.id) for k, _ in keys)

        def count(s: Session) -> int | None:
            waits: list[float] = []
            for key, limit in keys:
                rows = s.exec(
                    select(LoginFailure.at, LoginFailure.attempt)
                    .where(LoginFailure.key == key, col(LoginFailure.at) > now - self.window_s)
                    .order_by(col(LoginFailure.at), col(LoginFailure.id))
                ).all()
                if len(rows) <= limit:
                    continue
                before = [at for at, who in rows if who != attempt.id]
                # The oldest failures must leave the window until fewer than `limit` remain.
                waits.append(before[len(before) - limit] + self.window_s - now)
            if not waits:
                return None
            s.exec(delete(LoginFailure).where(col(LoginFailure.attempt) == attempt.id))
            return max(1, math.ceil(max(waits)))

        # Two transactions: the reservation is committed (visible to other replicas) before
        # the count, so two concurrent attempts each see the other.
        await run_tx(self.engine, reserve)
        wait = await run_tx(self.engine, count)
        return Attempt(attempt.id, username, ip, wait)

    async def failed(self, attempt: Attempt) -> None:
        """Keep the attempt's rows: they are its failures for the window."""

    async def succeeded(self, attempt: Attempt) -> None:
        """Forget the username's failures and this attempt's address row (the address keeps the rest)."""
        user_key = self._user_key(attempt.username)

        def forget(s: Session) -> None:
            s.exec(
                delete(LoginFailure).where(
                    (col(LoginFailure.key) == user_key) | (col(LoginFailure.attempt) == attempt.id)
                )
            )

        await run_tx(self.engine, forget)

    def _keys(self, username: str, ip: str | None) -> list[tuple[str, int]]:
        keys = []
        if self.max_per_user > 0:
            keys.append((self._user_key(username), self.max_per_user))
        if ip and self.max_per_ip > 0:
            keys.append((_short("ip:" + ip), self.max_per_ip))
        return keys

    @staticmethod
    def _user_key(username: str) -> str:
        return _short("user:" + username.strip().casefold())


def _short(key: str) -> str:
    # A sprayed username can be long: keep keys bounded, distinct and unreadable past 80 chars.
    if len(key) <= 80:
        return key
    return key[:8] + "#" + hashlib.sha256(key.encode()).hexdigest()


def too_many_message(retry_after_s: int) -> str:
    """Return the message shown when logins are refused for a while."""
    minutes = max(1, math.ceil(retry_after_s / 60))
    return (
        "too many failed logins for this user or address; "
        f"try again in {minutes} minute{'s' if minutes > 1 else ''}"
    )
