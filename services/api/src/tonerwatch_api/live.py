"""Live alerts and printer changes for the UI, fanned out to every open server-sent-events stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    SiteOffline,
    SiteOnline,
    ThresholdCrossed,
    printer_of,
)

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000


@dataclass(frozen=True)
class PrinterChanged:
    """A printer's stored data changed (a reading, its status, an alert was applied).

    alerts: the change was to the alerts list (raised, resolved, its text); printer_id is empty
    for a site's own alert (a collector gone silent).
    """

    site_id: str
    printer_id: str
    alerts: bool = False


Live = Event | PrinterChanged


class LiveAlerts:
    """Fan-out of live alert events and printer changes to listeners (each an SSE stream).

    Slow listeners lose events: a stream's queue holds QUEUE_SIZE.
    """

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Live]] = set()

    @property
    def listeners(self) -> int:
        """Return how many streams are open."""
        return len(self._queues)

    async def publish(self, event: Event) -> None:
        """Hand event to every listener."""
        if not isinstance(event, ThresholdCrossed | AlertResolved):
            return
        for q in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)

    def printer_changed(self, event: Event) -> None:
        """Tell every listener the printer of an applied event changed (the projector calls this)."""
        alerts = isinstance(event, ThresholdCrossed | AlertResolved | SiteOffline | SiteOnline)
        printer_id = printer_of(event)
        if not (printer_id or alerts) or not self._queues:
            return
        change = PrinterChanged(event.site_id, printer_id or "", alerts)
        for q in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(change)

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[Live]]:
        """Yield a queue receiving every alert event and printer change until the block ends."""
        q: asyncio.Queue[Live] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(q)
        try:
            yield q
        finally:
            self._queues.discard(q)

    async def run(self, bus: Bus, stop: asyncio.Event) -> None:
        """Feed listeners from the bus (live, core NATS) until stop is set."""
        every_alert_event = bus.subjects.area(ThresholdCrossed.subject_area())
        await bus.subscribe_events(every_alert_event, stop=stop, handler=self.publish)


def sse(event: str, data: dict[str, object]) -> str:
    """Return one server-sent event frame."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def without_printer(message: str) -> str:
    """Return an alert message without the printer's name (the toast's title already shows it).

    The alerter writes "<headline>: <printer> — <detail>"; another shape is returned whole.
    """
    headline, sep, rest = message.partition(": ")
    if not sep or not headline:
        return message
    _, dash, detail = rest.partition(" — ")
    return f"{headline} — {detail}" if dash and detail else headline


def toast(event: Event, printer_name: str | None) -> dict[str, object]:
    """Return what the UI shows for an alert event."""
    printer_id = printer_of(event) or ""
    if isinstance(event, ThresholdCrossed):
        return {
            "kind": "raised",
            "severity": event.severity,
            "title": printer_name or printer_id,
            "message": without_printer(event.message),
            "printer_id": printer_id,
            "url": f"/printers/{printer_id}",
        }
    assert isinstance(event, AlertResolved)
    return {
        "kind": "resolved",
        "severity": "info",
        "title": printer_name or printer_id,
        "message": without_printer(event.message) if event.message else f"{event.rule} resolved",
        "printer_id": printer_id,
        "url": f"/printers/{printer_id}",
    }
