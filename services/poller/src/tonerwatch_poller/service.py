"""The poller: keeps the monitored fleet, polls each printer on time, publishes `supply-reading`.

How replicas share the fleet (leases.py): the fleet is cut into a fixed number of partitions (a
hash of each printer's key), and a work-queue stream holds one *partition job* per partition
(one message per subject, a second one refused). A replica holds the partition jobs it received,
unacknowledged, telling JetStream "in progress" every round (a share of the ack wait), and polls
those partitions' printers on their slots (schedule.py) from a local timer (timers.py): a steady
poll sends NATS nothing but its reading. A replica takes at most its share of the partitions
(replicas announce themselves in a small KV bucket) and hands back what it holds beyond; when it
stops it hands every partition back at once (nak), after writing its printers' last poll times;
when it dies its partitions go to the others after the ack wait. No printer is polled by two
replicas at once (a replica whose lease lapsed sees it taken and lets it go), none is forgotten.

A replica that takes a partition continues each printer from its last poll time in KV (a
healthy printer's is rewritten only every HEALTH_REFRESH_INTERVALS intervals; while it is that
current the printer was polled on its slots: schedule.assumed_last_poll), so polls stay one
interval apart across a hand-over. A printer never polled (added to a held partition: a
configuration change reaching the replica's mirror) is polled as soon as a slot is free, oldest
first, its first polls taking at most FIRST_POLLS_SHARE of the slots, then keeps its slot; a
removed one is not polled again. `tonerwatch_poll_jobs_overdue` counts printers nobody has polled in time.

NATS traffic of a steady poll (issue 15): the reading's publish (and its ack), nothing else.
Configuration and health are read from in-memory mirrors of their KV buckets fed by watches
(mirror.py); health is written when it changes (failures, reachability) and otherwise only every
HEALTH_REFRESH_INTERVALS intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from pydantic import Field

from tonerwatch_poller import schedule
from tonerwatch_poller.batching import ReadingBatcher
from tonerwatch_poller.leases import (
    DEFAULT_PARTITIONS,
    Beat,
    live,
    partition_of,
    replicas_on,
    share,
    taken_by_others,
)
from tonerwatch_poller.mirror import KvMirror, latest_values
from tonerwatch_poller.timers import Timers
from tonerwatch_shared import failures, ordering
from tonerwatch_shared.bus import Bus, ConsumerSpec, Handler, pause_on_bus_error
from tonerwatch_shared.checks import check_host, credential_problems
from tonerwatch_shared.events import (
    READING_BATCH_MAX,
    Event,
    PollRequested,
    PrinterConfigured,
    PrinterReachable,
    PrinterRemoved,
    PrinterUnreachable,
    SnmpCredentials,
    SupplyReading,
)
from tonerwatch_shared.ipp import IppError
from tonerwatch_shared.lifecycle import stop_event
from tonerwatch_shared.logs import current_site
from tonerwatch_shared.ops import (
    Check,
    bus_check,
    consumer_lag_gauge,
    not_connected,
    serve_ops,
    stream_fill_gauge,
)
from tonerwatch_shared.reading import Parsed, SteadyReading, read_printer, read_printer_ipp
from tonerwatch_shared.sealing import Sealer, SealingError, open_credentials
from tonerwatch_shared.settings import CommonSettings
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.errors import SnmpError
from tonerwatch_shared.snmp.poll import PollPlan
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.subjects import Subjects, token

log = logging.getLogger("tonerwatch.poller")

FAILED_JOB_RETRY_S = 30.0
# A "poll now" older than this is history (a new replica replaying the stream), not a request.
POLL_REQUEST_MAX_AGE_S = 120.0
JOB_AREA = "polljob"  # outside the events stream's areas, so the two streams never overlap
# Partition jobs: <root>.<site>.polljob.part.<n>. Before them every printer had a job of its own on
# <root>.<site>.polljob.<printer>, taken through RETIRED_DURABLE: both retired at start.
PARTITION_WHAT = f"{JOB_AREA}.part"
RETIRED_DURABLE = "poller_jobs"
LEASE_DURABLE = "poller_leases"
# The site token of the fleet's partitions, held by replicas serving every site.
FLEET = "_fleet"
# Replicas' heartbeats (Beat), one key per replica; old keys of dead replicas age out.
REPLICAS_BUCKET = "POLLER_REPLICAS"
REPLICAS_TTL_S = 3600.0
# A healthy printer's health record is rewritten at least every this many intervals (its last poll
# time may lag by that much: PrinterHealth.refresh_s); at 10, 0.1 KV writes per steady poll.
HEALTH_REFRESH_INTERVALS = 10
# The long-lived pull request for partition jobs (_JobPull): how long one waits for jobs, how
# often the server says it is still there while none come.
PULL_EXPIRES_S = 30.0
PULL_HEARTBEAT_S = 5.0
# How often the lease loop looks at its share and its pull requests when its connection does not
# report reconnects, or a request failed to go out; otherwise it sleeps until woken or until the
# next thing only time changes (Poller._leases_idle_s). Also the slack of a pull request's loss.
PULL_CHECK_S = 1.0
# A round (in progress for every held partition, the heartbeat, each consumer's count) every
# this share of the job ack wait: a replica must miss three before its partitions lapse.
ROUND_SHARE = 0.3
# The share of poll_concurrency the first polls of printers never polled may take at once (full
# walks of seconds each): the rest is left to polls on their slots.
FIRST_POLLS_SHARE = 0.75
# Distinct credentials shared between printers' records, at most (sealed ones are each unique).
SHARED_CREDENTIALS_MAX = 1024
# Addresses whose check (an IP literal or a host name) is remembered: a fleet's worth.
CHECKED_HOSTS_KEPT = 16384
# Longest wait, when handing partitions back, for their polls under way and last poll times.
HANDOVER_TIMEOUT_S = 10.0


class Settings(CommonSettings):
    """Poller knobs (env TONERWATCH_<NAME>)."""

    poll_timeout_s: float = Field(default=2.0, gt=0, description="Per SNMP request")
    poll_retries: int = Field(default=1, ge=0)
    poll_concurrency: int = Field(
        default=64, ge=1, description="Printers polled at once per replica"
    )
    unreachable_after: int = Field(
        default=3, ge=1, description="Failed polls in a row before unreachable"
    )
    ipp_timeout_s: float = Field(default=5.0, gt=0, description="Per IPP request")
    job_ack_wait_s: float = Field(
        default=60.0,
        gt=0,
        description="A dead replica's partitions go to the others after this long",
    )
    poll_partitions: int = Field(
        default=DEFAULT_PARTITIONS,
        ge=1,
        le=4096,
        description="Partitions of the fleet (of each site's, with TONERWATCH_SITES) that replicas "
        "share: the most replicas that can share one; the same on every replica",
    )
    reading_batch_max: int = Field(
        default=128,
        ge=1,
        le=READING_BATCH_MAX,
        description="Readings per published batch at most; 1 publishes every reading alone, as "
        "pollers before batches did (consumers older than the batch event: README)",
    )
    reading_batch_wait_s: float = Field(
        default=0.1,
        ge=0,
        le=1.0,
        description="How long a reading waits for others to share its batch, at most",
    )


@dataclass
class PrinterHealth:
    """What the poller remembers between polls of one printer (kept in KV, shared by replicas)."""

    failures: int = 0
    unreachable: bool = False
    last_success_at: str | None = None
    last_error: str | None = None
    # The failure kind last published in a PrinterUnreachable (a new kind is published again).
    failure: str | None = None
    # Unix time of the last poll, ok or failed: what decides when the next is due.
    last_poll_at: float | None = None
    # The last seq stamped on an event about the printer (tonerwatch_shared.ordering).
    seq: int | None = None
    # Set on a healthy printer's record: last_poll_at is rewritten at least this often while polls
    # succeed, so it may lag the real last poll by up to this (None: it is exact).
    refresh_s: float | None = None
    # This replica's own, not stored: the stored record (the mirror's bytes, by identity) this
    # one was made against, its last poll time, and that its substance() is this one's. While the
    # mirror still holds those bytes, a steady poll need not read them again (issue 15).
    seen: bytes | None = field(default=None, compare=False, repr=False)
    seen_poll_at: float | None = field(default=None, compare=False, repr=False)

    def copy(self) -> PrinterHealth:
        """Return a copy (what dataclasses.replace(self) returns, without its per-call field walk)."""
        new = object.__new__(PrinterHealth)
        new.__dict__.update(self.__dict__)
        return new

    def substance(self) -> tuple[object, ...]:
        """Return what other replicas must see at once when it changes (not the poll times)."""
        return (self.failures, self.unreachable, self.last_error, self.failure, self.refresh_s)

    def next_seq(self) -> int:
        """Return the seq of the printer's next event, and remember it."""
        self.seq = ordering.next_seq(self.seq)
        return self.seq

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "failures": self.failures,
                "unreachable": self.unreachable,
                "last_success_at": self.last_success_at,
                "last_error": self.last_error,
                "failure": self.failure,
                "last_poll_at": self.last_poll_at,
                "seq": self.seq,
                "refresh_s": self.refresh_s,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> PrinterHealth:
        if not data:
            return cls()
        try:
            raw = json.loads(data)
            return cls(
                **{
                    k: raw[k]
                    for k in (
                        "failures",
                        "unreachable",
                        "last_success_at",
                        "last_error",
                        "failure",
                        "last_poll_at",
                        "seq",
                        "refresh_s",
                    )
                    if k in raw
                }
            )
        except (ValueError, TypeError):
            return cls()


