"""Count what a NATS client sends: every message published, and which of them wait for a reply.

Used by tests and benches of the NATS operations a piece of work costs (issue 15: the round trips
of a steady poll). Counting, not timing: what a client sends is behaviour.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

# JetStream's flow-control replies of push consumers (a KV watch): the library's, not the work's.
FLOW_CONTROL = "$JS.FC."


@dataclass
class Traffic:
    """What was sent while counting: every published subject, and the requests among them."""

    published: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def messages(self) -> int:
        """Return the messages sent (a request is one too), flow-control replies not counted."""
        return sum(1 for s in self.published if not s.startswith(FLOW_CONTROL))

    @property
    def round_trips(self) -> int:
        """Return the requests sent: each waits for its reply."""
        return len(self.requests)

    def clear(self) -> None:
        """Forget what was counted so far."""
        self.published.clear()
        self.requests.clear()


@contextlib.contextmanager
def counting(nc: Client) -> Iterator[Traffic]:
    """Count what nc sends inside the block (its publish and request, wrapped on the instance)."""
    traffic = Traffic()
    publish, request = nc.publish, nc.request

    async def counted_publish(subject: str, *args: Any, **kwargs: Any) -> None:
        traffic.published.append(subject)
        await publish(subject, *args, **kwargs)

    async def counted_request(subject: str, *args: Any, **kwargs: Any) -> Any:
        traffic.requests.append(subject)
        return await request(subject, *args, **kwargs)

    nc.publish = counted_publish  # type: ignore[method-assign]
    nc.request = counted_request  # type: ignore[method-assign]
    try:
        yield traffic
    finally:
        del nc.publish, nc.request  # the class's methods again


__all__ = ["FLOW_CONTROL", "Traffic", "counting"]
