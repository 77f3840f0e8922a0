"""Readings of polls made together go out as one SupplyReadingBatch (issue 15).

A reading's durable publish costs nats-server an fsync before its ack, and the poller a message
and an ack of its own; slots lie on a 1 s grid, so polls come due together. A poll hands its
reading to the ReadingBatcher and waits: after wait_s, or at max_readings / max_bytes, or when
every poll under way has handed its reading in once the oldest waited settle_s, whichever comes
first, the site's readings are
published as one batch (a group of one as the plain reading). Each waiting poll returns once the
batch is acked, or raises what the publish raised: a poll is done only when its reading is kept.

settle_s is wait_s unless given: polls due at one slot reach the poller spread over tens of
milliseconds (jobs redelivered one by one, ~1 ms of CPU each), so "every poll under way has
handed in" is true many times within a slot's polls; waiting 100 ms made 15 readings per
message where the early flush made 5 (bench/E2E.md "Readings in batches").
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import READING_BATCH_TYPE, SupplyReading, encode_batch
from tonerwatch_shared.subjects import SUPPLY_READING

READING_TYPE = SupplyReading.model_fields["type"].default
# Reading subjects kept (one a printer); the table starts again past this many.
SUBJECTS_KEPT = 100_000


@dataclass
class _Group:
    """One site's readings waiting to be published together."""

    site_id: str
    # One future per poll waiting (not one shared and shielded: each poll's wakeup is then one
    # callback, and a cancelled poll cancels only its own).
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    readings: list[tuple[str, bytes, str]] = field(default_factory=list)  # subject, JSON, id
    size: int = 0
    timer: asyncio.TimerHandle | None = None
    started: float = 0.0  # loop time of its first reading


class ReadingBatcher:
    """Publishes readings in batches per site; publish returns when the reading's batch is acked."""

    def __init__(
        self,
        bus: Bus,
        *,
        source: str,
        busy: Callable[[], int],
        max_readings: int = 128,
        max_bytes: int = 256 * 1024,
        wait_s: float = 0.1,
        settle_s: float | None = None,
    ) -> None:
        self.bus = bus
        self.source = source
        # How many polls are under way (their readings may still come): when every one of them
        # has handed its reading in, waiting longer gains nothing.
        self.busy = busy
        self.max_readings = max_readings
        self.max_bytes = max_bytes
        self.wait_s = wait_s
        # Polls due at the same slot start a few milliseconds apart (their jobs arrive one by
        # one): "every poll under way has handed in" is believed only after this long.
        self.settle_s = wait_s if settle_s is None else min(settle_s, wait_s)
        self._settle: asyncio.TimerHandle | None = None
        self._groups: dict[str, _Group] = {}
        # Each printer's reading subject, made once (two token() calls) and not at every poll.
        self._subjects: dict[tuple[str, str], str] = {}
        self._held = 0  # readings handed in whose publish has not returned
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0  # batch messages published
        self.messages = 0  # messages published (batches and lone readings)
        self.published = 0  # readings published

    async def publish(self, site_id: str, printer_id: str, data: bytes, event_id: str) -> None:
        """Publish one reading's JSON (alone or in its site's batch); return once it is kept."""
        subject = self._subjects.get((site_id, printer_id))
        if subject is None:
            if len(self._subjects) >= SUBJECTS_KEPT:
                self._subjects.clear()
            subject = self._subjects[site_id, printer_id] = self.bus.subjects.subject(
                site_id, SUPPLY_READING, printer_id
            )
        if self.max_readings <= 1:  # batches off: every reading alone, as before
            await self.bus.publish_json(subject, data, event_id=event_id, type_=READING_TYPE)
            self.published += 1
            self.messages += 1
            return
        group = self._groups.get(site_id)
        if group is not None and group.readings and group.size + len(data) > self.max_bytes:
            self._flush(group)
            group = None
        if group is None:
            loop = asyncio.get_running_loop()
            group = _Group(site_id, started=loop.time())
            self._groups[site_id] = group
            group.timer = loop.call_later(self.wait_s, self._flush, group)
        group.readings.append((subject, data, event_id))
        group.size += len(data)
        done = asyncio.get_running_loop().create_future()
        group.waiters.append(done)
        self._held += 1
        try:
            if len(group.readings) >= self.max_readings:
                self._flush(group)
            elif self._held >= self.busy():
                self._all_in()
            await done
        finally:
            self._held -= 1

    def _all_in(self) -> None:
        """Every poll under way has handed its reading in: publish once the oldest has settled."""
        if not self._groups or self._settle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = min(g.started for g in self._groups.values()) + self.settle_s - loop.time()
        if wait <= 0:
            self._flush_all()
        else:
            self._settle = loop.call_later(wait, self._settled)

    def _settled(self) -> None:
        self._settle = None
        # Else a poll started meanwhile: its reading (or wait_s) ends the wait.
        if self._held >= self.busy():
            self._flush_all()

    def _flush_all(self) -> None:
        for group in list(self._groups.values()):
            self._flush(group)

    def _flush(self, group: _Group) -> None:
        """Start publishing group (once): its readings stop waiting for company."""
        if self._groups.get(group.site_id) is not group:
            return
        del self._groups[group.site_id]
        if group.timer is not None:
            group.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._send(group))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, group: _Group) -> None:
        try:
            if len(group.readings) == 1:
                # Alone: the plain reading, as a poller without batches sends it.
                [(subject, data, event_id)] = group.readings
                await self.bus.publish_json(subject, data, event_id=event_id, type_=READING_TYPE)
            else:
                batch_id = uuid.uuid4()
                await self.bus.publish_json(
                    self.bus.subjects.batch_subject(group.site_id, SUPPLY_READING),
                    encode_batch(
                        [data for _, data, _ in group.readings],
                        site_id=group.site_id,
                        source=self.source,
                        event_id=batch_id,
                    ),
                    event_id=str(batch_id),
                    type_=READING_BATCH_TYPE,
                )
                self.batches += 1
        except Exception as exc:
            # Every poll of the group gets the error: none is done, each job is retried.
            for done in group.waiters:
                if not done.done():
                    done.set_exception(exc)
                    done.exception()  # retrieved: the poll waiting on it may be gone
            return
        except BaseException:
            for done in group.waiters:
                done.cancel()
            raise
        self.published += len(group.readings)
        self.messages += 1
        for done in group.waiters:
            if not done.done():
                done.set_result(None)
