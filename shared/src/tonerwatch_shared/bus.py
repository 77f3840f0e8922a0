"""The event bus: NATS JetStream with retrying connect, idempotent streams, deduped publish, safe consume.

Nothing is dropped by a consumer (docs/reliability.md): a failed event is retried with back-off
for as long as the stream keeps it. A handler says why it failed: `RetryLater` (or an OSError, or
a failed dependency probe) means a dependency is down, so the consumer pauses (no fetching, no
deliveries burned) and the event is not blamed; `Poison` means the event itself can never be
handled. An event that fails for its own reasons `poison_after` times, or is Poison, or cannot be
read, is set aside in the dead-letter stream `<prefix>_DEAD` with its subject, headers, error and
delivery count, where the api lists it and an operator can ask its consumer to replay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from tonerwatch_shared.events import (
    EVENT_AREAS,
    Event,
    UnreadableEvent,
    UnreadablePart,
    parse_event,
    parse_parts,
    printer_of,
    unbatched,
)
from tonerwatch_shared.lifecycle import sleep_until_stopped
from tonerwatch_shared.settings import CommonSettings
from tonerwatch_shared.streams import merge_stream_config
from tonerwatch_shared.subjects import BATCH_KEY, Subjects, token

log = logging.getLogger(__name__)

Handler = Callable[[Event, Msg], Awaitable[None]]
# Applies a whole fetched batch at once (one transaction): all succeed together or none does.
BatchHandler = Callable[[list[Event]], Awaitable[None]]
# Raises when a dependency (database, upstream) is down: pauses the consumer instead of blaming events.
Probe = Callable[[], Awaitable[None]]
T = TypeVar("T")

PUBLISH_TIMEOUT_S = 5.0
# Events given to a batch handler at once, about (a fetch of batch messages may hold many more).
BATCH_HANDLER_EVENTS = 512
PULL_RETRY_PAUSE_S = 0.5
# How long a consumer's replay requests wait in one pull (they are rare; stop ends it at once).
REPLAY_FETCH_S = 10.0
# How long and how many dead letters the dead-letter stream keeps (an operator clears them by replay).
DEAD_MAX_AGE_S = 90 * 86400.0
DEAD_MAX_MSGS = 100_000
ERROR_TEXT_LIMIT = 500
# A message published for one consumer only (a reading split out of a batch, Bus._split_out):
# every other consumer acks it unhandled.
FOR_HEADER = "Tw-For"


def positions_max_age(events_max_age_s: float) -> float:
    """Return how long an ordering position (tonerwatch_shared.ordering) or a delivered-event
    record must be kept, in seconds: as long as a stale event can still arrive.

    An event reaches a consumer at most events_max_age_s after it was published (the events
    stream drops it then); one set aside in the dead-letter stream can be replayed for up to
    DEAD_MAX_AGE_S more. A position kept that long outlives every event it could judge stale.
    It is the TTL of the position KV buckets (SYNC_ORDER, ALERTER_SENT) and the age after which
    the api deletes the alert_order row of a closed alert.
    """
    return events_max_age_s + DEAD_MAX_AGE_S


# How long an abandoned connect attempt (Bus.connect timed out or cancelled) is given to end.
ABANDON_WAIT_S = 5.0
# How long a refused stream creation is retried: a new cluster places streams a few seconds late.
STREAM_CREATE_PATIENCE_S = 15.0
# JetStream refusals that will not mend themselves: "insufficient resources" and "insufficient
# storage resources available" (max_bytes x replicas over the store).
JS_NEVER_PLACED = frozenset({10023, 10047})
JS_STREAM_NAME_IN_USE = 10058


class BusError(Exception):
    """The bus could not be reached or set up; the message says which server and what to do."""


class BusStopped(BusError):
    """Stop was asked for while still connecting: nothing to clean up, the service just ends."""


class Poison(Exception):
    """The event itself can never be handled: set it aside in the dead-letter stream at once."""


class NotYet(Exception):
    """The event waits for another one still on its way (its printer's configuration).

    A failure like any other for the event itself (back-off, poison after `poison_after`). A
    reading of a batch that raises it is split out instead: published again alone, for this
    consumer only (Bus._split_out), so the batch's other readings go on at once rather than wait
    with it (up to the api's 5 minutes for an unknown printer). A batch handler names in waiting
    the event ids that wait: the fetch's other messages are then applied whole again at once,
    only those holding a waiting event go one by one (Bus._apply_part).
    """

    def __init__(self, message: str = "", waiting: Iterable[uuid.UUID | str] = ()) -> None:
        super().__init__(message)
        self.waiting = frozenset(str(event_id) for event_id in waiting)


class RetryLater(Exception):
    """Not the event's fault (a dependency is down): pause, then retry; never counts toward poison."""

    def __init__(self, message: str = "", delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


@dataclass(frozen=True)
class RetryPolicy:
    """How consumers retry: back-off, when an event counts as poison, how long a delivery may take."""

    base_s: float = 1.0
    cap_s: float = 60.0
    poison_after: int = 20
    ack_wait_s: float = 30.0

    def delay(self, failures: int) -> float:
        """Return the wait after the failures-th failure in a row (exponential, capped)."""
        return retry_delay(failures, self.base_s, self.cap_s)


@contextlib.asynccontextmanager
async def working_on(
    msgs: Msg | Sequence[Msg],
    ack_wait_s: float,
    also: Callable[[], Sequence[Msg]] | None = None,
) -> AsyncIterator[None]:
    """Tell NATS msgs are being worked on, every third of their ack wait, while the block runs.

    A handler may take longer than the consumer's ack wait (a mail with its retries), yet a
    consumer that died with the message must give it back soon: so the ack wait stays short and a
    live handler keeps extending it. Killed (SIGKILL), the heartbeat stops and the message is
    redelivered one ack wait later.

    Given a whole fetch, every message not acked (or nakked) yet is kept: a fetch of reading
    batches can hold tens of thousands of readings, applied part after part, and the messages
    still waiting their turn were redelivered to another worker while this one would still apply
    them (duplicate work; with max_deliver, deliveries burned). also returns more messages to
    keep at each beat: those of a fetch made ahead that arrived meanwhile.
    """
    held = [msgs] if isinstance(msgs, Msg) else list(msgs)

    async def beat() -> None:
        while True:
            for msg in [*held, *(also() if also is not None else ())]:
                if not msg.is_acked:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
            await asyncio.sleep(ack_wait_s / 3)

    # A timer, not a task per fetch: most fetches are handled long before the first beat is due.
    beats: list[asyncio.Task[None]] = []
    timer = asyncio.get_running_loop().call_later(
        ack_wait_s / 3, lambda: beats.append(asyncio.ensure_future(beat()))
    )
    try:
        yield
    finally:
        timer.cancel()
        for task in beats:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer: who it is, what it reads, how it retries.

    max_deliver -1 (the default) never drops an event; ack_wait_s None takes the bus's
    RetryPolicy.ack_wait_s; ordered delivers one event at a time, so a redelivery never lets a
    later event of the same consumer overtake it (order of alerts, orders, mails).
    """

    durable: str
    filter_subject: str
    ack_wait_s: float | None = None
    max_deliver: int = -1
    max_ack_pending: int = 1000
    deliver_new_only: bool = False
    ordered: bool = False
    # After a fetch that brought less than a full batch, wait this long before the next: more
    # events per pull request (one request and one reply per batch, not per event) for consumers
    # that can take their events this much later. Workers of one durable on one Bus share the
    # wait: after a short fetch none of them fetches for linger_s (not each on its own, which
    # split a steady trickle into one small batch per worker).
    linger_s: float = 0.0
    # Messages a worker's first fetch asks for (0: as many as any fetch, the consume's batch).
    # For messages that may carry batches of readings: a first fetch of `batch` messages (128
    # readings each) took a whole backlog into one worker, which applied it part after part while
    # the durable's other workers found nothing to fetch. One message tells what a message
    # carries, and the fetches after it are sized by that (consume: after_batches).
    first_fetch: int = 0


def retry_delay(num_delivered: int, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Return the nak delay for a message delivered num_delivered times (exponential, capped)."""
    return float(min(cap_s, base_s * 2 ** min(62, max(0, num_delivered - 1))))


def dead_stream(subjects: Subjects) -> str:
    """Return the name of the dead-letter stream."""
    return subjects.name("DEAD")


def dead_subject(subjects: Subjects, durable: str) -> str:
    """Return the subject a consumer's dead letters are kept under."""
    return f"{subjects.root}_dead.{token(durable)}"


def replay_subject(subjects: Subjects, durable: str) -> str:
    """Return the subject on which a consumer takes requests to replay its dead letters."""
    return f"{subjects.root}_replay.{token(durable)}"


@dataclass(frozen=True)
class DeadLetter:
    """One event set aside: where it came from, why, after how many deliveries."""

    seq: int
    consumer: str
    subject: str
    error: str
    deliveries: int
    dead_at: float
    event_id: str | None
    event_type: str | None
    headers: dict[str, str]
    data: bytes

    @classmethod
    def from_raw(cls, seq: int, headers: dict[str, str] | None, data: bytes) -> DeadLetter:
        """Return the dead letter stored at seq (tolerant: missing headers read as empty)."""
        h = headers or {}
        try:
            original = json.loads(h.get("Tw-Original-Headers", "{}"))
        except ValueError:
            original = {}
        return cls(
            seq=seq,
            consumer=h.get("Tw-Consumer", ""),
            subject=h.get("Tw-Subject", ""),
            error=h.get("Tw-Error", ""),
            deliveries=_int(h.get("Tw-Deliveries")),
            dead_at=float(h.get("Tw-Dead-At") or 0),
            event_id=h.get("Tw-Event-Id") or None,
            event_type=h.get("Tw-Event-Type") or None,
            headers={str(k): str(v) for k, v in original.items()}
            if isinstance(original, dict)
            else {},
            data=data,
        )


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _arrived(task: asyncio.Task[list[Msg]] | None) -> Callable[[], Sequence[Msg]]:
    """Return a function giving what task (a fetch) brought once it has, else nothing."""

    def arrived() -> Sequence[Msg]:
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return ()
        return task.result()

    return arrived


class _Failures:
    """Failures of each event for its own reasons, per consumer (bounded: oldest forgotten).

    An event is (durable, stream seq, part): part is its place in a batch (0 for a lone event).
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._counts: OrderedDict[tuple[str, int, int], int] = OrderedDict()

    def add(self, durable: str, seq: int, part: int = 0) -> int:
        key = (durable, seq, part)
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        while len(self._counts) > self.limit:
            self._counts.popitem(last=False)
        return count

    def forget(self, durable: str, seq: int, part: int = 0) -> None:
        self._counts.pop((durable, seq, part), None)


class _Progress:
    """How many leading events of each batch message a consumer has done (bounded).

    A batch redelivered after a failure mid-way resumes after what this process already handled;
    another process (the first one died) starts over, and the handlers' own idempotency (event
    ids, seqs) makes that harmless.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._done: OrderedDict[tuple[str, int], int] = OrderedDict()

    def done(self, durable: str, seq: int) -> int:
        return self._done.get((durable, seq), 0)

    def advance(self, durable: str, seq: int, done: int) -> None:
        self._done[(durable, seq)] = done
        self._done.move_to_end((durable, seq))
        while len(self._done) > self.limit:
            self._done.popitem(last=False)

    def forget(self, durable: str, seq: int) -> None:
        self._done.pop((durable, seq), None)


class Bus:
    """One connection to NATS JetStream, shared by a service's loops."""

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        *,
        max_age_s: float,
        source: str,
        replicas: int = 1,
        events_max_bytes: int = -1,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self.subjects = subjects
        self.max_age_s = max_age_s
        self.source = source
        # Replicas of every stream and bucket this bus creates (TONERWATCH_STREAM_REPLICAS).
        self.replicas = replicas
        self.events_max_bytes = events_max_bytes
        self.retry = RetryPolicy()
        # Consumers (durable names) paused now because a dependency is down (gauge tonerwatch_consumer_paused).
        self.paused: set[str] = set()
        self._failures = _Failures()
        self._progress = _Progress()
        self._dead_ready = False
        self._acks: _AckInbox | None = None
        # Called (no arguments, in the loop) after each reconnect, when the connection was made by
        # Bus.connect; None: a connection made elsewhere, whose reconnects nobody reports here.
        self.on_reconnect: list[Callable[[], None]] | None = None
        # One fetch turn per lingering durable, shared by its workers on this connection.
        self._fetch_turns: dict[str, asyncio.Lock] = {}
        # Readings per message in the last fetch of reading batches, per durable (consume's fetch size).
        self._per_message: dict[str, float] = {}

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        subjects: Subjects,
        name: str,
        max_age_s: float = 7 * 86400,
        attempts: int = 30,
        connect_timeout_s: float = 5.0,
        max_backoff_s: float = 5.0,
        user: str | None = None,
        password: str | None = None,
        creds: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> Bus:
        """Return a connected Bus, retrying with back-off; raise BusError naming the URL if it never answers.

        With stop, setting it (SIGTERM) ends the wait at once with BusStopped.
        """
        servers = [s.strip() for s in url.split(",") if s.strip()]
        stop = stop or asyncio.Event()
        delay = 0.2
        last: Exception | None = None
        on_reconnect: list[Callable[[], None]] = []

        async def reconnected() -> None:
            for callback in list(on_reconnect):
                try:
                    callback()
                except Exception:  # one listener's bug must not stop the others
                    log.exception("a reconnect listener failed")

        for attempt in range(1, attempts + 1):
            try:
                # nats-py retries a first connect forever when reconnects are on: bound each attempt.
                async with asyncio.timeout(connect_timeout_s * 2):
                    nc = await _unless_stopped(
                        nats.connect(
                            servers=servers,
                            name=name,
                            connect_timeout=connect_timeout_s,
                            allow_reconnect=True,
                            max_reconnect_attempts=-1,
                            reconnect_time_wait=1,
                            error_cb=_log_error,
                            reconnected_cb=reconnected,
                            **_auth(user, password, creds),
                        ),
                        stop,
                    )
                bus = cls(nc, subjects, max_age_s=max_age_s, source=name)
                bus.on_reconnect = on_reconnect
                return bus
            except (OSError, nats.errors.Error, TimeoutError) as exc:
                last = exc
                log.info(
                    "NATS at %s not reachable (attempt %d/%d): %s", url, attempt, attempts, exc
                )
                if attempt < attempts and await sleep_until_stopped(stop, delay):
                    raise BusStopped(f"stopped while waiting for NATS at {url}") from None
                delay = min(max_backoff_s, delay * 2)
        raise BusError(
            f"cannot reach NATS at {url} after {attempts} attempts ({last!r}); "
            "check TONERWATCH_NATS_URL and that the server runs with JetStream (-js)"
        )

    @classmethod
    async def for_service(
        cls, settings: CommonSettings, service: str, *, stop: asyncio.Event | None = None
    ) -> Bus:
        """Return a Bus connected as settings say, named `<service>/<instance>`."""
        bus = await cls.connect(
            settings.require_nats_url(),
            subjects=Subjects(settings.subject_root, settings.stream_prefix),
            name=f"{service}/{settings.instance}",
            max_age_s=settings.events_max_age,
            attempts=settings.nats_connect_attempts,
            connect_timeout_s=settings.nats_connect_timeout_s,
            user=settings.nats_user,
            password=settings.nats_password,
            creds=str(settings.nats_creds) if settings.nats_creds else None,
            stop=stop,
        )
        bus.replicas = settings.stream_replicas
        bus.events_max_bytes = settings.events_max_bytes
        bus.retry = RetryPolicy(
            base_s=settings.retry_base_s,
            cap_s=settings.retry_cap_s,
            poison_after=settings.poison_after,
            ack_wait_s=settings.ack_wait_s,
        )
        return bus

    async def ensure_stream(self, config: StreamConfig) -> None:
        """Create the stream if absent, else raise it to config; never lowers what an operator set.

        Safe to call from every replica at start: replicas and limits only grow (the larger of
        ours and the stream's), retention, discard and storage are never changed (a difference
        is logged).
        """
        if config.num_replicas is None:
            config = dataclasses.replace(config, num_replicas=self.replicas)
        name = config.name or ""
        refused: nats.js.errors.APIError | None = None
        # A cluster that has just elected its meta leader (or just deleted a stream) refuses a
        # placement for a moment ("no suitable peers"): retry for a bounded time, not forever.
        deadline = time.monotonic() + STREAM_CREATE_PATIENCE_S
        pause_s = 0.25
        while True:
            try:
                info = await self.js.stream_info(name)
            except nats.js.errors.NotFoundError:
                try:
                    await self.js.add_stream(config)
                    return
                except nats.js.errors.APIError as exc:
                    # Another replica created it meanwhile (merge into theirs), or placement
                    # was refused: look again after a pause, unless the refusal is for good.
                    refused = exc
                    if exc.err_code == JS_STREAM_NAME_IN_USE:
                        continue
                    if exc.err_code in JS_NEVER_PLACED or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(pause_s)
                    pause_s = min(pause_s * 2, 2.0)
                    continue
            merge = merge_stream_config(info.config, config)
            for note in merge.kept:
                log.warning("stream %s: %s; left as the operator set it", name, note)
            if merge.config is not None:
                log.info("raising stream %s to %s", name, _limits(merge.config))
                await self.js.update_stream(merge.config)
            return
        why = f"{refused.description} (err_code {refused.err_code})" if refused else "no answer"
        raise BusError(
            f"NATS refused to create stream {name} ({_limits(config)}): {why}; the server "
            "reserves max_bytes x replicas at creation: check its max_file_store and peers "
            "(docs/sizing.md), or lower TONERWATCH_EVENTS_MAX_BYTES / TONERWATCH_STREAM_REPLICAS"
        )

    async def ensure_event_stream(self) -> None:
        """Create or update the stream that keeps every event (deduped on Nats-Msg-Id).

        Its subjects are the areas the event classes declare: a new area is kept once its class
        is in EVENT_CLASSES.
        """
        await self.ensure_stream(
            StreamConfig(
                name=self.subjects.events_stream,
                description="TonerWatch events",
                subjects=self.subjects.stream_subjects(EVENT_AREAS),
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=self.max_age_s,
                max_bytes=self.events_max_bytes,
                duplicate_window=120.0,
                # Full: refuse new events (publishers see the error and retry) rather than drop
                # old ones a lagging consumer has not read yet; tonerwatch_stream_fill_ratio warns first.
                discard=DiscardPolicy.NEW,
            )
        )

    async def publish(self, event: Event, *, timeout_s: float = PUBLISH_TIMEOUT_S) -> bool:
        """Publish event and await the stream's ack; return False when JetStream dropped it as a repeat."""
        return await self.publish_json(
            event.subject(self.subjects),
            event.to_bytes(),
            event_id=str(event.event_id),
            type_=event_type(event),
            timeout_s=timeout_s,
        )

    async def publish_json(
        self,
        subject: str,
        data: bytes,
        *,
        event_id: str,
        type_: str,
        timeout_s: float = PUBLISH_TIMEOUT_S,
        headers: dict[str, str] | None = None,
    ) -> bool:
        """Publish an event already serialized (its id and type given): every event's one path.

        event_id is the Nats-Msg-Id (JetStream drops a repeat within the duplicate window);
        headers are added to it and Tw-Event-Type.

        The stream's ack comes back on this bus's ack inbox (_AckInbox): one subscription for every
        publish, no reply subscription bookkeeping nor timer per publish. Not every message takes
        it: the dead-letter stream's (dead_letter, request_replay, the api's _move_dead_letters)
        and the poller's partition jobs go through js.publish.
        """
        if self._acks is None:
            self._acks = _AckInbox(self.nc)
        return await self._acks.publish(
            subject,
            data,
            {**(headers or {}), "Nats-Msg-Id": event_id, "Tw-Event-Type": type_},
            timeout_s,
        )

    async def ensure_consumer(self, spec: ConsumerSpec, stream: str | None = None) -> None:
        """Create or update a durable pull consumer."""
        stream = stream or self.subjects.events_stream
        config = ConsumerConfig(
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait_s if spec.ack_wait_s is not None else self.retry.ack_wait_s,
            max_deliver=spec.max_deliver,
            max_ack_pending=1 if spec.ordered else spec.max_ack_pending,
            filter_subject=spec.filter_subject,
            deliver_policy=DeliverPolicy.NEW if spec.deliver_new_only else DeliverPolicy.ALL,
        )
        await self.js.add_consumer(stream, config)

    async def ensure_dead_stream(self) -> None:
        """Create or update the dead-letter stream (dead letters and the requests to replay them)."""
        if self._dead_ready:
            return
        root = self.subjects.root
        await self.ensure_stream(
            StreamConfig(
                name=dead_stream(self.subjects),
                description="TonerWatch events set aside (poison) and replay requests",
                subjects=[f"{root}_dead.>", f"{root}_replay.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=DEAD_MAX_AGE_S,
                max_msgs=DEAD_MAX_MSGS,
                duplicate_window=120.0,
                discard=DiscardPolicy.OLD,
            )
        )
        self._dead_ready = True

    async def dead_letter(
        self,
        msg: Msg,
        durable: str,
        error: str,
        deliveries: int,
        event: Event | UnreadablePart | None = None,
        *,
        part: int | None = None,
    ) -> None:
        """Keep msg in the dead-letter stream with why it was set aside; raise if it could not be kept.

        With part, only that event of a batch message is kept (alone, on its own subject): the
        batch's other events were or will be handled; a replay handles this one. A part that is
        no valid reading (UnreadablePart) is kept as its JSON (re-encoded), under the batch's subject.
        """
        await self.ensure_dead_stream()
        meta = msg.metadata if msg.reply else None
        seq = meta.sequence.stream if meta else 0
        original = {k: v for k, v in (msg.headers or {}).items()}
        data, subject, msg_id = msg.data, msg.subject, f"{meta.stream if meta else ''}:{seq}"
        if part is not None and isinstance(event, UnreadablePart):
            data, msg_id = event.data, f"{msg_id}:{part}"
            for key, value in (
                ("Nats-Msg-Id", event.event_id),
                ("Tw-Event-Type", event.event_type),
            ):
                original.pop(key, None)  # the batch's, not this reading's
                if value is not None:
                    original[key] = value
        elif part is not None and isinstance(event, Event):
            data, subject, msg_id = (
                event.to_bytes(),
                event.subject(self.subjects),
                f"{msg_id}:{part}",
            )
            original["Nats-Msg-Id"] = str(event.event_id)
            original["Tw-Event-Type"] = event_type(event)
        headers = {
            # One dead letter per (consumer, stream sequence): a repeat after a lost ack is dropped.
            "Nats-Msg-Id": f"dead:{durable}:{msg_id}",
            "Tw-Consumer": durable,
            "Tw-Subject": subject,
            "Tw-Stream-Seq": str(seq),
            "Tw-Error": " ".join(error.split())[:ERROR_TEXT_LIMIT],
            "Tw-Deliveries": str(deliveries),
            "Tw-Dead-At": f"{time.time():.3f}",
            "Tw-Original-Headers": json.dumps(original, sort_keys=True),
        }
        if isinstance(event, UnreadablePart):
            if event.event_id is not None:
                headers["Tw-Event-Id"] = event.event_id
            if event.event_type is not None:
                headers["Tw-Event-Type"] = event.event_type
        elif event is not None:
            headers["Tw-Event-Id"] = str(event.event_id)
            headers["Tw-Event-Type"] = event_type(event)
        elif "Tw-Event-Type" in original:
            headers["Tw-Event-Type"] = original["Tw-Event-Type"]
        await self.js.publish(
            dead_subject(self.subjects, durable),
            data,
            timeout=PUBLISH_TIMEOUT_S,
            headers=headers,
        )

    async def dead_letters(self, limit: int = 100, max_scan: int = 10_000) -> list[DeadLetter]:
        """Return up to limit dead letters, newest first (replay requests and replayed ones skipped)."""
        try:
            info = await self.js.stream_info(dead_stream(self.subjects))
        except nats.js.errors.NotFoundError:
            return []
        prefix = f"{self.subjects.root}_dead."
        found: list[DeadLetter] = []
        seq = info.state.last_seq
        first = max(info.state.first_seq, seq - max_scan + 1)
        while seq >= first and len(found) < limit and info.state.messages:
            try:
                raw = await self.js.get_msg(dead_stream(self.subjects), seq)
            except nats.js.errors.NotFoundError:
                seq -= 1
                continue
            if raw.subject and raw.subject.startswith(prefix):
                found.append(DeadLetter.from_raw(seq, raw.headers, raw.data or b""))
            seq -= 1
        return found

    async def dead_letter_at(self, seq: int) -> DeadLetter | None:
        """Return the dead letter stored at seq, or None (replayed, expired, or not a dead letter)."""
        try:
            raw = await self.js.get_msg(dead_stream(self.subjects), seq)
        except (nats.js.errors.NotFoundError, nats.js.errors.BadRequestError):
            return None
        if not (raw.subject or "").startswith(f"{self.subjects.root}_dead."):
            return None
        return DeadLetter.from_raw(seq, raw.headers, raw.data or b"")

    async def dead_letter_counts(self) -> dict[str, int]:
        """Return how many dead letters each consumer has set aside (one stream-info request)."""
        prefix = f"{self.subjects.root}_dead."
        try:
            info = await self.js.stream_info(
                dead_stream(self.subjects), subjects_filter=f"{prefix}>"
            )
        except nats.js.errors.NotFoundError:
            return {}
        return {
            subject[len(prefix) :]: count
            for subject, count in (info.state.subjects or {}).items()
            if subject.startswith(prefix)
        }

    async def request_replay(self, consumer: str, seq: int) -> None:
        """Ask the consumer that set dead letter seq aside to handle it again (it removes it on success)."""
        await self.ensure_dead_stream()
        await self.js.publish(
            replay_subject(self.subjects, consumer),
            b"",
            timeout=PUBLISH_TIMEOUT_S,
            headers={"Tw-Dead-Seq": str(seq)},
        )

    async def consume(
        self,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        stop: asyncio.Event,
        stream: str | None = None,
        batch: int = 64,
        fetch_timeout_s: float = 1.0,
        handler_timeout_s: float = 60.0,
        batch_handler: BatchHandler | None = None,
        probe: Probe | None = None,
    ) -> None:
        """Pull events until stop is set: ack on success; retry, pause or set aside on failure.

        With batch_handler, each fetched batch is first offered whole (one transaction instead of
        one per event: what lets the api keep up with a large fleet); if it fails, the batch's
        events go one by one through handler, so one bad event delays only itself. probe says
        whether the consumer's dependency is up: a failure while it is down pauses the consumer
        (until the probe passes) instead of counting against the event. The consumer also takes
        requests to replay its dead letters (request_replay).
        """
        stream = stream or self.subjects.events_stream
        events = stream

        async def bind() -> JetStreamContext.PullSubscription:
            await self.ensure_consumer(spec, events)
            await self.ensure_dead_stream()
            return await self.js.pull_subscribe_bind(spec.durable, stream=events)

        sub = await _set_up_when_answered(bind, spec.durable, stop)
        if sub is None:
            return
        outages = 0
        ack_wait_s = spec.ack_wait_s if spec.ack_wait_s is not None else self.retry.ack_wait_s
        # A backlog (a fetch brought a full batch) is fetched ahead: the next batch arrives while
        # this one is applied and committed. Never for ordered consumers; acked only once handled.
        ahead: asyncio.Task[list[Msg]] | None = None
        # Messages asked for per fetch: batch, or after a fetch of reading batches (a hundred
        # readings a message) about one handler part of readings (BATCH_HANDLER_EVENTS), so the
        # durable's other workers take the rest of a backlog side by side instead of one worker
        # holding it all (on PostgreSQL the database works while this process parses).
        after_batches = False
        first = spec.first_fetch > 0 and batch_handler is not None and not spec.ordered
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._serve_replays(spec, handler, stop, handler_timeout_s, probe))
                while not stop.is_set():
                    try:
                        if ahead is not None:
                            fetching, ahead = ahead, None
                            msgs = await fetching
                        else:
                            want = min(batch, spec.first_fetch) if first else batch
                            if after_batches:
                                per = self._per_message.get(spec.durable, 1.0)
                                want = max(1, min(batch, round(BATCH_HANDLER_EVENTS / per)))
                            msgs = await self._fetch_in_turn(
                                sub, spec, 1 if spec.ordered else want, fetch_timeout_s
                            )
                    except (nats.errors.TimeoutError, TimeoutError):
                        continue
                    except nats.errors.ConnectionClosedError:
                        break  # the replay task ends on the same closed connection
                    except nats.errors.Error as exc:
                        # A cluster electing a new leader (node lost) or a server restarting answers
                        # 503 / no responders for a few seconds: wait and pull again, never crash.
                        await pause_on_bus_error(exc, spec.durable, stop)
                        continue
                    first = first and not msgs
                    batches = any(map(_is_batch, msgs))
                    # Not after reading batches: their parts are applied one after another, and a
                    # fetch ahead would hold as many more (workers x 2 x batch could pass
                    # max_ack_pending), waiting with nothing keeping them alive.
                    if (
                        batch_handler is not None
                        and not spec.ordered
                        and len(msgs) >= batch
                        and not batches
                    ):
                        ahead = asyncio.create_task(sub.fetch(batch, timeout=fetch_timeout_s))
                    after_batches = batches and batch_handler is not None
                    msgs = await _only_for(spec.durable, msgs)
                    wait: float | None = None
                    # Every fetched message is kept alive until acked or handed back, not only
                    # the one being handled (a fetch of reading batches can take minutes), and
                    # so is what a fetch ahead brought meanwhile.
                    async with working_on(msgs, ack_wait_s, also=_arrived(ahead)):
                        if batch_handler is not None and (len(msgs) > 1 or batches):
                            msgs = await self._handle_batch(
                                msgs, batch_handler, handler_timeout_s, spec
                            )
                        for i, msg in enumerate(msgs):
                            pause = await self._handle(msg, handler, spec, handler_timeout_s, probe)
                            if pause is None:
                                outages = 0
                                continue
                            outages += 1
                            wait = pause if pause > 0 else self.retry.delay(outages)
                            # The rest of the batch waits too: handed back undelivered, not blamed.
                            for rest in [*msgs[i:], *await _fetched(ahead)]:
                                with contextlib.suppress(Exception):
                                    await rest.nak(delay=wait)
                            ahead = None
                            break
                    if wait is not None:
                        await self._pause(spec.durable, wait, probe, stop)
                # Fetched ahead and never handled: handed back now rather than after ack_wait.
                for msg in await _fetched(ahead):
                    with contextlib.suppress(Exception):
                        await msg.nak()
                ahead = None
        finally:
            self.paused.discard(spec.durable)
            if ahead is not None:  # cancelled: what it brought waits for ack_wait
                ahead.cancel()
                # Awaited so its end (cancelled, or an error before the cancel) is retrieved; a
                # cancellation of this task while waiting still raises here (wait never raises
                # what the awaited task raised).
                await asyncio.wait([ahead])
                if not ahead.cancelled():
                    ahead.exception()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _fetch_in_turn(
        self, sub: JetStreamContext.PullSubscription, spec: ConsumerSpec, n: int, timeout_s: float
    ) -> list[Msg]:
        """Fetch up to n messages; with linger_s, in the durable's turn (see ConsumerSpec.linger_s).

        A fetch that brings less than n holds the turn for linger_s from its end: no worker of
        the durable fetches before, so the next fetch brings what arrived meanwhile in one batch.
        A full fetch (a backlog) hands the turn on at once: the workers fetch side by side.
        """
        if spec.linger_s <= 0:
            return await sub.fetch(n, timeout=timeout_s)
        turn = self._fetch_turns.setdefault(spec.durable, asyncio.Lock())
        await turn.acquire()
        try:
            msgs = await sub.fetch(n, timeout=timeout_s)
        except BaseException:
            turn.release()
            raise
        if len(msgs) < n:
            asyncio.get_running_loop().call_later(spec.linger_s, turn.release)
        else:
            turn.release()
        return msgs

    async def _pause(
        self, durable: str, wait_s: float, probe: Probe | None, stop: asyncio.Event
    ) -> None:
        """Stop fetching for wait_s, then (with a probe) until the dependency answers again."""
        self.paused.add(durable)
        try:
            if await sleep_until_stopped(stop, wait_s):
                return
            failures = 1
            while probe is not None and not stop.is_set():
                try:
                    async with asyncio.timeout(max(5.0, self.retry.cap_s)):
                        await probe()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    delay = self.retry.delay(failures)
                    log.info(
                        "%s paused: dependency still down (%r), next check in %.1fs",
                        durable,
                        exc,
                        delay,
                    )
                    if await sleep_until_stopped(stop, delay):
                        return
        finally:
            self.paused.discard(durable)

    async def _handle_batch(
        self, msgs: list[Msg], handler: BatchHandler, timeout_s: float, spec: ConsumerSpec
    ) -> list[Msg]:
        """Apply msgs as one batch and ack them; return those still to handle one by one.

        A message carrying a batch of readings gives the handler its readings, in order. Messages
        of batches make a fetch hold many more events than messages: the handler takes them in
        parts of about BATCH_HANDLER_EVENTS (a message's events always in one part), each part
        acked when applied; a failed part's messages go one by one.
        """
        left: list[Msg] = []
        part: list[tuple[Msg, tuple[Event, ...]]] = []
        size = seen = 0
        for i, msg in enumerate(msgs):
            try:
                carried = parse_parts(msg.data)
            except UnreadableEvent as exc:
                await self._set_aside(msg, spec.durable, f"unreadable: {exc}", None)
            else:
                readable = carried.events()
                if len(readable) == len(carried.parts):
                    part.append((msg, readable))
                    size += len(readable)
                else:  # its unreadable readings are set aside one by one (_handle)
                    left.append(msg)
            if i == len(msgs) - 1 and msgs:
                self._per_message[spec.durable] = max(1.0, (seen + size) / len(msgs))
            if part and (size >= BATCH_HANDLER_EVENTS or i == len(msgs) - 1):
                seen += size
                left += await self._apply_part(part, handler, timeout_s)
                part, size = [], 0
        return left

    async def _apply_part(
        self, part: list[tuple[Msg, tuple[Event, ...]]], handler: BatchHandler, timeout_s: float
    ) -> list[Msg]:
        """Apply the events of part's messages at once and ack them; return those to go one by one.

        If the handler fails, every message goes one by one, unless it raised NotYet naming the
        events that wait (an unknown printer's readings): then only the messages holding those go
        one by one (where a waiting reading of a batch is split out to wait alone), and the others
        are applied whole again at once.
        """
        events = [event for _, carried in part for event in carried]
        try:
            async with asyncio.timeout(timeout_s):
                await handler(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            waiting = exc.waiting if isinstance(exc, NotYet) else frozenset()
            held = {
                i
                for i, (_, carried) in enumerate(part)
                if any(str(e.event_id) in waiting for e in carried)
            }
            if not held or len(held) == len(part):
                log.debug("batch of %d failed, applying one by one: %r", len(events), exc)
                return [msg for msg, _ in part]
            log.debug(
                "%d of %d messages wait (%r): the others again whole", len(held), len(part), exc
            )
            rest = [entry for i, entry in enumerate(part) if i not in held]
            return [part[i][0] for i in sorted(held)] + await self._apply_part(
                rest, handler, timeout_s
            )
        for msg, _ in part:
            await msg.ack()
        return []

    async def _set_aside(self, msg: Msg, durable: str, error: str, event: Event | None) -> bool:
        """Move msg to the dead-letter stream, then ack it; False (retried later) if that failed."""
        deliveries = msg.metadata.num_delivered if msg.metadata else 1
        try:
            await self.dead_letter(msg, durable, error, deliveries, event)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not set aside %s message (%r): retrying it later", msg.subject, exc)
            await msg.nak(delay=self.retry.cap_s)
            return False
        what = f"{event_type(event)} {event.event_id}" if event is not None else msg.subject
        log.error("set aside %s for %s after %d deliveries: %s", what, durable, deliveries, error)
        await msg.ack()
        return True

    async def _classify(self, exc: Exception, probe: Probe | None) -> tuple[str, float]:
        """Return ("poison"|"later"|"failed", delay) for a handler's exception."""
        if isinstance(exc, Poison):
            return "poison", 0.0
        if isinstance(exc, RetryLater):
            return "later", exc.delay_s or 0.0
        # A network error or timeout is a dependency's trouble, not the event's.
        if isinstance(exc, OSError):
            return "later", 0.0
        if probe is not None:
            try:
                async with asyncio.timeout(max(5.0, self.retry.cap_s)):
                    await probe()
            except asyncio.CancelledError:
                raise
            except Exception:
                return "later", 0.0
        return "failed", 0.0

    async def _handle(
        self,
        msg: Msg,
        handler: Handler,
        spec: ConsumerSpec,
        timeout_s: float,
        probe: Probe | None,
    ) -> float | None:
        """Handle one message; return None when done with it, else how long to pause (0: back-off).

        A batch's events go through handler one by one, in order, and the message is acked once
        after the last. One that fails for its own reasons has the message retried (from that event
        on in this process: _Progress); one set aside goes to the dead letters alone, the rest go on.
        """
        try:
            carried = parse_parts(msg.data)
        except UnreadableEvent as exc:
            # Redelivering it can never help: set aside at once.
            await self._set_aside(msg, spec.durable, f"unreadable: {exc}", None)
            return None
        meta = msg.metadata
        seq = meta.sequence.stream if meta else 0
        events = carried.parts
        batch = carried.batch and seq > 0
        start = self._progress.done(spec.durable, seq) if batch else 0
        # Printers with a reading split out of this batch: their later readings follow it out, in
        # order (not kept across a redelivery: readings carry seq, consumers order by it anyway).
        split: set[str] = set()
        for part in range(start, len(events)):
            one = events[part]
            if isinstance(one, UnreadablePart):
                # A reading of the batch that is no valid reading: alone to the dead letters at
                # once (redelivering it can never help), the batch's other readings go on.
                error = f"unreadable: {one.error}"
                if not await self._set_aside_part(msg, spec.durable, error, one, part):
                    return None
                if batch:
                    self._progress.advance(spec.durable, seq, part + 1)
                continue
            if batch and printer_of(one) in split:
                if not await self._split_out(msg, spec.durable, one, seq, part):
                    return None
                self._progress.advance(spec.durable, seq, part + 1)
                continue
            try:
                async with asyncio.timeout(timeout_s):
                    await handler(one, msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind, delay = await self._classify(exc, probe)
                if kind == "later":
                    log.warning(
                        "%s paused at %s %s: %r",
                        spec.durable,
                        event_type(one),
                        one.event_id,
                        exc,
                    )
                    return delay
                if batch and kind == "failed" and isinstance(exc, NotYet):
                    # It waits alone; the batch's other readings go on now.
                    log.info(
                        "%s: %s %s waits alone: %s",
                        spec.durable,
                        event_type(one),
                        one.event_id,
                        exc,
                    )
                    if not await self._split_out(msg, spec.durable, one, seq, part):
                        return None
                    split.add(printer_of(one) or "")
                    self._progress.advance(spec.durable, seq, part + 1)
                    continue
                failures = self._failures.add(spec.durable, seq, part)
                if kind == "poison" or failures >= self.retry.poison_after:
                    # Forgotten only once set aside: a failed dead-letter write keeps the count.
                    if not batch:
                        if await self._set_aside(msg, spec.durable, repr(exc), one):
                            self._failures.forget(spec.durable, seq, part)
                        return None
                    if not await self._set_aside_part(msg, spec.durable, repr(exc), one, part):
                        return None
                    self._failures.forget(spec.durable, seq, part)
                else:
                    # Back-off grows with every delivery of the event (outage retries
                    # included); a batch's deliveries also count its earlier parts' failures,
                    # so one of its parts counts its own failures only.
                    deliveries = 1 if batch or meta is None else meta.num_delivered
                    delay = self.retry.delay(max(failures, deliveries))
                    log.warning(
                        "handler failed for %s %s (failure %d of %d), retry in %.1fs: %r",
                        event_type(one),
                        one.event_id,
                        failures,
                        self.retry.poison_after,
                        delay,
                        exc,
                    )
                    await msg.nak(delay=delay)
                    return None
            else:
                self._failures.forget(spec.durable, seq, part)
            if batch:
                self._progress.advance(spec.durable, seq, part + 1)
        if batch:
            self._progress.forget(spec.durable, seq)
        await msg.ack()
        return None

    async def _split_out(self, msg: Msg, durable: str, event: Event, seq: int, part: int) -> bool:
        """Publish one event of a batch message again alone, for durable only; False (message
        nak'ed, retried later) if the publish was not acked.

        On the event's own subject, with FOR_HEADER naming the consumer (the others ack it
        unhandled: they have handled it in the batch) and a Nats-Msg-Id from the consumer and the
        event's id, so a redelivered batch cannot publish it twice (within the stream's duplicate
        window; past it the consumer drops the repeat by event id). The batch goes on only once
        the publish is acked: the event is kept before its batch is.
        """
        try:
            await self.publish_json(
                event.subject(self.subjects),
                event.to_bytes(),
                event_id=f"alone:{durable}:{event.event_id}",
                type_=event_type(event),
                headers={FOR_HEADER: durable},
            )
        except (nats.errors.Error, TimeoutError) as exc:
            # Counted as the event's failure: a publish refused every time (a deployment whose
            # NATS users lack the api's permission on reading subjects) ends among the dead
            # letters like any failure, rather than holding the batch's later readings forever.
            failures = self._failures.add(durable, seq, part)
            if failures >= self.retry.poison_after:
                log.error(
                    "could not split %s out of its batch %d times (%r): set aside",
                    event.event_id,
                    failures,
                    exc,
                )
                error = f"could not split out of its batch: {exc!r}"
                if not await self._set_aside_part(msg, durable, error, event, part):
                    return False
                self._failures.forget(durable, seq, part)
                return True
            delay = self.retry.delay(failures)
            log.warning(
                "could not split %s out of its batch (%r, failure %d of %d): retry in %.1fs",
                event.event_id,
                exc,
                failures,
                self.retry.poison_after,
                delay,
            )
            await msg.nak(delay=delay)
            return False
        self._failures.forget(durable, seq, part)
        return True

    async def _set_aside_part(
        self, msg: Msg, durable: str, error: str, event: Event | UnreadablePart, part: int
    ) -> bool:
        """Move one event of a batch message to the dead letters; False (message nak'ed) if that failed."""
        deliveries = msg.metadata.num_delivered if msg.metadata else 1
        try:
            await self.dead_letter(msg, durable, error, deliveries, event, part=part)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not set aside part of %s (%r): retrying it later", msg.subject, exc)
            await msg.nak(delay=self.retry.cap_s)
            return False
        kind = event.event_type if isinstance(event, UnreadablePart) else event_type(event)
        log.error(
            "set aside %s %s (of a batch) for %s after %d deliveries: %s",
            kind or "reading",
            event.event_id,
            durable,
            deliveries,
            error,
        )
        return True

    async def _serve_replays(
        self,
        spec: ConsumerSpec,
        handler: Handler,
        stop: asyncio.Event,
        timeout_s: float,
        probe: Probe | None,
    ) -> None:
        """Take requests to replay this consumer's dead letters until stop is set."""
        stream = dead_stream(self.subjects)
        replays = ConsumerSpec(
            durable=f"{spec.durable}_replay",
            filter_subject=replay_subject(self.subjects, spec.durable),
            ack_wait_s=max(timeout_s, 30.0),
        )

        async def bind() -> JetStreamContext.PullSubscription:
            await self.ensure_consumer(replays, stream)
            return await self.js.pull_subscribe_bind(replays.durable, stream=stream)

        # Set up beside the consumer, maybe while a cluster elects a leader: a timeout here took
        # the whole service down (tests/test_cluster.py, a node killed as the api started).
        sub = await _set_up_when_answered(bind, replays.durable, stop)
        if sub is None:
            return
        try:
            while not stop.is_set():
                try:
                    msgs = await _fetch_unless_stopped(sub, 8, REPLAY_FETCH_S, stop)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except nats.errors.ConnectionClosedError:
                    return
                except nats.errors.Error as exc:
                    await pause_on_bus_error(exc, replays.durable, stop)
                    continue
                for request in msgs or ():
                    await self._replay(request, spec, handler, timeout_s, probe)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _replay(
        self,
        request: Msg,
        spec: ConsumerSpec,
        handler: Handler,
        timeout_s: float,
        probe: Probe | None,
    ) -> None:
        """Handle one replay request: the dead letter goes through handler and, if taken, is removed."""
        stream = dead_stream(self.subjects)
        seq = _int((request.headers or {}).get("Tw-Dead-Seq"))
        try:
            raw = await self.js.get_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            await request.ack()  # replayed already (or never there): nothing to do
            return
        letter = DeadLetter.from_raw(seq, raw.headers, raw.data or b"")
        if letter.consumer != spec.durable:
            await request.ack()
            return
        try:
            for event in unbatched(parse_event(letter.data)):
                async with asyncio.timeout(timeout_s):
                    await handler(event, request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind, delay = (
                ("poison", 0.0)
                if isinstance(exc, UnreadableEvent)
                else await self._classify(exc, probe)
            )
            if kind == "later":
                await request.nak(delay=delay or self.retry.cap_s)
                return
            log.error("replay of dead letter %d for %s failed, kept: %r", seq, spec.durable, exc)
            await request.ack()
            return
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_msg(stream, seq)
        log.info("replayed dead letter %d (%s) for %s", seq, letter.event_id, spec.durable)
        await request.ack()

    async def subscribe_events(
        self,
        filter_subject: str,
        *,
        stop: asyncio.Event,
        handler: Callable[[Event], Awaitable[None]],
    ) -> None:
        """Read live events (no durable state, nothing replayed) until stop is set; bad ones are skipped."""
        sub = await self.nc.subscribe(filter_subject)
        try:
            while not stop.is_set():
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                try:
                    for event in parse_parts(msg.data).events():
                        await handler(event)
                except UnreadableEvent as exc:
                    log.warning("skipped unreadable live message on %s: %s", msg.subject, exc)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def key_value(
        self, name: str, *, history: int = 1, ttl_s: float | None = None
    ) -> KeyValue:
        """Return the KV bucket named (prefixed), creating it if needed; its replicas only ever grow."""
        bucket = self.subjects.name(name)
        try:
            kv = await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            try:
                return await self.js.create_key_value(
                    KeyValueConfig(
                        bucket=bucket,
                        history=history,
                        ttl=ttl_s,
                        storage=StorageType.FILE,
                        replicas=self.replicas,
                    )
                )
            except nats.js.errors.BadRequestError:
                kv = await self.js.key_value(bucket)
        # A bucket is a stream KV_<bucket>: raise its replicas like any stream's, nothing else
        # (discard new is what nats-py gives every bucket: said here so the merge has nothing to note).
        await self.ensure_stream(
            StreamConfig(name=f"KV_{bucket}", num_replicas=self.replicas, discard=DiscardPolicy.NEW)
        )
        if ttl_s is not None:
            await self._bound_bucket_age(f"KV_{bucket}", ttl_s)
        return kv

    async def _bound_bucket_age(self, stream: str, ttl_s: float) -> None:
        """Give an existing bucket at least ttl_s of max age, and one if it had none.

        A bucket created without a TTL (before it needed one) grows forever: it gets ttl_s. A
        shorter TTL is raised (the events stream was given a longer max age); a longer one, an
        operator's, is kept.
        """
        info = await self.js.stream_info(stream)
        current = info.config.max_age or 0
        if current > 0 and current >= ttl_s:
            return
        log.info("bucket stream %s: max age %ss -> %ss", stream, current or "unlimited", ttl_s)
        await self.js.update_stream(dataclasses.replace(info.config, max_age=ttl_s))

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Finish in-flight work and close the connection; never hangs past timeout_s.

        A publish still waiting for its ack keeps its deadline while the connection drains, and
        fails (ConnectionClosedError) once it is closed: nothing waits on a closed connection. Such
        a failure means unconfirmed, not unsent (nats-py drains the ack inbox before it flushes the
        publishes): whoever publishes again does so with the same Nats-Msg-Id, deduped.
        """
        try:
            if self.nc.is_closed:
                return
            try:
                async with asyncio.timeout(timeout_s):
                    await self.nc.drain()
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("NATS drain did not finish cleanly: %r", exc)
                with contextlib.suppress(Exception):
                    await self.nc.close()
        finally:
            if self._acks is not None:
                self._acks.stop()


class _AckInbox:
    """The replies (acks) to one connection's JetStream publishes, on one wildcard subscription.

    nats-py's request gives every publish a reply token, a future and a timer of its own
    (asyncio.wait_for); here a publish costs a future and a dict entry, and one loop timer, set
    for the earliest deadline of a publish waiting, fails those unanswered past their deadline
    (TimeoutError, as a request does). An ack does not cancel the timer: when it fires, it sets
    itself for the next deadline, if a publish still waits. With nothing waiting there is no
    timer (a task sweeping every 0.25 s woke an idle process 4 times a second, issue 15).
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox()
        self.pending: dict[str, tuple[float, asyncio.Future[Msg]]] = {}
        self.count = 0
        self.ready: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    async def _start(self) -> None:
        await self.nc.subscribe(f"{self.prefix}.*", cb=self._on_reply)

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str], timeout_s: float
    ) -> bool:
        """Publish data to the stream, wait for its ack; return False when it was a repeat."""
        ready = self.ready
        if ready is None or (ready.done() and (ready.cancelled() or ready.exception())):
            ready = self.ready = asyncio.ensure_future(self._start())  # (again, if it failed)
        await asyncio.shield(ready)
        self.count += 1
        key = str(self.count)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        deadline = loop.time() + timeout_s
        self.pending[key] = (deadline, future)
        if self.timer is None or deadline < self.timer.when():
            self._expire_at(loop, deadline)
        try:
            await self.nc.publish(subject, data, reply=f"{self.prefix}.{key}", headers=headers)
            reply = await future
        finally:
            self.pending.pop(key, None)
        if reply.headers and reply.headers.get("Status") == "503":
            raise nats.js.errors.NoStreamResponseError
        answer = json.loads(reply.data)
        if "error" in answer:
            raise nats.js.errors.APIError.from_error(answer["error"])
        return not answer.get("duplicate", False)

    async def _on_reply(self, msg: Msg) -> None:
        entry = self.pending.pop(msg.subject.rpartition(".")[2], None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(msg)

    def _expire_at(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = loop.call_at(deadline, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the publishes past their deadline; set the timer for the next one waiting."""
        self.timer = None
        now, earliest = loop.time(), math.inf
        for key, (deadline, future) in list(self.pending.items()):
            if deadline <= now:
                self.pending.pop(key, None)
                if not future.done():
                    future.set_exception(nats.errors.TimeoutError())
            elif deadline < earliest:
                earliest = deadline
        if earliest < math.inf:
            self._expire_at(loop, earliest)

    def stop(self) -> None:
        """End the deadline timer and fail every publish still waiting (the connection is closed)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(nats.errors.ConnectionClosedError())
        self.pending.clear()


async def _unless_stopped(connecting: Awaitable[Client], stop: asyncio.Event) -> Client:
    """Return the connected client, or raise BusStopped as soon as stop is set.

    Cancelled (Bus.connect's bound on one attempt, or the caller giving up), the attempt is ended
    too: nats-py's first connect retries forever with reconnects on, so an attempt left running
    kept dialling (one more each retry), logging every refusal, and connected unseen if NATS came.
    """
    attempt = asyncio.ensure_future(connecting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await _abandon(attempt)
        raise
    finally:
        stopped.cancel()
    if attempt.done():
        return attempt.result()
    await _abandon(attempt)
    raise BusStopped("stopped while connecting to NATS")


async def _abandon(attempt: asyncio.Future[Client]) -> None:
    """End a connect attempt nobody waits for: cancel it, or close the client it made meanwhile."""
    attempt.cancel()
    # Waited for, not awaited: its own error (or cancellation) is not ours to raise. Bounded: a
    # connect that swallowed the cancellation must not hold its caller too.
    await asyncio.wait({attempt}, timeout=ABANDON_WAIT_S)
    if not attempt.done():
        log.warning("a NATS connect attempt did not end when cancelled")
        return
    if attempt.cancelled() or attempt.exception() is not None:
        return
    with contextlib.suppress(Exception):
        await attempt.result().close()


async def _fetched(ahead: asyncio.Task[list[Msg]] | None) -> list[Msg]:
    """Return what a fetch ahead brought ([] if none, failed or cancelled), waiting for it to end."""
    if ahead is None:
        return []
    with contextlib.suppress(asyncio.CancelledError, Exception):
        return await ahead
    return []


async def _fetch_unless_stopped(
    sub: JetStreamContext.PullSubscription, batch: int, timeout_s: float, stop: asyncio.Event
) -> list[Msg] | None:
    """Fetch up to batch messages, waiting up to timeout_s; None at once when stop is set.

    A long wait costs nothing (the server answers the waiting pull as soon as there is a
    message) and each wait is two pull requests: idle consumers wait long, yet stop at once.
    """
    fetching = asyncio.ensure_future(sub.fetch(batch, timeout=timeout_s))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        fetching.cancel()
        raise
    finally:
        stopping.cancel()
    if not fetching.done():
        fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await fetching
        return None
    return fetching.result()


async def _set_up_when_answered(
    set_up: Callable[[], Awaitable[T]], consumer: str, stop: asyncio.Event
) -> T | None:
    """Return set_up()'s result, tried again after a pause while NATS fails (None: stopped, closed).

    A cluster electing a leader (a node lost) times out or answers 503 for a few seconds: a
    consumer sets up again after a pause instead of taking the service down.
    """
    while True:
        try:
            return await set_up()
        except nats.errors.ConnectionClosedError:
            return None
        except nats.errors.Error as exc:
            if stop.is_set():
                return None
            await pause_on_bus_error(exc, consumer, stop)


async def pause_on_bus_error(exc: Exception, consumer: str, stop: asyncio.Event) -> None:
    """Log a failed pull (a leader election, a restart) and wait a moment before the next."""
    log.warning("pull for %s failed, retrying: %r", consumer, exc)
    await sleep_until_stopped(stop, PULL_RETRY_PAUSE_S)


async def _only_for(durable: str, msgs: list[Msg]) -> list[Msg]:
    """Return the messages for durable; ack those published for another consumer (FOR_HEADER)."""
    mine: list[Msg] = []
    for msg in msgs:
        target = msg.headers.get(FOR_HEADER) if msg.headers else None
        if target is None or target == durable:
            mine.append(msg)
        else:
            with contextlib.suppress(Exception):
                await msg.ack()
    return mine


def _is_batch(msg: Msg) -> bool:
    """Return whether msg is on a batch subject (subjects.BATCH_KEY), without reading it."""
    return msg.subject.endswith(_BATCH_SUFFIX)


_BATCH_SUFFIX = f".{BATCH_KEY}"


def _limits(config: StreamConfig) -> str:
    return (
        f"R{config.num_replicas or 1}, max_bytes={config.max_bytes}, max_msgs={config.max_msgs}, "
        f"max_age={config.max_age}s"
    )


def event_type(event: Event) -> str:
    """Return the versioned type string of an event."""
    return str(getattr(event, "type", type(event).__name__))


def _auth(user: str | None, password: str | None, creds: str | None) -> dict[str, Any]:
    """Return nats.connect's credentials: a creds file, or a user (replies on its own inbox)."""
    if creds:
        return {"user_credentials": creds}
    if not user:
        return {}
    # A user's permissions allow replies on _INBOX.<user>.> only: no one reads another's replies.
    return {"user": user, "password": password or "", "inbox_prefix": f"_INBOX.{user}"}


async def _log_error(exc: Exception) -> None:
    log.warning("NATS: %r", exc)


async def wait_for_event(
    bus: Bus,
    filter_subject: str,
    predicate: Callable[[Event], bool],
    *,
    timeout_s: float,
    deliver_all: bool = True,
) -> Event:
    """Return the first event on filter_subject (from the stream's start) matching predicate; for tests and tools."""
    stream = bus.subjects.events_stream
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL if deliver_all else DeliverPolicy.NEW,
        filter_subject=filter_subject,
        inactive_threshold=30.0,
    )
    sub = await bus.js.pull_subscribe(filter_subject, stream=stream, config=config)
    deadline = time.monotonic() + timeout_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                msgs = await sub.fetch(32, timeout=min(1.0, left))
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for msg in msgs:
                with contextlib.suppress(UnreadableEvent):
                    for ev in parse_parts(msg.data).events():
                        if predicate(ev):
                            return ev
        raise TimeoutError(f"no matching event on {filter_subject} within {timeout_s}s")
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


__all__ = [
    "Bus",
    "BusError",
    "BusStopped",
    "ConsumerSpec",
    "DeadLetter",
    "Handler",
    "NotYet",
    "Poison",
    "Probe",
    "RetryLater",
    "RetryPolicy",
    "dead_stream",
    "dead_subject",
    "pause_on_bus_error",
    "positions_max_age",
    "replay_subject",
    "retry_delay",
    "wait_for_event",
]
