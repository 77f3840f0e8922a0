"""The poller: keeps the monitored fleet, polls each printer on time, publishes `supply-reading`.

How replicas share the fleet (JetStream work distribution): every monitored printer has exactly
one *poll job* message in a work-queue stream (one message per subject, new ones discarded, so a
printer can never have two). Replicas pull jobs from one durable consumer; whoever gets a job
polls the printer, publishes the reading, and `nak`s the job with a delay until the printer's next
slot (schedule.py), so JetStream hands it out again — to any live replica — when the next poll is
due. A replica that dies mid-poll stops acking; after `ack_wait` the job goes to another replica.
No printer is polled twice at once, none is forgotten.

Nak delays do not survive a NATS restart (every job comes back at once): a job that arrives well
before its printer's slot, judged from the last poll time kept in KV, is put back until the slot,
so polls stay spread. `tonerwatch_poll_jobs_overdue` counts printers nobody has polled in time.

NATS traffic of a steady poll (issue 15): the reading's publish (and its ack) and the job's nak,
nothing else. Configuration and health are read from in-memory mirrors of their KV buckets fed by
watches (mirror.py), not fetched per poll; health is written when it changes (failures,
reachability) and otherwise only every HEALTH_REFRESH_INTERVALS intervals to keep the last poll
time roughly current for other replicas and restarts (schedule.assumed_last_poll); "in progress"
is sent only for a poll that runs long enough to need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field

from tonerwatch_poller import schedule
from tonerwatch_poller.mirror import KvMirror, latest_values
from tonerwatch_shared import failures, ordering
from tonerwatch_shared.bus import Bus, ConsumerSpec, Handler, pause_on_bus_error
from tonerwatch_shared.checks import check_host, credential_problems
from tonerwatch_shared.events import (
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
from tonerwatch_shared.subjects import SUPPLY_READING, Subjects, token

log = logging.getLogger("tonerwatch.poller")

FAILED_JOB_RETRY_S = 30.0
# A "poll now" older than this is history (a new replica replaying the stream), not a request.
POLL_REQUEST_MAX_AGE_S = 120.0
JOB_AREA = "polljob"  # outside the events stream's areas, so the two streams never overlap
# A healthy printer's health record is rewritten at least every this many intervals (its last poll
# time may lag by that much: PrinterHealth.refresh_s); at 10, 0.1 KV writes per steady poll.
HEALTH_REFRESH_INTERVALS = 10
# The long-lived pull request for jobs (_JobPull): how long one waits for jobs, how often the
# server says it is still there while none come, and how often the job loop looks at it.
PULL_EXPIRES_S = 30.0
PULL_HEARTBEAT_S = 5.0
PULL_CHECK_S = 1.0
READING_TYPE = SupplyReading.model_fields["type"].default
# "In progress" is sent to JetStream when a poll has run this share of the job's ack wait.
PROGRESS_SHARE = 0.4


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
        default=60.0, gt=0, description="A job unanswered this long goes to another replica"
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

    def substance(self) -> tuple[object, ...]:
        """Return what other replicas must see at once when it changes (not the poll times)."""
        return (self.failures, self.unreachable, self.last_error, self.failure, self.refresh_s)

    def next_seq(self) -> int:
        """Return the seq of the printer's next event, and remember it."""
        self.seq = ordering.next_seq(self.seq)
        return self.seq

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__).encode()

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
        self.put_back = Counter(
            "tonerwatch_poll_jobs_put_back",
            "Poll jobs delivered before their printer's slot and put back (e.g. after a NATS restart)",
            registry=self.registry,
        )

    def poll_done(self, result: str, protocol: str) -> None:
        """Count one poll (tonerwatch_polls_total)."""
        counter = self._polls.get((result, protocol))
        if counter is None:
            counter = self._polls[result, protocol] = self.polls.labels(result, protocol)
        counter.inc()


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
    # Each printer's configuration as last parsed, with the bytes it was parsed from.
    configs: dict[str, tuple[bytes, PrinterConfigured]] = field(default_factory=dict)
    # The health this replica computed at its own last poll of each printer (exact times, seq).
    recent: dict[str, PrinterHealth] = field(default_factory=dict)

    @property
    def subjects(self) -> Subjects:
        return self.bus.subjects

    async def start_mirrors(self) -> None:
        """Load both buckets into memory and follow their changes (reads then cost no round trip)."""
        self.config_mirror = KvMirror(self.printers)
        await self.config_mirror.start()
        self.health_mirror = KvMirror(self.health)
        await self.health_mirror.start()

    async def stop_mirrors(self) -> None:
        """End the watches."""
        for mirror in (self.config_mirror, self.health_mirror):
            if mirror is not None:
                await mirror.stop()

    async def read_config(self, printer_id: str) -> PrinterConfigured | None:
        """Return the printer's configuration (None: not monitored), parsed once per change."""
        key = token(printer_id)
        raw: bytes | None
        if self.config_mirror is not None:
            raw = await self.config_mirror.get_fresh(key)  # KV only on a miss (a new printer)
        else:
            try:
                entry = await self.printers.get(key)
            except nats.js.errors.KeyNotFoundError:
                entry = None
            raw = entry.value if entry is not None else None
        if not raw:
            self.configs.pop(printer_id, None)
            return None
        cached = self.configs.get(printer_id)
        if cached is not None and cached[0] == raw:
            return cached[1]
        config = PrinterConfigured.model_validate_json(raw)
        self.configs[printer_id] = (raw, config)
        return config

    @property
    def jobs_stream(self) -> str:
        return self.subjects.name("POLLJOBS")

    def job_subject(self, site: str, printer_id: str) -> str:
        return self.subjects.subject(site, JOB_AREA, printer_id)

    async def ensure_jobs_stream(self) -> None:
        """Create the work-queue stream of poll jobs: at most one job per printer."""
        await self.bus.ensure_stream(
            StreamConfig(
                name=self.jobs_stream,
                description="TonerWatch poll jobs: one per monitored printer",
                subjects=[self.subjects.area(JOB_AREA, keyed=False)],
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
        """Keep the fleet in KV and make sure each monitored printer has its one poll job."""
        if isinstance(event, PollRequested):
            self.request_poll(event)
        elif isinstance(event, PrinterConfigured) and event.monitored:
            if self.config_mirror is not None:
                await self.config_mirror.put(token(event.printer_id), event.to_bytes())
            else:
                await self.printers.put(token(event.printer_id), event.to_bytes())
            await self.schedule(event)
        elif isinstance(event, (PrinterRemoved, PrinterConfigured)):
            if self.config_mirror is not None:
                await self.config_mirror.delete(token(event.printer_id))
            else:
                with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                    await self.printers.delete(token(event.printer_id))
            self.plans.pop(event.printer_id, None)
            self.parsed.pop(event.printer_id, None)
            self.configs.pop(event.printer_id, None)
            self.recent.pop(event.printer_id, None)
            # The job ends itself the next time it comes due and finds no configuration.

    async def schedule(self, config: PrinterConfigured) -> None:
        """Publish the printer's poll job unless it has one already (the stream refuses a second)."""
        # scheduled_at spreads first polls (schedule.first_due), also after a NATS restart.
        payload = json.dumps(
            {
                "printer_id": config.printer_id,
                "site_id": config.site_id,
                "scheduled_at": time.time(),
            }
        ).encode()
        try:
            await self.bus.js.publish(
                self.job_subject(config.site_id, config.printer_id), payload, timeout=5.0
            )
        except nats.js.errors.APIError as exc:
            if "maximum messages per subject" not in str(exc).lower():
                raise
            # Already scheduled: the per-subject limit is what keeps a printer from being polled twice.
            return
        log.info("scheduled %s at %s", config.printer_id, config.address)

    def request_poll(self, event: PollRequested, now: float | None = None) -> bool:
        """Start polling the printer now, outside its schedule; return whether a poll started.

        The poll runs beside the job loop (the configuration consumer is not held up by it); its
        recorded poll time moves the printer's next scheduled poll one interval on.
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
            await self.poll(config, await self.read_health(config.printer_id))
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("requested poll of %s not published (%r)", config.printer_id, exc)

    # --- polling -------------------------------------------------------------------------------

    def job_consumers(self) -> list[tuple[str, str | None]]:
        """Return the (durable, filter) of each job consumer: one per selected site, or one for all."""
        if not self.settings.sites:
            return [(self.subjects.name("poller_jobs"), None)]
        # One durable per site: replicas serving the same site share it, and the filters of
        # different sites never overlap (a work-queue stream refuses overlapping consumers).
        return [
            (self.subjects.name(f"poller_jobs_{site}"), self.subjects.filter(JOB_AREA, site=site))
            for site in self.settings.sites
        ]

    async def run_jobs(self, stop: asyncio.Event) -> None:
        """Pull due poll jobs of this replica's sites until stop, polling up to poll_concurrency at once."""
        slots = asyncio.Semaphore(self.settings.poll_concurrency)
        try:
            async with asyncio.TaskGroup() as tg:
                for durable, filter_subject in self.job_consumers():
                    await self.bus.js.add_consumer(
                        self.jobs_stream,
                        ConsumerConfig(
                            durable_name=durable,
                            ack_policy=AckPolicy.EXPLICIT,
                            ack_wait=self.settings.job_ack_wait_s,
                            max_deliver=-1,
                            max_ack_pending=-1,  # every monitored printer's job is pending between polls
                            filter_subject=filter_subject,
                        ),
                    )
                    tg.create_task(self._pull_jobs(durable, slots, stop))
        finally:
            if self.in_flight:
                # Let polls under way finish (bounded by their own timeouts) so no reading is lost.
                await asyncio.wait(self.in_flight, timeout=self.settings.poll_timeout_s * 4 + 5)

    async def _pull_jobs(
        self,
        durable: str,
        slots: asyncio.Semaphore,
        stop: asyncio.Event,
    ) -> None:
        """Take the consumer's due jobs through one long-lived pull request, re-armed as it ends.

        A fetch per batch cost a pull request (often two: a no-wait one, then a waiting one) for
        every one or two jobs at steady rates. One request for as many jobs as there are free
        slots, waiting up to PULL_EXPIRES_S, delivers jobs as they come due; it ends when its
        batch is delivered or it expires (status 408), and the next is sent then. Idle
        heartbeats from the server, and the connection's reconnect count, tell a request lost
        with a NATS restart: it is sent again.
        """
        nc = self.bus.nc
        pull = _JobPull(nc.new_inbox(), f"$JS.API.CONSUMER.MSG.NEXT.{self.jobs_stream}.{durable}")

        async def on_msg(msg: Msg) -> None:
            if not pull.delivered(msg):
                return
            if stop.is_set():  # stopping: hand it straight back, another replica takes it
                with contextlib.suppress(Exception):
                    await msg.nak()
                return
            await slots.acquire()
            task = asyncio.create_task(self._job(msg, slots))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)

        sub = await nc.subscribe(pull.inbox, cb=on_msg)
        try:
            while not stop.is_set():
                if pull.needs_request(time.monotonic(), nc.stats["reconnects"]):
                    free = self.settings.poll_concurrency - len(self.in_flight)
                    if free > 0:
                        try:
                            await nc.publish(
                                pull.subject, pull.request(min(free, 256)), reply=pull.inbox
                            )
                        except nats.errors.ConnectionClosedError:
                            return
                        except nats.errors.Error as exc:  # reconnecting: ask again soon
                            pull.lost()
                            await pause_on_bus_error(exc, durable, stop)
                            continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PULL_CHECK_S):
                        await pull.wake.wait()
                pull.wake.clear()
        finally:
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]

    async def _job(self, msg: Msg, slots: asyncio.Semaphore) -> None:
        try:
            await self.handle_job(msg)
        except Exception:
            log.exception("poll job failed; retrying in %.0f s", FAILED_JOB_RETRY_S)
            with contextlib.suppress(Exception):
                await msg.nak(delay=FAILED_JOB_RETRY_S)
        finally:
            slots.release()

    async def handle_job(self, msg: Msg) -> None:
        """Poll the job's printer once and reschedule it, or end the job if the printer is gone."""
        try:
            job = json.loads(msg.data)
            printer_id = str(job["printer_id"])
        except (ValueError, KeyError, TypeError):
            log.error("terminated malformed poll job on %s", msg.subject)
            await msg.term()
            return
        config = await self.read_config(printer_id)
        if config is None:
            await msg.term()  # printer removed: its job ends here
            self.plans.pop(printer_id, None)
            self.parsed.pop(printer_id, None)
            self.recent.pop(printer_id, None)
            return
        current_site.set(config.site_id)
        scheduled_at = job.get("scheduled_at")
        health = await self.read_health(config.printer_id)  # read once: the slot, then the poll
        now = time.time()
        last_poll_at = health.last_poll_at
        if config.printer_id not in self.recent:  # another replica's record: it may lag
            last_poll_at = schedule.assumed_last_poll(
                now, last_poll_at, health.refresh_s, config.interval_s, config.printer_id
            )
        decision = schedule.decide(
            now,
            last_poll_at=last_poll_at,
            scheduled_at=float(scheduled_at) if isinstance(scheduled_at, (int, float)) else None,
            interval_s=config.interval_s,
            printer_id=config.printer_id,
        )
        if not decision.poll_now:
            # Early (a NATS restart forgot the delay, or a new printer's first slot): wait for the slot.
            self.metrics.put_back.inc()
            await msg.nak(delay=decision.wait_s)
            return
        if config.printer_id in self.polling:
            # A requested poll is under way here: this one is not needed, the next slot follows.
            now = time.time()
            await msg.nak(
                delay=schedule.due_after_poll(now, config.interval_s, config.printer_id) - now
            )
            return
        # A slow poll must not look like a dead replica: "in progress" once it runs long.
        progress = _Progress(msg, self.settings.job_ack_wait_s * PROGRESS_SHARE)
        try:
            await self.poll(config, health)
        except (nats.errors.Error, TimeoutError) as exc:
            # The bus failed mid-poll (a leader election, a restart): try again soon, but never
            # later than the printer's own interval.
            log.warning("poll of %s not published (%r); retrying", config.printer_id, exc)
            await msg.nak(delay=min(FAILED_JOB_RETRY_S, config.interval_s))
            return
        finally:
            progress.cancel()
        now = time.time()
        await msg.nak(
            delay=schedule.due_after_poll(now, config.interval_s, config.printer_id) - now
        )

    async def read_health(self, printer_id: str) -> PrinterHealth:
        """Return what is known of the printer's last polls (empty if never polled).

        This replica's own last poll of it when that is the newest (exact, no round trip), else
        the stored record (from the mirror; from KV when neither knows the printer).
        """
        key = token(printer_id)
        own = self.recent.get(printer_id)
        raw: bytes | None
        if self.health_mirror is not None:
            raw = self.health_mirror.get(key)
            if raw is None and own is None:
                raw = await self.health_mirror.get_fresh(key)
        else:
            try:
                raw = (await self.health.get(key)).value
            except nats.js.errors.KeyNotFoundError:
                raw = None
        stored = PrinterHealth.from_bytes(raw)
        if own is not None and (own.last_poll_at or 0) >= (stored.last_poll_at or 0):
            return replace(own)
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

    async def _store_health(self, printer_id: str, health: PrinterHealth) -> None:
        """Write the printer's health to KV (and the mirror) and remember it as this replica's."""
        self.recent[printer_id] = replace(health)
        if self.health_mirror is not None:
            await self.health_mirror.put(token(printer_id), health.to_bytes())
        else:
            await self.health.put(token(printer_id), health.to_bytes())

    async def count_overdue(self, now: float) -> int:
        """Return how many monitored printers nobody has polled in time (see schedule.overdue_after)."""
        if self.config_mirror is not None and self.health_mirror is not None:
            printers, health = self.config_mirror.values, self.health_mirror.values
        else:
            printers = await latest_values(self.printers)
            health = await latest_values(self.health)
        overdue = 0
        for key, raw in list(printers.items()):
            try:
                config = PrinterConfigured.model_validate_json(raw)
            except ValueError:
                continue
            if self.settings.sites and config.site_id not in self.settings.sites:
                continue  # another site's poller answers for it
            stored = PrinterHealth.from_bytes(health.get(key))
            last, lag = stored.last_poll_at, stored.refresh_s or 0.0
            own = self.recent.get(config.printer_id)
            if own is not None and own.last_poll_at is not None and own.last_poll_at >= (last or 0):
                last, lag = own.last_poll_at, 0.0  # this replica's own poll: exact
            since = last if last is not None else config.occurred_at.timestamp()
            limit = schedule.overdue_after(config.interval_s, self.settings.job_ack_wait_s) + lag
            if now - since > limit + schedule.FIRST_POLL_WINDOW_S * (last is None):
                overdue += 1
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

    async def poll(self, config: PrinterConfigured, health: PrinterHealth) -> bool:
        """Poll one printer, publish its reading and any reachability change; return success.

        health is what handle_job just read from the KV (one read per poll, not two).
        """
        self.polling.add(config.printer_id)
        try:
            return await self._poll(config, health)
        finally:
            self.polling.discard(config.printer_id)

    async def _poll(self, config: PrinterConfigured, health: PrinterHealth) -> bool:
        health.last_poll_at = time.time()
        health.refresh_s = None  # a failed poll's record is exact
        source = f"poller/{self.settings.instance}"
        try:
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
            await self.bus.publish(reading.model_copy(update={"seq": health.next_seq()}))
            cost: SupplyReading | SteadyReading = reading
        else:  # the same answer as last time: the kept JSON with this poll's values
            assert polled is not None and polled.steady is not None
            cost = steady = polled.steady
            await self.bus.publish_json(
                self.subjects.subject(config.site_id, SUPPLY_READING, config.printer_id),
                steady.encode(health.next_seq()),
                event_id=str(steady.event_id),
                type_=READING_TYPE,
            )
        self.metrics.poll_done("ok", config.protocol)
        self.metrics.sent.inc(cost.bytes_sent)
        self.metrics.received.inc(cost.bytes_received)
        self.metrics.duration.observe(cost.duration_ms / 1000)
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
        stored = self._stored_health(config.printer_id)
        if (
            stored is None
            or stored.substance() != health.substance()
            or stored.last_poll_at is None
            # The clock is behind the printer's seq (stepped back): its seq counts on from the
            # last one, which another replica or a restart must read exactly.
            or (health.seq or 0) > ordering.next_seq(None, now)
            # Rewritten a little early, so the stored time never lags by more than refresh_s.
            or now - stored.last_poll_at
            >= (health.refresh_s or 0) - schedule.tolerance(config.interval_s)
        ):
            await self._store_health(config.printer_id, health)
        else:
            self.recent[config.printer_id] = health  # the same as stored but for the poll times
        return True

    async def _failed(
        self,
        config: PrinterConfigured,
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
        await self._store_health(config.printer_id, health)


class _Progress:
    """Tells JetStream a job is in progress every every_s seconds until cancelled (none if quick)."""

    def __init__(self, msg: Msg, every_s: float) -> None:
        self.msg = msg
        self.every_s = every_s
        self.loop = asyncio.get_running_loop()
        self.sent: set[asyncio.Task[None]] = set()
        self.handle: asyncio.TimerHandle | None = self.loop.call_later(every_s, self._fire)

    def _fire(self) -> None:
        task = self.loop.create_task(self._send())
        self.sent.add(task)
        task.add_done_callback(self.sent.discard)
        self.handle = self.loop.call_later(self.every_s, self._fire)

    async def _send(self) -> None:
        with contextlib.suppress(Exception):
            await self.msg.in_progress()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class _JobPull:
    """The state of one replica's long-lived pull request for jobs (pure: no I/O).

    One request at a time, for `batch` jobs, waiting up to PULL_EXPIRES_S. It is over when its
    batch has been delivered, when the server ends it (408 expired, 409 e.g. a leadership change),
    or when it was lost: neither a job nor an idle heartbeat for two heartbeat intervals, or the
    connection reconnected (a restarted server forgot it). A lost request that was not lost after
    all only means a few more jobs than free slots; they wait for a slot.
    """

    def __init__(self, inbox: str, subject: str) -> None:
        self.inbox = inbox
        self.subject = subject
        self.wake = asyncio.Event()
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
        if self.remaining > 0 and now - self.heard_at > 2 * PULL_HEARTBEAT_S + PULL_CHECK_S:
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


class _Refused(Exception):
    """A poll refused before anything was sent (bad address or credentials), named."""

    def __init__(self, failure: failures.PollFailure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def _refused_before_sending(
    config: PrinterConfigured, credentials: SnmpCredentials
) -> failures.PollFailure | None:
    """Return why a printer cannot be polled as configured (stored before today's checks), or None.

    An address that is no address is never looked up; SNMPv3 keys pysnmp cannot use are not tried.
    """
    try:
        check_host(config.address)
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


__all__ = ["Poller", "Settings", "config_consumers", "run"]
