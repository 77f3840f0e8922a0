"""Count what a NATS client sends: every message published, and which of them wait for a reply.

Used by tests and benches of the NATS operations a piece of work costs (issue 15: the round trips
of a steady poll). Counting, not timing: what a client sends is behaviour.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

# Pull requests of pull consumers: answered by the messages they ask for.
PULL_REQUEST = "$JS.API.CONSUMER.MSG.NEXT."
_in_request: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)

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
        # A publish with a reply subject waits for that reply: a request too (a JetStream publish
        # whose ack comes to the bus's ack inbox), unless nc.request sent it (counted there) or
        # it is a pull request for messages (which the messages answer, counted apart).
        reply = kwargs.get("reply") or (args[1] if len(args) > 1 else "")
        if reply and not _in_request.get() and not subject.startswith(PULL_REQUEST):
            traffic.requests.append(subject)
        await publish(subject, *args, **kwargs)

    async def counted_request(subject: str, *args: Any, **kwargs: Any) -> Any:
        traffic.requests.append(subject)
        reset = _in_request.set(True)
        try:
            return await request(subject, *args, **kwargs)
        finally:
            _in_request.reset(reset)

    nc.publish = counted_publish  # type: ignore[method-assign]
    nc.request = counted_request  # type: ignore[method-assign]
    try:
        yield traffic
    finally:
        del nc.publish, nc.request  # the class's methods again


__all__ = ["FLOW_CONTROL", "PULL_REQUEST", "Traffic", "counting"]