class PollerMetrics:
    """Prometheus metrics of one poller replica, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Registered first, so collected first: what ok_poll kept is in the counters before any
        # of them is read (scrape, get_sample_value).
        self.registry.register(_FlushFirst(self.flush))
        # A successful poll's counts, kept as plain numbers until the next collection (or
        # FLUSH_EVERY polls): per (protocol), polls; bytes sent, received; the durations.
        self._ok: dict[str, int] = {}
        self._sent = 0
        self._received = 0
        self._durations: list[float] = []
        self.polls = Counter(
            "tonerwatch_polls", "Printer polls", ["result", "protocol"], registry=self.registry
        )
        self.bytes = Counter(
            "tonerwatch_poll_bytes",
            "Bytes on the wire for polls",
            ["direction"],
            registry=self.registry,
        )
        # Each series bound at its first use: labels() at every poll cost a lookup under a lock.
        self._polls: dict[tuple[str, str], Counter] = {}
        self.sent = self.bytes.labels(direction="sent")
        self.received = self.bytes.labels(direction="received")
        self.duration = Histogram(
            "tonerwatch_poll_duration_seconds",
            "Time of one successful poll",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.unreachable = Counter(
            "tonerwatch_printers_unreachable",
            "Printers that became unreachable",
            registry=self.registry,
        )
        self.overdue = Gauge(
            "tonerwatch_poll_jobs_overdue",
            "Monitored printers whose poll is overdue (no poll within 1.5 intervals + job ack wait); "
            "fleet-wide, the same on every replica",
            registry=self.registry,
        )
        self.partitions = Gauge(
            "tonerwatch_poll_partitions_held",
            "Partitions of the fleet this replica holds (polls the printers of)",
            registry=self.registry,
        )
        self.handed_over = Counter(
            "tonerwatch_poll_partitions_handed_over",
            "Partitions this replica handed back (stopping, or beyond its share) or let go (lapsed)",
            registry=self.registry,
        )

    FLUSH_EVERY = 1000  # polls kept at most between two flushes (bounded when never scraped)

    def ok_poll(self, protocol: str, sent: int, received: int, duration_s: float) -> None:
        """Count one successful poll: tonerwatch_polls_total{result="ok"}, the bytes, its
        duration; added to the metrics at the next collection (what a scrape reports is the same)."""
        ok = self._ok
        n = ok.get(protocol)
        if n is None:  # its series made now, as a poll counted at once would have
            self._counter("ok", protocol)
            n = 0
        ok[protocol] = n + 1
        self._sent += sent
        self._received += received
        durations = self._durations
        durations.append(duration_s)
        if len(durations) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Add what ok_poll kept to the metrics."""
        ok = self._ok
        for protocol, n in ok.items():
            if n:
                ok[protocol] = 0
                self._counter("ok", protocol).inc(n)
        sent, received, self._sent, self._received = self._sent, self._received, 0, 0
        if sent:
            self.sent.inc(sent)
        if received:
            self.received.inc(received)
        durations, self._durations = self._durations, []
        for duration_s in durations:
            self.duration.observe(duration_s)

    def _counter(self, result: str, protocol: str) -> Counter:
        counter = self._polls.get((result, protocol))
        if counter is None:
            counter = self._polls[result, protocol] = self.polls.labels(result, protocol)
        return counter

    def poll_done(self, result: str, protocol: str) -> None:
        """Count one poll (tonerwatch_polls_total)."""
        self._counter(result, protocol).inc()


