"""Failed-login throttling per username and per client address (sliding window, in memory)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoginLimiter:
    """Counts failed logins per username and per client IP; refuses more once a limit is hit.

    Kept in the memory of one api process: with several replicas each counts on its own, so
    an attacker spread over N replicas gets N times the attempts. A shared count would live
    in a JetStream KV bucket; argon2 already costs ~50 ms a guess, so this bound is enough.
    """

    max_per_user: int = 5
    max_per_ip: int = 20  # an office behind one NAT address shares it: more generous
    window_s: float = 900.0
    max_keys: int = 100_000  # bounds memory under a spray of random usernames
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, username: str, ip: str | None) -> int | None:
        """Return seconds until a login may be tried again, or None when it may be tried now."""
        now = self.clock()
        waits = [
            self._wait(key, limit, now) for key, limit in self._keys(username, ip) if limit > 0
        ]
        blocked = [w for w in waits if w is not None]
        return max(1, math.ceil(max(blocked))) if blocked else None

    def failed(self, username: str, ip: str | None) -> None:
        """Record one failed login of username from ip."""
        now = self.clock()
        if len(self._failures) >= self.max_keys:
            self._prune(now)
        for key, limit in self._keys(username, ip):
            times = self._failures.setdefault(key, deque(maxlen=max(limit, 1)))
            times.append(now)

    def succeeded(self, username: str) -> None:
        """Forget the failures of username (the address keeps its count)."""
        self._failures.pop(self._user_key(username), None)

    def _wait(self, key: str, limit: int, now: float) -> float | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        if len(times) < limit:
            return None
        # The deque keeps the last `limit` failures: the oldest leaving the window frees a try.
        return times[0] + self.window_s - now

    def _keys(self, username: str, ip: str | None) -> list[tuple[str, int]]:
        keys = [(self._user_key(username), self.max_per_user)]
        if ip:
            keys.append((f"ip:{ip}", self.max_per_ip))
        return keys

    @staticmethod
    def _user_key(username: str) -> str:
        return "user:" + username.strip().casefold()

    def _prune(self, now: float) -> None:
        cutoff = now - self.window_s
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= cutoff]:
            del self._failures[key]
        if len(self._failures) >= self.max_keys:
            # Still full of live entries: drop the oldest half rather than grow without bound.
            by_age = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in by_age[: len(by_age) // 2]:
                del self._failures[key]


def too_many_message(retry_after_s: int) -> str:
    """Return the message shown when logins are refused for a while."""
    minutes = max(1, math.ceil(retry_after_s / 60))
    return (
        "too many failed logins for this user or address; "
        f"try again in {minutes} minute{'s' if minutes > 1 else ''}"
    )
