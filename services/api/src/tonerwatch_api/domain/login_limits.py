"""Login limits: failed logins per address and per (user, address) slow guessing down.

Never per user alone: then anyone could lock `admin` out for everyone with five wrong guesses.
A (user, address) pair waits back-off seconds after each failure (doubling), and is refused for
the window after `max_per_user` failures; an address after `max_per_ip` failures for any users.
"""

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
    """Counts failed logins per (username, address) and per address across replicas; refuses more
    at a limit, and makes a pair wait (doubling back-off) between failures."""

    engine: Engine
    max_per_user: int = 5  # per username at one address
    max_per_ip: int = 20  # an office behind one NAT address shares it: more generous
    window_s: float = 900.0
    backoff_s: float = 0.0
    clock: Callable[[], float] = field(default=time.time)

    async def start(self, username: str, ip: str | None) -> Attempt:
        """Reserve an attempt for username from ip; its retry_after says if it must wait instead."""
        attempt = Attempt(secrets.token_hex(8), username, ip)
        now = self.clock()
        keys = self._keys(username, ip)
        if not keys:
            return attempt
        pair = self._pair_key(username, ip)

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
                before = [at for at, who in rows if who != attempt.id]
                if key == pair and len(before) >= 2 and self.backoff_s > 0:
                    # One typo is free; after the n-th failure (n >= 2) the pair waits
                    # backoff * 2^(n-2) from the newest one.
                    pause = self.backoff_s * 2 ** min(len(before) - 2, 30)
                    waits.append(max(before) + min(pause, self.window_s) - now)
                if len(rows) <= limit:
                    continue
                # The oldest failures must leave the window until fewer than `limit` remain.
                waits.append(before[len(before) - limit] + self.window_s - now)
            waits = [w for w in waits if w > 0]
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
        """Forget the pair's failures and this attempt's address row (the address keeps the rest)."""
        user_key = self._pair_key(attempt.username, attempt.ip)

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
            keys.append((self._pair_key(username, ip), self.max_per_user))
        if ip and self.max_per_ip > 0:
            keys.append((_short("ip:" + ip), self.max_per_ip))
        return keys

    @staticmethod
    def _pair_key(username: str, ip: str | None) -> str:
        return _short(f"user:{username.strip().casefold()}@{ip or ''}")


def _short(key: str) -> str:
    # A sprayed username can be long: keep keys bounded, distinct and unreadable past 80 chars.
    if len(key) <= 80:
        return key
    return key[:8] + "#" + hashlib.sha256(key.encode()).hexdigest()


def too_many_message(retry_after_s: int) -> str:
    """Return the message shown when logins are refused for a while."""
    if retry_after_s < 60:
        wait = f"{retry_after_s} second{'s' if retry_after_s != 1 else ''}"
    else:
        minutes = math.ceil(retry_after_s / 60)
        wait = f"{minutes} minute{'s' if minutes > 1 else ''}"
    return f"too many failed logins for this user or from this address; try again in {wait}"