class _FlushFirst:
    """A collector of no metrics that calls flush when collected (see PollerMetrics)."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        self._flush()
        return []


@dataclass
class _Lease:
    """A partition job this replica holds: its printers are polled here while it is held."""

    subject: str
    site: str  # the site of its printers (FLEET: every site)
    partition: int
    durable: str
    msg: Msg
    taken_at: float  # Unix time it was received (a later taking elsewhere means this one lapsed)


@dataclass
class Poller:
    """One poller replica: its bus, SNMP client, and what it learned of printers' layouts."""

    settings: Settings
    bus: Bus
    client: SnmpClient
    printers: KeyValue
    health: KeyValue
    metrics: PollerMetrics = field(default_factory=PollerMetrics)
    plans: dict[str, PollPlan] = field(default_factory=dict)
    # What each printer's last answer parsed to: an unchanged answer is not parsed again.
    parsed: dict[str, Parsed] = field(default_factory=dict)
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    sealer: Sealer = field(default_factory=lambda: Sealer(None))
    # Printers being polled by this replica right now: a "poll now" never doubles one under way.
    polling: set[str] = field(default_factory=set)
    # In-memory mirrors of the two buckets (start_mirrors); without them every read goes to KV.
    config_mirror: KvMirror | None = None
    health_mirror: KvMirror | None = None
    # Every monitored printer (by KV key) as the configuration mirror has it, parsed once per
    # change: its place in the fleet, what the overdue check reads, what a poll needs.
    monitored: dict[str, Monitored] = field(default_factory=dict)
    # The health this replica computed at its own last poll of each printer (exact times, seq).
    recent: dict[str, PrinterHealth] = field(default_factory=dict)
    # The overdue count's reading of each stored health record: (the bytes, last poll, lag).
    _overdue_times: dict[str, tuple[bytes | None, float | None, float]] = field(
        default_factory=dict
    )
    # Credentials shared by the printers configured with the same ones (a bounded table).
    _credentials: dict[SnmpCredentials, SnmpCredentials] = field(default_factory=dict)
    # The partitions held here, by subject; the printers scheduled here and their partition's subject.
    leases: dict[str, _Lease] = field(default_factory=dict)
    lease_of: dict[str, str] = field(default_factory=dict)
    timers: Timers = field(default_factory=Timers)
    # The poll a timer started, by KV key, while it runs (a hand-over waits for it).
    timed: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # This replica's key in the heartbeat bucket (unique per process run) and the bucket's mirror.
    replica_id: str = ""
    beats: KvMirror | None = None
    _wake: asyncio.Event | None = None
    _first_polls: int = 0  # first polls under way (started from timers.waiting)
    _sleep_until: float | None = None
    _leases_wake: asyncio.Event | None = None
    _beat_due: bool = False
    _created: dict[str, datetime] = field(default_factory=dict)

    # Where polls hand their readings: published together with those of polls made alongside.
    readings: ReadingBatcher = field(init=False)

    def __post_init__(self) -> None:
        if not self.replica_id:
            self.replica_id = f"{token(self.settings.instance)}-{uuid.uuid4().hex[:8]}"
        self.readings = ReadingBatcher(
            self.bus,
            source=f"poller/{self.settings.instance}",
            busy=lambda: len(self.polling),
            max_readings=self.settings.reading_batch_max,
            wait_s=self.settings.reading_batch_wait_s,
        )

    @property
    def subjects(self) -> Subjects:
        return self.bus.subjects

    async def start_mirrors(self) -> None:
        """Load both buckets into memory and follow their changes (reads then cost no round trip)."""
        self.config_mirror = KvMirror(self.printers, on_change=self._config_changed)
        await self.config_mirror.start()
        self.health_mirror = KvMirror(self.health)
        await self.health_mirror.start()

    async def stop_mirrors(self) -> None:
        """End the watches."""
        for mirror in (self.config_mirror, self.health_mirror):
            if mirror is not None:
                await mirror.stop()

    async def read_config(self, printer_id: str) -> Monitored | None:
        """Return the printer's configuration (None: not monitored), parsed once per change."""
        key = token(printer_id)
        if self.config_mirror is not None:
            await self.config_mirror.get_fresh(key)  # KV only on a miss (a new printer)
            return self.monitored.get(key)
        try:
            entry = await self.printers.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return self._monitored(key, entry.value) if entry.value else None

    def _monitored(self, key: str, raw: bytes) -> Monitored | None:
        """Return the printer configured as raw says (None: unreadable)."""
        try:
            return Monitored.parse(
                raw, partition_of(key, self.settings.poll_partitions), self._credentials
            )
        except ValueError:
            log.error("unreadable configuration of %s in KV", key)
            return None

    @property
    def jobs_stream(self) -> str:
        return self.subjects.name("POLLJOBS")

    def partition_subject(self, site: str, partition: int) -> str:
        """Return the subject of a partition's job (site FLEET: a partition of every site)."""
        return self.subjects.subject(site, PARTITION_WHAT, str(partition))

    async def ensure_jobs_stream(self) -> None:
        """Create the work-queue stream of partition jobs: at most one job per partition."""
        await self.bus.ensure_stream(
            StreamConfig(
                name=self.jobs_stream,
                description="TonerWatch poll jobs: one per partition of the monitored fleet",
                subjects=[self.subjects.area(JOB_AREA, keyed=True)],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                max_bytes=self.settings.polljobs_max_bytes,
                max_msgs_per_subject=1,
                discard=DiscardPolicy.NEW,
                discard_new_per_subject=True,
            )
        )

    # --- configuration -------------------------------------------------------------------------

    async def on_config(self, event: Event, _msg: Msg) -> None:
        """Keep the fleet in KV (every replica's mirror, and so its partitions, follow it)."""
        if isinstance(event, PollRequested):
            self.request_poll(event)
        elif isinstance(event, PrinterConfigured) and event.monitored:
            if self.config_mirror is not None:
                await self.config_mirror.put(token(event.printer_id), event.to_bytes())
            else:
                await self.printers.put(token(event.printer_id), event.to_bytes())
            log.info("monitoring %s at %s", event.printer_id, event.address)
        elif isinstance(event, (PrinterRemoved, PrinterConfigured)):
            if self.config_mirror is not None:
                await self.config_mirror.delete(token(event.printer_id))
            else:
                with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                    await self.printers.delete(token(event.printer_id))
            self._forget(token(event.printer_id), event.printer_id)

    def _forget(self, key: str, printer_id: str | None = None) -> None:
        """Drop what this replica learned of a printer it no longer polls."""
        printer = self.monitored.get(key)
        if printer_id is None and printer is not None:
            printer_id = printer.printer_id
        if printer_id is not None:
            self.plans.pop(printer_id, None)
            self.parsed.pop(printer_id, None)
            self.recent.pop(printer_id, None)

    def _config_changed(self, key: str) -> None:
        """Follow a printer's configuration change (any replica's) in the partitions held here."""
        raw = self.config_mirror.get(key) if self.config_mirror is not None else None
        printer = self._monitored(key, raw) if raw is not None else None
        if printer is None:  # removed (or unreadable: it cannot be polled)
            self._unschedule(key)
            self.monitored.pop(key, None)
            return
        self.monitored[key] = printer
        lease = self._lease_for(printer)
        if lease is None:
            self._unschedule(key)
            return
        self._schedule_from_health(key, printer, lease)

    def _lease_for(self, printer: Monitored) -> str | None:
        """Return the subject of the held partition the printer belongs to (None: not held here)."""
        if not self.leases:
            return None
        for owner in (FLEET, printer.site_id):
            subject = self.partition_subject(owner, printer.partition)
            if subject in self.leases:
                return subject
        return None

    def request_poll(self, event: PollRequested, now: float | None = None) -> bool:
        """Start polling the printer now, outside its schedule; return whether a poll started.

        The poll runs beside the scheduled ones (the configuration consumer is not held up by
        it); its recorded poll time moves the printer's next scheduled poll one interval on.
        """
        age = (now if now is not None else time.time()) - event.occurred_at.timestamp()
        if age > POLL_REQUEST_MAX_AGE_S or event.printer_id in self.polling:
            return False
        task = asyncio.create_task(self._poll_requested(event))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        return True

    async def _poll_requested(self, event: PollRequested) -> None:
        config = await self.read_config(event.printer_id)
        if config is None:
            return  # not monitored (or not this poller's site): nothing to poll
        current_site.set(config.site_id)
        log.info("poll of %s requested by %s", config.printer_id, event.requested_by or "?")
        try:
            await self.poll(config, await self.read_health(config.printer_id, config.key))
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("requested poll of %s not published (%r)", config.printer_id, exc)

    # --- the local schedule of the partitions held here -----------------------------------------

    def _schedule_from_health(self, key: str, config: Monitored, lease: str) -> None:
        """Set the printer's timer from its last poll: its next slot, or soon if it is due."""
        health = self._known_health(config.printer_id)
        due = schedule.due_on_taking(
            time.time(),
            last_poll_at=health.last_poll_at,
            refresh_s=health.refresh_s,
            exact=config.printer_id in self.recent,
            interval_s=config.interval_s,
            printer_id=config.printer_id,
        )
        if due is None:
            # Never polled: as soon as a slot is free, after those configured before it.
            self.lease_of[key] = lease
            self.timers.queue(key, config.configured_at)
            if self._wake is not None:
                self._wake.set()
            return
        current = self.timers.due.get(key)
        if self.lease_of.get(key) == lease and current is not None:
            due = min(due, current)  # a change of configuration never postpones a poll
        self.lease_of[key] = lease
        self._set_timer(key, due)

    def _set_timer(self, key: str, due: float) -> None:
        self.timers.set(key, due)
        if self._wake is not None and (self._sleep_until is None or due < self._sleep_until):
            self._wake.set()

    def _reschedule(self, key: str, lease: str, due: float) -> None:
        """Set the printer's next timer, if its partition is still held here."""
        if self.lease_of.get(key) == lease and lease in self.leases:
            self._set_timer(key, due)

    def _unschedule(self, key: str) -> None:
        self.timers.cancel(key)
        if self.lease_of.pop(key, None) is not None:
            self._forget(key)

    async def _run_timers(self, slots: asyncio.Semaphore, stop: asyncio.Event) -> None:
        """Start each printer's poll when its timer comes due, up to poll_concurrency at once; in
        the slots left, the first polls of printers never polled (oldest first).

        Polls on their slots come first: the first polls (full walks, seconds each) of a fleet
        just imported take at most FIRST_POLLS_SHARE of the slots, so the printers already known
        stay on time through the burst.
        """
        wake = self._wake = asyncio.Event()
        firsts = max(1, int(self.settings.poll_concurrency * FIRST_POLLS_SHARE))
        try:
            while not stop.is_set():
                for key in self.timers.pop_due(time.time()):
                    await slots.acquire()
                    self._start_timed(key, slots)
                while self._first_polls < firsts and not slots.locked():
                    first = self.timers.pop_waiting()
                    if first is None:
                        break
                    await slots.acquire()
                    self._start_timed(first, slots, first=True)
                wake.clear()
                next_at = self.timers.next_at()
                now = time.time()
                delay = PULL_EXPIRES_S if next_at is None else max(0.0, next_at - now)
                self._sleep_until = now + delay
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wake.wait()
        finally:
            self._wake = self._sleep_until = None

    def _start_timed(self, key: str, slots: asyncio.Semaphore, *, first: bool = False) -> None:
        task = asyncio.create_task(self._timed_poll(key, slots))
        self.timed[key] = task
        self.in_flight.add(task)
        if first:
            self._first_polls += 1
        task.add_done_callback(self._timed_done(key, first))

    def _timed_done(self, key: str, first: bool = False) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self.in_flight.discard(task)
            if self.timed.get(key) is task:
                del self.timed[key]
            if first:
                self._first_polls -= 1
            if self.timers.waiting and self._wake is not None:
                self._wake.set()  # a slot for the next first poll

        return done

    async def _timed_poll(self, key: str, slots: asyncio.Semaphore) -> None:
        """Poll a printer whose timer came due, and set its next timer."""
        lease = self.lease_of.get(key)
        try:
            config = self.monitored.get(key)
            if lease is None or lease not in self.leases or config is None:
                return
            current_site.set(config.site_id)
            printer_id, interval = config.printer_id, config.interval_s
            health = await self.read_health(printer_id, config.key)
            now = time.time()
            if printer_id in self.polling:  # a requested poll is under way: the next slot follows
                self._reschedule(key, lease, schedule.due_after_poll(now, interval, printer_id))
                return
            later = schedule.polled_since(now, health.last_poll_at, interval, printer_id)
            if later is not None:  # polled since the timer was set (asked for): its next slot
                self._reschedule(key, lease, later)
                return
            try:
                await self.poll(config, health)
            except (nats.errors.Error, TimeoutError) as exc:
                # The bus failed mid-poll (a leader election, a restart): try again soon, but never
                # later than the printer's own interval.
                log.warning("poll of %s not published (%r); retrying", printer_id, exc)
                retry = min(FAILED_JOB_RETRY_S, interval)
                self._reschedule(key, lease, time.time() + retry)
                return
            finally:
                if self.lease_of.get(key) not in self.leases:
                    # Removed or handed over during the poll: what the poll kept is no one's.
                    self._forget(key, printer_id)
            now = time.time()
            self._reschedule(key, lease, schedule.due_after_poll(now, interval, printer_id))
        except Exception:
            log.exception("poll of %s failed; retrying in %.0f s", key, FAILED_JOB_RETRY_S)
            if lease is not None:
                self._reschedule(key, lease, time.time() + FAILED_JOB_RETRY_S)
        finally:
            slots.release()
            # A poll cancelled (its batch's send was) set no timer: the printer must not go
            # unpolled while its partition is held here. The cancellation still propagates.
            if lease is not None and key not in self.timers:
                self._reschedule(key, lease, time.time() + FAILED_JOB_RETRY_S)

    # --- partition leases ------------------------------------------------------------------------

    def lease_consumers(self) -> list[tuple[str, str, str]]:
        """Return (durable, filter, site of its partitions) of each job consumer of this replica.

        Serving every site: one consumer of the fleet's partitions. Serving named sites: one per
        site, of that site's partitions (replicas serving the same site share it; the filters of
        different sites never overlap, which a work-queue stream requires).
        """
        if not self.settings.sites:
            durable = self.subjects.name(LEASE_DURABLE)
            return [(durable, self.subjects.filter(PARTITION_WHAT, site=FLEET), FLEET)]
        return [
            (
                self.subjects.name(f"{LEASE_DURABLE}_{site}"),
                self.subjects.filter(PARTITION_WHAT, site=site),
                site,
            )
            for site in self.settings.sites
        ]

    async def run_jobs(self, stop: asyncio.Event) -> None:
        """Hold partitions and poll their printers on their slots until stop, then hand them back."""
        slots = asyncio.Semaphore(self.settings.poll_concurrency)
        self.beats = KvMirror(
            await self.bus.key_value(REPLICAS_BUCKET, ttl_s=REPLICAS_TTL_S),
            on_change=lambda _key: self._wake_leases(),
        )
        await self.beats.start()
        self._leases_wake = asyncio.Event()
        halt = asyncio.Event()  # stop, or the lease loop ended (the connection closed)

        def halt_now() -> None:
            halt.set()
            self._wake_leases()
            if self._wake is not None:
                self._wake.set()

        async def relay_stop() -> None:
            await stop.wait()
            halt_now()

        try:
            await self._retire_printer_jobs()
            for durable, filter_subject, _site in self.lease_consumers():
                info = await self._add_consumer(durable, filter_subject)
                self._created[durable] = info.created
            async with asyncio.TaskGroup() as tg:
                relay = tg.create_task(relay_stop())
                tg.create_task(self._run_timers(slots, halt))
                try:
                    await self._run_leases(halt)
                finally:
                    halt_now()
                    relay.cancel()
        finally:
            # Stopping: the others see this replica gone (their share grows), then get its
            # partitions at once, each printer's last poll time written first.
            with contextlib.suppress(Exception):
                await self.beats.delete(self.replica_id)
            with contextlib.suppress(Exception):
                await self._hand_back(list(self.leases), reason="stopping")
            if self.in_flight:
                # Let polls under way finish (bounded by their own timeouts) so no reading is lost.
                await asyncio.wait(self.in_flight, timeout=self.settings.poll_timeout_s * 4 + 5)
            await self.beats.stop()

    def _wake_leases(self) -> None:
        if self._leases_wake is not None:
            self._leases_wake.set()

    async def _add_consumer(self, durable: str, filter_subject: str) -> ConsumerInfo:
        return await self.bus.js.add_consumer(
            self.jobs_stream,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.settings.job_ack_wait_s,
                max_deliver=-1,
                max_ack_pending=-1,  # every partition's job is held between rounds
                filter_subject=filter_subject,
            ),
        )

    async def _retire_printer_jobs(self) -> None:
        """End the jobs of the poller before partitions: a job per printer and its consumers.

        Their schedules are not lost: a printer's slots follow from its id and its last poll time
        in KV, which is where the partition's holder continues from.
        """
        retired = [self.subjects.name(RETIRED_DURABLE)]
        retired += [self.subjects.name(f"{RETIRED_DURABLE}_{site}") for site in self.settings.sites]
        for durable in retired:
            try:
                if await self.bus.js.delete_consumer(self.jobs_stream, durable):
                    log.info("retired the consumer of per-printer poll jobs %s", durable)
            except nats.js.errors.NotFoundError:
                pass
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("could not retire the consumer %s (%r)", durable, exc)
        # Per-printer jobs (one token after the area); partitions have two.
        purged = [self.subjects.filter(JOB_AREA)]
        if self.settings.sites:  # the fleet's partitions of replicas that served every site
            fleet = self.subjects.name(LEASE_DURABLE)
            if any(fleet in beat.durables for beat in self._live_beats()[1:]):
                # Still served: purged, they are published again every round by those replicas.
                log.warning(
                    "replicas serving every site run beside this one serving %s: their printers "
                    "are polled twice; run every poller with TONERWATCH_SITES or none",
                    ", ".join(self.settings.sites),
                )
            else:
                purged.append(self.subjects.filter(PARTITION_WHAT, site=FLEET))
        for subject in purged:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.bus.js.purge_stream(self.jobs_stream, subject=subject)

    async def _run_leases(self, stop: asyncio.Event) -> None:
        """Take partitions up to this replica's share through long-lived pull requests, keep them
        (a round every ROUND_SHARE of the ack wait), hand back what is beyond the share."""
        nc = self.bus.nc
        wake = self._leases_wake or asyncio.Event()
        pulls: dict[str, _JobPull] = {}
        subs = []
        for durable, _filter, site in self.lease_consumers():
            pull = pulls[durable] = _JobPull(
                nc.new_inbox(), f"$JS.API.CONSUMER.MSG.NEXT.{self.jobs_stream}.{durable}", wake
            )
            subs.append(await nc.subscribe(pull.inbox, cb=self._on_job(pull, durable, site, stop)))
        next_round = 0.0
        reconnects = nc.stats["reconnects"]
        # A reconnect wakes the loop (a restarted server forgot the pull requests); a connection
        # that does not report its reconnects is looked at every PULL_CHECK_S instead.
        listeners = self.bus.on_reconnect
        if listeners is not None:
            listeners.append(wake.set)
        try:
            while not stop.is_set():
                retry = False  # a pull request failed to go out: again in PULL_CHECK_S
                now = time.monotonic()
                if now >= next_round or nc.stats["reconnects"] != reconnects:
                    reconnects = nc.stats["reconnects"]
                    try:
                        await self._round()
                        next_round = now + self.settings.job_ack_wait_s * ROUND_SHARE
                    except (nats.errors.Error, TimeoutError) as exc:
                        if isinstance(exc, nats.errors.ConnectionClosedError):
                            return
                        log.warning("poll partitions: round failed (%r); again shortly", exc)
                        next_round = now + min(5.0, self.settings.job_ack_wait_s * ROUND_SHARE)
                elif self._beat_due:
                    with contextlib.suppress(nats.errors.Error, TimeoutError):
                        await self._beat()
                await self._rebalance()
                for durable, pull in pulls.items():
                    if not pull.needs_request(time.monotonic(), nc.stats["reconnects"]):
                        continue
                    if self._room(durable) <= 0:
                        continue
                    try:
                        # One job a request: a share that shrank meanwhile is overshot by one at most.
                        await nc.publish(pull.subject, pull.request(1), reply=pull.inbox)
                    except nats.errors.ConnectionClosedError:
                        return
                    except nats.errors.Error as exc:  # reconnecting: ask again soon
                        pull.lost()
                        retry = True
                        await pause_on_bus_error(exc, durable, stop)
                wait_s = PULL_CHECK_S
                if listeners is not None and not retry:
                    wait_s = self._leases_idle_s(pulls.values(), next_round)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await wake.wait()
                wake.clear()
        finally:
            if listeners is not None:
                with contextlib.suppress(ValueError):
                    listeners.remove(wake.set)
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    def _leases_idle_s(
        self,
        pulls: Iterable[_JobPull],
        next_round: float,
        now: float | None = None,
        wall: float | None = None,
    ) -> float:
        """Return how long the lease loop may sleep when nothing wakes it: until the next thing
        that only time changes. That is the next round (in progress for every held partition, the
        heartbeat), an armed pull request counting as lost (no word from the server on it), or
        another replica's heartbeat lapsing (this replica's share grows: it may take more).
        Everything else that changes what the loop does wakes it (a job, a request over, a
        heartbeat written, a partition taken or handed back, a reconnect, stop).

        now, wall: the monotonic and Unix time to count from (default: the clocks')."""
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        deadlines = [next_round]
        for pull in pulls:
            if pull.remaining > 0:
                deadlines.append(pull.heard_at + pull.LOST_AFTER_S)
        max_age = self.settings.job_ack_wait_s
        for raw in list(self.beats.values.values()) if self.beats is not None else []:
            beat = Beat.from_bytes(raw)
            if beat is not None and beat.replica != self.replica_id and wall - beat.at <= max_age:
                deadlines.append(now + (beat.at + max_age - wall))
        # A little past the deadline: the checks are strict (a beat lapses once older than its
        # max age, a request is lost once silent for longer than LOST_AFTER_S).
        return max(0.0, min(deadlines) - now) + 0.01

    def _on_job(
        self, pull: _JobPull, durable: str, site: str, stop: asyncio.Event
    ) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        async def on_msg(msg: Msg) -> None:
            if not pull.delivered(msg):
                return
            try:
                if stop.is_set():  # stopping: hand it straight back, another replica takes it
                    await msg.nak()
                else:
                    await self._take(msg, durable, site)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("poll partition %s not taken (%r)", msg.subject, exc)

        return on_msg

    async def _take(self, msg: Msg, durable: str, site: str) -> None:
        """Hold a partition job just received and schedule its printers."""
        subject = msg.subject
        try:
            partition = int(subject.rsplit(".", 1)[1])
        except (ValueError, IndexError):
            partition = -1
        if not 0 <= partition < self.settings.poll_partitions:
            # Malformed, or left from a larger TONERWATCH_POLL_PARTITIONS: it ends here.
            log.info(
                "ended the poll job %s (%d partitions now)", subject, self.settings.poll_partitions
            )
            await msg.term()
            return
        now = time.time()
        held = self.leases.get(subject)
        if held is not None:  # delivered again (a restarted server): keep the newer delivery alive
            held.msg, held.taken_at = msg, now
            self._beat_due = True
            self._wake_leases()
            return
        if self._room(durable) <= 0:
            # A pull request already waiting received a partition this replica just handed back
            # (beyond its share): hand it back again, for a replica with room.
            await msg.nak()
            return
        self.leases[subject] = _Lease(subject, site, partition, durable, msg, now)
        self.metrics.partitions.set(len(self.leases))
        self._beat_due = True
        self._wake_leases()
        # The replica that handed it over wrote its printers' last poll times before letting go:
        # wait until they are in the mirror (bounded), so polls stay one interval apart.
        if self.health_mirror is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self.health_mirror.caught_up()
        if subject not in self.leases:
            return  # handed back meanwhile
        scheduled = 0
        for key, printer in list(self.monitored.items()):
            if printer.partition == partition and site in (FLEET, printer.site_id):
                self._schedule_from_health(key, printer, subject)
                scheduled += 1
        log.info("took poll partition %s: %d printers", subject, scheduled)

    def _live_beats(self) -> list[Beat]:
        """Return the heartbeats of the replicas alive (this one's always)."""
        now = time.time()
        beats = []
        for raw in list(self.beats.values.values()) if self.beats is not None else []:
            beat = Beat.from_bytes(raw)
            if beat is not None and beat.replica != self.replica_id:
                beats.append(beat)
        alive = live(beats, now, self.settings.job_ack_wait_s)
        own = tuple(durable for durable, _, _ in self.lease_consumers())
        return [Beat(self.replica_id, now, own), *alive]

    def _room(self, durable: str, beats: list[Beat] | None = None) -> int:
        """Return how many more partitions of durable this replica may take (negative: too many)."""
        beats = beats if beats is not None else self._live_beats()
        allowed = share(self.settings.poll_partitions, replicas_on(beats, durable))
        return allowed - sum(1 for lease in self.leases.values() if lease.durable == durable)

    async def _rebalance(self) -> None:
        """Let go of partitions another replica took later; hand back what is beyond the share."""
        beats = self._live_beats()
        held = {subject: lease.taken_at for subject, lease in self.leases.items()}
        lapsed = taken_by_others(held, beats[1:])
        if lapsed:
            # This replica's lease lapsed (it stalled past the ack wait): the job is the other's now,
            # and a nak would hand the other's delivery out again.
            await self._hand_back(sorted(lapsed), reason="taken by another replica", nak=False)
        for durable, _, _ in self.lease_consumers():
            over = -self._room(durable, beats)
            if over > 0:
                mine = sorted(
                    (lease for lease in self.leases.values() if lease.durable == durable),
                    key=lambda lease: lease.taken_at,
                )
                await self._hand_back(
                    [lease.subject for lease in mine[-over:]], reason="beyond share"
                )

    async def _hand_back(self, subjects: list[str], *, reason: str, nak: bool = True) -> None:
        """Stop polling these partitions' printers; with nak, write their last poll times and hand
        the jobs back so another replica takes them at once."""
        dropped = [self.leases.pop(s) for s in subjects if s in self.leases]
        if not dropped:
            return
        self.metrics.partitions.set(len(self.leases))
        self.metrics.handed_over.inc(len(dropped))
        self._beat_due = True
        self._wake_leases()
        gone = {lease.subject for lease in dropped}
        keys = [key for key, subject in self.lease_of.items() if subject in gone]
        printer_ids = []
        for key in keys:
            self.timers.cancel(key)
            del self.lease_of[key]
            printer = self.monitored.get(key)
            if printer is not None:
                printer_ids.append(printer.printer_id)
        running = [self.timed[key] for key in keys if key in self.timed]
        try:
            async with asyncio.timeout(HANDOVER_TIMEOUT_S):
                if running:
                    await asyncio.wait(running)
                if nak:
                    await self._write_last_polls(printer_ids)
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("handing back poll partitions: last poll times not all written (%r)", exc)
        for lease in dropped:
            if nak:
                with contextlib.suppress(Exception):
                    await lease.msg.nak()
        for key in keys:
            self._forget(key)
        log.info(
            "%s %d poll partition(s) (%s): %d printers",
            "handed back" if nak else "let go of",
            len(dropped),
            reason,
            len(keys),
        )

    async def _write_last_polls(self, printer_ids: list[str]) -> None:
        """Write the exact last poll time of each printer whose stored one lags (a healthy printer's
        is rewritten only every HEALTH_REFRESH_INTERVALS intervals)."""
        behind = []
        for printer_id in printer_ids:
            own = self.recent.get(printer_id)
            stored = self._stored_health(printer_id)
            if own is not None and (stored is None or stored.last_poll_at != own.last_poll_at):
                behind.append((printer_id, own))
        for start in range(0, len(behind), 64):
            await asyncio.gather(
                *(self._store_health(pid, health) for pid, health in behind[start : start + 64])
            )

    async def _round(self) -> None:
        """Keep the held partitions (in progress), check each consumer still has its partitions
        (a NATS that lost the stream gets them again), and write this replica's heartbeat."""
        for lease in list(self.leases.values()):
            await lease.msg.in_progress()
        for durable, filter_subject, site in self.lease_consumers():
            try:
                info = await self.bus.js.consumer_info(self.jobs_stream, durable, timeout=5.0)
            except nats.js.errors.NotFoundError:
                # The stream or the consumer is gone (a NATS that lost its store): what was held
                # went with it. Set both up again; the partitions are published again below.
                log.warning("poll partitions: consumer %s lost; setting it up again", durable)
                await self.ensure_jobs_stream()
                info = await self._add_consumer(durable, filter_subject)
            if self._created.get(durable, info.created) != info.created:
                await self._hand_back(
                    [s for s, lease in self.leases.items() if lease.durable == durable],
                    reason="consumer set up again",
                    nak=False,
                )
            self._created[durable] = info.created
            if (info.num_pending or 0) + (
                info.num_ack_pending or 0
            ) < self.settings.poll_partitions:
                await self._publish_partitions(site)
        await self._beat()

    async def _publish_partitions(self, site: str) -> None:
        """Publish every partition job of site the stream lacks (it refuses a second per subject)."""
        published = 0
        for partition in range(self.settings.poll_partitions):
            body = json.dumps(
                {
                    "site_id": site,
                    "partition": partition,
                    "partitions": self.settings.poll_partitions,
                }
            ).encode()
            try:
                await self.bus.js.publish(
                    self.partition_subject(site, partition), body, timeout=5.0
                )
                published += 1
            except nats.js.errors.APIError as exc:
                if "maximum messages per subject" not in str(exc).lower():
                    raise
        if published:
            log.info("published %d poll partition job(s) of %s", published, site)

    async def _beat(self) -> None:
        """Write this replica's heartbeat: what it serves, and the partitions it holds since when."""
        assert self.beats is not None
        self._beat_due = False
        beat = Beat(
            replica=self.replica_id,
            at=time.time(),
            durables=tuple(durable for durable, _, _ in self.lease_consumers()),
            leases={subject: lease.taken_at for subject, lease in self.leases.items()},
        )
        await self.beats.put(self.replica_id, beat.to_bytes())

    # --- health -------------------------------------------------------------------------------

    def _known_health(self, printer_id: str) -> PrinterHealth:
        """Return the printer's health as this replica knows it without asking KV."""
        own = self.recent.get(printer_id)
        stored = self._stored_health(printer_id) or PrinterHealth()
        if own is not None and (own.last_poll_at or 0) >= (stored.last_poll_at or 0):
            return own.copy()
        return stored

    async def read_health(self, printer_id: str, key: str | None = None) -> PrinterHealth:
        """Return what is known of the printer's last polls (empty if never polled).

        This replica's own last poll of it when that is the newest (exact, no round trip), else
        the stored record (from the mirror; from KV when neither knows the printer).
        """
        if key is None:
            key = token(printer_id)
        own = self.recent.get(printer_id)
        raw: bytes | None
        if self.health_mirror is not None:
            raw = self.health_mirror.get(key)
            if own is not None and raw is not None and own.seen is raw:
                return own.copy()  # the stored record is the one own was made against: older
            if raw is None and own is None:
                raw = await self.health_mirror.get_fresh(key)
        else:
            try:
                raw = (await self.health.get(key)).value
            except nats.js.errors.KeyNotFoundError:
                raw = None
        stored = PrinterHealth.from_bytes(raw)
        if own is not None and (own.last_poll_at or 0) >= (stored.last_poll_at or 0):
            return own.copy()
        if own is not None:  # another replica polled it since: its record, and the larger seq
            self.recent.pop(printer_id, None)
            stored.seq = max(stored.seq or 0, own.seq or 0) or None
        return stored

    def _stored_health(self, printer_id: str) -> PrinterHealth | None:
        """Return the printer's health as stored in KV, as far as the mirror knows (None: unknown)."""
        if self.health_mirror is None:
            return None
        raw = self.health_mirror.get(token(printer_id))
        return PrinterHealth.from_bytes(raw) if raw is not None else None

    async def _store_health(
        self, printer_id: str, health: PrinterHealth, key: str | None = None
    ) -> None:
        """Write the printer's health to KV (and the mirror) and remember it as this replica's."""
        if key is None:
            key = token(printer_id)
        own = self.recent[printer_id] = replace(health, seen=None, seen_poll_at=None)
        if self.health_mirror is not None:
            data = health.to_bytes()
            await self.health_mirror.put(key, data)
            if self.recent.get(printer_id) is own and self.health_mirror.get(key) is data:
                own.seen, own.seen_poll_at = data, own.last_poll_at
        else:
            await self.health.put(key, health.to_bytes())

    async def count_overdue(self, now: float) -> int:
        """Return how many monitored printers nobody has polled in time (see schedule.overdue_after)."""
        if self.config_mirror is not None and self.health_mirror is not None:
            printers, health = self.monitored, self.health_mirror.values
        else:
            printers = {
                key: printer
                for key, raw in (await latest_values(self.printers)).items()
                if (printer := self._monitored(key, raw)) is not None
            }
            health = await latest_values(self.health)
        overdue = 0
        # What each counted printer's stored health says (last poll, lag), by the very bytes it
        # was read from: a record unchanged since the last count is not parsed again.
        known, times = self._overdue_times, {}
        for key, printer in list(printers.items()):
            if self.settings.sites and printer.site_id not in self.settings.sites:
                continue  # another site's poller answers for it
            raw = health.get(key)
            own = self.recent.get(printer.printer_id)
            last: float | None
            if own is not None and raw is not None and own.seen is raw and own.last_poll_at:
                # The stored record is the one this replica's own last poll was made against
                # (written by it, or read by it then): own's time is as new or newer, and exact.
                last, lag = own.last_poll_at, 0.0
            else:
                cached = known.get(key)
                if cached is not None and cached[0] is raw:
                    times[key] = cached
                    last, lag = cached[1], cached[2]
                else:
                    stored = PrinterHealth.from_bytes(raw)
                    last, lag = stored.last_poll_at, stored.refresh_s or 0.0
                    times[key] = (raw, last, lag)
                if (
                    own is not None
                    and own.last_poll_at is not None
                    and own.last_poll_at >= (last or 0)
                ):
                    last, lag = own.last_poll_at, 0.0  # this replica's own poll: exact
            since = last if last is not None else printer.configured_at
            limit = schedule.overdue_after(printer.interval_s, self.settings.job_ack_wait_s) + lag
            if now - since > limit + schedule.FIRST_POLL_WINDOW_S * (last is None):
                overdue += 1
        self._overdue_times = times  # printers gone since are dropped
        return overdue

    def overdue_check(self, every_s: float = 15.0) -> Check:
        """Return a check that refreshes tonerwatch_poll_jobs_overdue (at most every every_s)."""
        last_run = 0.0

        async def check() -> None:
            nonlocal last_run
            if time.monotonic() - last_run < every_s:
                return
            last_run = time.monotonic()
            self.metrics.overdue.set(await self.count_overdue(time.time()))

        return check

    async def poll(self, config: Monitored, health: PrinterHealth) -> bool:
        """Poll one printer, publish its reading and any reachability change; return success.

        health is what handle_job just read from the KV (one read per poll, not two).
        """
        self.polling.add(config.printer_id)
        try:
            return await self._poll(config, health)
        finally:
            self.polling.discard(config.printer_id)

    async def _poll(self, config: Monitored, health: PrinterHealth) -> bool:
        # What the stored record was when this poll's health was read (see PrinterHealth.seen).
        seen, seen_poll_at, seen_substance = health.seen, health.seen_poll_at, health.substance()
        health.last_poll_at = time.time()
        health.refresh_s = None  # a failed poll's record is exact
        source = f"poller/{self.settings.instance}"
        try:
            target = self._target(config)
            polled = None
            reading: SupplyReading | None = None
            if config.protocol in ("snmp", "both"):
                polled = await read_printer(
                    self.client,
                    target,
                    printer_id=config.printer_id,
                    site_id=config.site_id,
                    source=source,
                    plan=self.plans.get(config.printer_id),
                    parsed=self.parsed.get(config.printer_id),
                )
                self.plans[config.printer_id] = polled.plan
                if polled.parsed is not None:
                    self.parsed[config.printer_id] = polled.parsed
            if config.protocol in ("ipp", "both"):
                reading = await read_printer_ipp(
                    config, source=source, timeout_s=self.settings.ipp_timeout_s, snmp=polled
                )
            else:
                assert polled is not None
                reading = polled.built
        except (
            SnmpError,
            IppError,
            OSError,
            TimeoutError,
            SealingError,
            ValueError,
            _Refused,
        ) as exc:
            failure = exc.failure if isinstance(exc, _Refused) else failures.describe(exc)
            await self._failed(config, health, failure, source)
            return False
        # Stamped with the printer's next seq: receivers drop anything older they get later.
        if reading is not None:
            data = reading.model_copy(update={"seq": health.next_seq()}).to_bytes()
            cost: SupplyReading | SteadyReading = reading
        else:  # the same answer as last time: the kept JSON with this poll's values
            assert polled is not None and polled.steady is not None
            cost = steady = polled.steady
            data = steady.encode(health.next_seq())
        # Returns once the reading is kept (in a batch with those of polls made alongside).
        await self.readings.publish(config.site_id, config.printer_id, data, str(cost.event_id))
        self.metrics.ok_poll(
            config.protocol, cost.bytes_sent, cost.bytes_received, cost.duration_ms / 1000
        )
        was_unreachable = health.unreachable
        now = time.time()
        health = PrinterHealth(
            last_success_at=datetime.now(UTC).isoformat(),
            last_poll_at=now,
            seq=health.seq,
            refresh_s=HEALTH_REFRESH_INTERVALS * config.interval_s,
        )
        if was_unreachable:
            await self.bus.publish(
                PrinterReachable(
                    source=source,
                    site_id=config.site_id,
                    printer_id=config.printer_id,
                    address=config.address,
                    seq=health.next_seq(),
                )
            )
        raw = self.health_mirror.get(config.key) if self.health_mirror else None
        stored_substance: tuple[object, ...] | None
        if raw is not None and raw is seen:
            # Unchanged since it was read: no need to read it again.
            stored_substance, stored_poll_at = seen_substance, seen_poll_at
        else:
            stored = PrinterHealth.from_bytes(raw) if raw is not None else None
            stored_substance = stored.substance() if stored is not None else None
            stored_poll_at = stored.last_poll_at if stored is not None else None
            seen = raw if stored is not None else None
        if (
            seen is None
            or stored_substance != health.substance()
            or stored_poll_at is None
            # The clock is behind the printer's seq (stepped back): its seq counts on from the
            # last one, which another replica or a restart must read exactly.
            or (health.seq or 0) > ordering.next_seq(None, now)
            # Rewritten a little early, so the stored time never lags by more than refresh_s.
            or now - stored_poll_at
            >= (health.refresh_s or 0) - schedule.tolerance(config.interval_s)
        ):
            await self._store_health(config.printer_id, health, config.key)
        else:
            # The same as stored but for the poll times (newer: this poll's).
            health.seen, health.seen_poll_at = seen, stored_poll_at
            self.recent[config.printer_id] = health
        return True

    def _target(self, config: Monitored) -> SnmpTarget:
        """Return the SNMP target to poll the printer at (_Refused: not pollable as configured)."""
        target = config.target
        if (
            target is not None
            and target.timeout == self.settings.poll_timeout_s
            and target.retries == self.settings.poll_retries
        ):
            return target
        # The credentials arrive sealed (event, KV); they are opened for this request only.
        credentials = open_credentials(self.sealer, config.credentials)
        failure = _refused_before_sending(config, credentials)
        if failure is not None:
            raise _Refused(failure)
        target = credentials.target(
            config.address,
            config.port,
            timeout_s=self.settings.poll_timeout_s,
            retries=self.settings.poll_retries,
        )
        if credentials is config.credentials:
            # Nothing sealed was opened: the same target for every poll of this configuration
            # (the checks and the target cost ~3 us a poll, issue 15); a new one comes with a
            # new configuration (a new Monitored).
            object.__setattr__(config, "target", target)
        return target

    async def _failed(
        self,
        config: Monitored,
        health: PrinterHealth,
        failure: failures.PollFailure,
        source: str,
    ) -> None:
        """Count a failed poll; publish PrinterUnreachable after N in a row, at once for a reason
        retrying will not mend, and again when that reason changes while the printer is down."""
        self.plans.pop(config.printer_id, None)
        self.parsed.pop(config.printer_id, None)
        self.metrics.poll_done("failed", config.protocol)
        health.failures += 1
        health.last_error = failure.reason
        log.info(
            "poll of %s (%s) failed %d time(s): %s [%s]",
            config.printer_id,
            config.address,
            health.failures,
            failure.reason,
            failure.kind,
        )
        due = health.failures >= self.settings.unreachable_after or failure.definitive
        changed = health.unreachable and failure.definitive and failure.kind != health.failure
        if (due and not health.unreachable) or changed:
            if not health.unreachable:
                self.metrics.unreachable.inc()
            health.unreachable = True
            health.failure = failure.kind
            await self.bus.publish(
                PrinterUnreachable(
                    source=source,
                    site_id=config.site_id,
                    printer_id=config.printer_id,
                    address=config.address,
                    consecutive_failures=health.failures,
                    seq=health.next_seq(),
                    reason=failure.reason,
                    failure=failure.kind,
                    last_success_at=datetime.fromisoformat(health.last_success_at)
                    if health.last_success_at
                    else None,
                )
            )
        await self._store_health(config.printer_id, health, config.key)


