"""The event bus: NATS JetStream with retrying connect, idempotent streams, deduped publish, safe consume."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

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

from tonerwatch_shared.events import EVENT_AREAS, Event, UnreadableEvent, parse_event
from tonerwatch_shared.lifecycle import sleep_until_stopped
from tonerwatch_shared.settings import CommonSettings
from tonerwatch_shared.streams import merge_stream_config
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger(__name__)

Handler = Callable[[Event, Msg], Awaitable[None]]
# Applies a whole fetched batch at once (one transaction): all succeed together or none does.
BatchHandler = Callable[[list[Event]], Awaitable[None]]
PUBLISH_TIMEOUT_S = 5.0
PULL_RETRY_PAUSE_S = 0.5


class BusError(Exception):
    """The bus could not be reached or set up; the message says which server and what to do."""


class BusStopped(BusError):
    """Stop was asked for while still connecting: nothing to clean up, the service just ends."""


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer: who it is, what it reads, how it retries."""

    durable: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 20
    max_ack_pending: int = 1000
    deliver_new_only: bool = False


def retry_delay(num_delivered: int, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Return the nak delay for a message delivered num_delivered times (exponential, capped)."""
    return float(min(cap_s, base_s * 2 ** max(0, num_delivered - 1)))


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
                            **_auth(user, password, creds),
                        ),
                        stop,
                    )
                return cls(nc, subjects, max_age_s=max_age_s, source=name)
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
        refused: Exception | None = None
        for _ in range(3):
            try:
                info = await self.js.stream_info(name)
            except nats.js.errors.NotFoundError:
                try:
                    await self.js.add_stream(config)
                    return
                except nats.js.errors.BadRequestError as exc:
                    refused = exc  # another replica created it meanwhile: merge into theirs
                    continue
            merge = merge_stream_config(info.config, config)
            for note in merge.kept:
                log.warning("stream %s: %s; left as the operator set it", name, note)
            if merge.config is not None:
                log.info("raising stream %s to %s", name, _limits(merge.config))
                await self.js.update_stream(merge.config)
            return
        raise BusError(
            f"NATS refused to create stream {name} ({_limits(config)}): {refused!r}; the server "
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
        ack = await self.js.publish(
            event.subject(self.subjects),
            event.to_bytes(),
            timeout=timeout_s,
            headers={"Nats-Msg-Id": str(event.event_id), "Tw-Event-Type": event_type(event)},
        )
        return not ack.duplicate

    async def ensure_consumer(self, spec: ConsumerSpec, stream: str | None = None) -> None:
        """Create or update a durable pull consumer."""
        stream = stream or self.subjects.events_stream
        config = ConsumerConfig(
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait_s,
            max_deliver=spec.max_deliver,
            max_ack_pending=spec.max_ack_pending,
            filter_subject=spec.filter_subject,
            deliver_policy=DeliverPolicy.NEW if spec.deliver_new_only else DeliverPolicy.ALL,
        )
        await self.js.add_consumer(stream, config)

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
    ) -> None:
        """Pull events until stop is set: ack on success, nak with back-off on failure, term poison.

        With batch_handler, each fetched batch is first offered whole (one transaction instead of
        one per event: what lets the api keep up with a large fleet); if it fails, the batch's
        events go one by one through handler, so one bad event delays only itself.
        """
        stream = stream or self.subjects.events_stream
        await self.ensure_consumer(spec, stream)
        sub = await self.js.pull_subscribe_bind(spec.durable, stream=stream)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(batch, timeout=fetch_timeout_s)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except nats.errors.ConnectionClosedError:
                    return
                except nats.errors.Error as exc:
                    # A cluster electing a new leader (node lost) or a server restarting answers
                    # 503 / no responders for a few seconds: wait and pull again, never crash.
                    await pause_on_bus_error(exc, spec.durable, stop)
                    continue
                if batch_handler is not None and len(msgs) > 1:
                    msgs = await self._handle_batch(msgs, batch_handler, handler_timeout_s)
                for msg in msgs:
                    await self._handle(msg, handler, spec, handler_timeout_s)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _handle_batch(
        self, msgs: list[Msg], handler: BatchHandler, timeout_s: float
    ) -> list[Msg]:
        """Apply msgs as one batch and ack them; return those still to handle one by one."""
        readable: list[tuple[Msg, Event]] = []
        for msg in msgs:
            try:
                readable.append((msg, parse_event(msg.data)))
            except UnreadableEvent as exc:
                log.error("terminated unreadable message on %s: %s", msg.subject, exc)
                await msg.term()
        try:
            async with asyncio.timeout(timeout_s):
                await handler([event for _, event in readable])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("batch of %d failed, applying one by one: %r", len(readable), exc)
            return [msg for msg, _ in readable]
        for msg, _ in readable:
            await msg.ack()
        return []

    async def _handle(
        self, msg: Msg, handler: Handler, spec: ConsumerSpec, timeout_s: float
    ) -> None:
        try:
            event = parse_event(msg.data)
        except UnreadableEvent as exc:
            # Poison: redelivering it can never help, so terminate it and say so once.
            log.error("terminated unreadable message on %s: %s", msg.subject, exc)
            await msg.term()
            return
        delivered = msg.metadata.num_delivered if msg.metadata else 1
        try:
            async with asyncio.timeout(timeout_s):
                await handler(event, msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if delivered >= spec.max_deliver:
                log.error(
                    "giving up on %s %s after %d deliveries: %r",
                    event_type(event),
                    event.event_id,
                    delivered,
                    exc,
                )
                await msg.term()
                return
            delay = retry_delay(delivered)
            log.warning(
                "handler failed for %s %s (delivery %d), retry in %.0fs: %r",
                event_type(event),
                event.event_id,
                delivered,
                delay,
                exc,
            )
            await msg.nak(delay=delay)
            return
        await msg.ack()

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
                    await handler(parse_event(msg.data))
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
        # A bucket is a stream KV_<bucket>: raise its replicas like any stream's, nothing else.
        await self.ensure_stream(StreamConfig(name=f"KV_{bucket}", num_replicas=self.replicas))
        return kv

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Finish in-flight work and close the connection; never hangs past timeout_s."""
        if self.nc.is_closed:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self.nc.drain()
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("NATS drain did not finish cleanly: %r", exc)
            with contextlib.suppress(Exception):
                await self.nc.close()


async def _unless_stopped(connecting: Awaitable[Client], stop: asyncio.Event) -> Client:
    """Return the connected client, or raise BusStopped as soon as stop is set."""
    attempt = asyncio.ensure_future(connecting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if attempt.done():
        return attempt.result()
    attempt.cancel()
    with contextlib.suppress(BaseException):
        await attempt
    raise BusStopped("stopped while connecting to NATS")


async def pause_on_bus_error(exc: Exception, consumer: str, stop: asyncio.Event) -> None:
    """Log a failed pull (a leader election, a restart) and wait a moment before the next."""
    log.warning("pull for %s failed, retrying: %r", consumer, exc)
    await sleep_until_stopped(stop, PULL_RETRY_PAUSE_S)


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
                    ev = parse_event(msg.data)
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
    "Handler",
    "pause_on_bus_error",
    "retry_delay",
    "wait_for_event",
]
