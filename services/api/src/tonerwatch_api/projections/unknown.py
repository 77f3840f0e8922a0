"""Events naming a printer the api does not know yet: how long each may wait for it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from tonerwatch_shared.bus import NotYet
from tonerwatch_shared.events import Event

# Events for a printer the api does not know yet are retried this long after the api first tried
# them: the configuring event may still be on its way through another consumer.
UNKNOWN_PRINTER_GRACE = timedelta(minutes=5)


class PrinterNotYetKnown(NotYet):
    """An event names a printer the api has not stored yet (retried with back-off).

    A NotYet: a reading of a batch that raises it waits alone (the bus publishes it again for
    api-readings only), and the batch's other readings are applied at once.
    """


class UnknownPrinterWaits:
    """When this api first met each event whose printer it did not know yet (bounded).

    The wait runs from that moment, not from the event's occurred_at: a backdated reading (the
    demo's history, a collector's held back behind a site link, a backlog after an outage, where
    the readings consumer may run ahead of the printers consumer) used to be dropped at once.
    """

    def __init__(self, grace: timedelta = UNKNOWN_PRINTER_GRACE, limit: int = 10_000) -> None:
        self.grace = grace
        self.limit = limit
        self._first: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()  # appliers run in worker threads (several on PostgreSQL)

    def may_wait(self, event: Event, now: datetime) -> bool:
        """Return True while event may still wait for its printer (retried), False to drop it.

        Forgotten past `limit` (oldest first) or after a restart, an event starts waiting again:
        the bus sets an event aside (dead letters, replayable) after its retry limit anyway.
        """
        key = str(event.event_id)
        with self._lock:
            first = self._first.setdefault(key, now)
            if now - first < self.grace:
                while len(self._first) > self.limit:
                    self._first.popitem(last=False)
                return True
            del self._first[key]
            return False

    def is_waiting(self, event: Event) -> bool:
        """Return whether event is waiting for its printer now."""
        with self._lock:
            return str(event.event_id) in self._first