class _JobPull:
    """The state of one replica's long-lived pull request for partition jobs (pure: no I/O).

    One request at a time, for `batch` jobs, waiting up to PULL_EXPIRES_S. It is over when its
    batch has been delivered, when the server ends it (408 expired, 409 e.g. a leadership change),
    or when it was lost: neither a job nor an idle heartbeat for two heartbeat intervals, or the
    connection reconnected (a restarted server forgot it). A lost request that was not lost after
    all only means a few more jobs than free slots; they wait for a slot.
    """

    # An armed request not heard of for this long is lost.
    LOST_AFTER_S = 2 * PULL_HEARTBEAT_S + PULL_CHECK_S

    def __init__(self, inbox: str, subject: str, wake: asyncio.Event | None = None) -> None:
        self.inbox = inbox
        self.subject = subject
        self.wake = wake if wake is not None else asyncio.Event()
        self.remaining = 0  # jobs still to come on the request (0: none armed)
        self.heard_at = 0.0  # monotonic time of the server's last word on it
        self.reconnects: int | None = None

    def request(self, batch: int, now: float | None = None) -> bytes:
        """Arm a request for batch jobs; return its body."""
        self.remaining = batch
        self.heard_at = time.monotonic() if now is None else now
        return json.dumps(
            {
                "batch": batch,
                "expires": int(PULL_EXPIRES_S * 1e9),
                "idle_heartbeat": int(PULL_HEARTBEAT_S * 1e9),
            }
        ).encode()

    def lost(self) -> None:
        """Forget the request (it never reached the server)."""
        self.remaining = 0

    def needs_request(self, now: float, reconnects: int) -> bool:
        """Return whether a new request must be sent (none is armed, or the armed one is lost)."""
        if self.reconnects != reconnects:
            self.reconnects = reconnects
            self.remaining = 0
        if self.remaining > 0 and now - self.heard_at > self.LOST_AFTER_S:
            self.remaining = 0
        return self.remaining <= 0

    def delivered(self, msg: Msg, now: float | None = None) -> bool:
        """Account for a message on the inbox; return whether it is a job to run."""
        self.heard_at = time.monotonic() if now is None else now
        status = msg.headers.get("Status") if msg.headers else None
        if status is not None:
            if status != "100":  # 404/408/409: the request is over
                self.remaining = 0
                self.wake.set()
            return False
        self.remaining -= 1
        if self.remaining <= 0:
            self.wake.set()
        return True


@dataclass(frozen=True, slots=True)
class Monitored:
    """What a replica keeps of one monitored printer, from its configuration in KV (parsed once
    per change, by Poller._config_changed): where it is placed, what the overdue check reads and
    what a poll needs. About a tenth of the PrinterConfigured it comes from (credentials shared)."""

    printer_id: str
    site_id: str
    partition: int  # of the fleet's partitions (each site's, with TONERWATCH_SITES)
    address: str
    port: int
    protocol: Literal["snmp", "ipp", "both"]
    ipp_port: int
    ipp_tls: bool
    credentials: SnmpCredentials  # sealed, as configured
    interval_s: float
    configured_at: float  # Unix time of the configuration: a printer never polled is due from it
    # token(printer_id): its key in the KV buckets, computed once (not at every poll).
    key: str = field(init=False, repr=False, compare=False)
    # The SNMP target a poll of it asks (Poller._target): kept only when its credentials hold
    # nothing sealed, so no opened secret outlives its request.
    target: SnmpTarget | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", token(self.printer_id))

    @classmethod
    def parse(
        cls, raw: bytes, partition: int, shared: dict[SnmpCredentials, SnmpCredentials]
    ) -> Monitored:
        """Return the printer a stored PrinterConfigured describes (ValueError: unreadable).

        Its credentials are those of an earlier printer configured with the same ones, when
        `shared` (a table kept by the caller, bounded here) holds them.
        """
        config = PrinterConfigured.model_validate_json(raw)
        credentials = shared.get(config.credentials)
        if credentials is None:
            if len(shared) >= SHARED_CREDENTIALS_MAX:
                shared.clear()  # sealed secrets are each their own: start again
            credentials = shared[config.credentials] = config.credentials
        return cls(
            printer_id=config.printer_id,
            site_id=sys.intern(config.site_id),
            partition=partition,
            address=config.address,
            port=config.port,
            protocol=config.protocol,
            ipp_port=config.ipp_port,
            ipp_tls=config.ipp_tls,
            credentials=credentials,
            interval_s=config.interval_s,
            configured_at=config.occurred_at.timestamp(),
        )


class _Refused(Exception):
    """A poll refused before anything was sent (bad address or credentials), named."""

    def __init__(self, failure: failures.PollFailure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


# The addresses polled, checked once each rather than parsed on every poll (a refused one raises
# again every time: not kept).
_checked_host = functools.lru_cache(maxsize=CHECKED_HOSTS_KEPT)(check_host)


def _refused_before_sending(
    config: Monitored, credentials: SnmpCredentials
) -> failures.PollFailure | None:
    """Return why a printer cannot be polled as configured (stored before today's checks), or None.

    An address that is no address is never looked up; SNMPv3 keys pysnmp cannot use are not tried.
    """
    try:
        _checked_host(config.address)
    except ValueError as exc:
        return failures.PollFailure(
            "bad_address", f"{failures.KINDS['bad_address'].summary} ({exc})"
        )
    if config.protocol == "ipp":
        return None
    problems = credential_problems(credentials)
    if problems:
        detail = "; ".join(f"{field}: {why}" for field, why in problems)
        summary = failures.KINDS["bad_credentials"].summary
        return failures.PollFailure("bad_credentials", f"{summary} ({detail})")
    return None


async def run(
    settings: Settings, *, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None
) -> None:
    """Run one poller replica until stop (or SIGTERM): config consumer + job loop, then drain."""
    stop = stop_event(stop)
    subjects = Subjects(settings.subject_root, settings.stream_prefix)
    metrics = PollerMetrics()
    # /healthz answers while NATS is still being reached (liveness); /readyz says it is not yet.
    checks: dict[str, Check] = {"nats": not_connected("NATS")}
    async with serve_ops(settings.ops_host, settings.ops_port, metrics.registry, checks):
        bus = await Bus.for_service(settings, "poller", stop=stop)
        client = SnmpClient(max_in_flight=settings.poll_concurrency)
        poller: Poller | None = None
        try:
            await bus.ensure_event_stream()
            poller = Poller(
                settings=settings,
                bus=bus,
                client=client,
                printers=await bus.key_value("POLLER_PRINTERS"),
                health=await bus.key_value("POLLER_HEALTH"),
                metrics=metrics,
                sealer=Sealer.from_settings(settings),
            )
            await poller.ensure_jobs_stream()
            await poller.start_mirrors()
            config_specs = config_consumers(subjects, settings.sites)
            for spec in config_specs:
                await bus.ensure_consumer(spec)
            checks.update(
                {
                    "nats": bus_check(bus),
                    "config_lag": consumer_lag_gauge(
                        metrics.registry,
                        bus,
                        {spec.durable: subjects.events_stream for spec in config_specs},
                    ),
                    "stream_fill": stream_fill_gauge(metrics.registry, bus),
                    "overdue": poller.overdue_check(),
                }
            )
            if ready is not None:
                ready.set()
            log.info("poller ready")
            async with asyncio.TaskGroup() as tg:
                for spec in config_specs:
                    tg.create_task(bus.consume(spec, _only(poller.on_config), stop=stop))
                tg.create_task(poller.run_jobs(stop))
        finally:
            if poller is not None:
                await poller.stop_mirrors()
            await client.close()
            await bus.drain()


def config_consumers(subjects: Subjects, sites: list[str]) -> list[ConsumerSpec]:
    """Return the configuration consumers of a replica serving sites (empty: every site)."""
    # printer.<what>.<id>: configured and removed (the rest is ignored).
    area = PrinterConfigured.subject_area()
    if not sites:
        return [ConsumerSpec(subjects.name("poller_config"), subjects.area(area, keyed=True))]
    return [
        ConsumerSpec(subjects.name(f"poller_config_{site}"), subjects.area(area, site, keyed=True))
        for site in sites
    ]


def _only(handler: Handler) -> Handler:
    """Return handler restricted to configuration and poll requests (the filter matches more)."""

    async def wrapped(event: Event, msg: Msg) -> None:
        if isinstance(event, (PrinterConfigured, PrinterRemoved, PollRequested)):
            await handler(event, msg)

    return wrapped


__all__ = ["Monitored", "Poller", "Settings", "config_consumers", "run"]
