"""The poller's job side before partition leases (main at 91da0c9), kept for poller_ops_bench.py.

Every monitored printer had one job message in the work-queue stream; a replica pulled it when
due (one long-lived pull request), polled, and nak'ed it with the delay to the printer's next
slot, so NATS was the timer: a redelivery and a nak per poll. PreviousPoller is today's Poller
(its polls, mirrors and reading path) with that job side put back, so the bench compares the two
schedulers and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

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

from tonerwatch_poller import schedule
from tonerwatch_poller.service import (
    FAILED_JOB_RETRY_S,
    JOB_AREA,
    PULL_CHECK_S,
    Poller,
    PrinterHealth,
    _JobPull,
)
from tonerwatch_shared.bus import pause_on_bus_error
from tonerwatch_shared.events import Event, PrinterConfigured
from tonerwatch_shared.logs import current_site

log = logging.getLogger("bench.poller_previous")

FIRST_POLL_TOLERANCE_S = 0.5
PROGRESS_SHARE = 0.4


@dataclass(frozen=True)
class Decision:
    """Poll now (wait_s 0), or put the job back for wait_s seconds without polling."""

    wait_s: float

    @property
    def poll_now(self) -> bool:
        return self.wait_s <= 0


def decide(
    now: float,
    *,
    last_poll_at: float | None,
    scheduled_at: float | None,
    interval_s: float,
    printer_id: str,
) -> Decision:
    """Return whether a job delivered at now is due, or how long to put it back."""
    if last_poll_at is None:
        due = schedule.first_due(scheduled_at, interval_s, printer_id) if scheduled_at else now
        allowed = min(schedule.tolerance(interval_s), FIRST_POLL_TOLERANCE_S)
    else:
        due = schedule.due_after_poll(last_poll_at, interval_s, printer_id)
        allowed = schedule.tolerance(interval_s)
    early = due - now
    return Decision(early if early > allowed else 0.0)


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


class PreviousPoller(Poller):
    """Today's poller with a job message per printer, redelivered at its slot and nak'ed after."""

    async def ensure_jobs_stream(self) -> None:
        await self.bus.ensure_stream(
            StreamConfig(
                name=self.jobs_stream,
                subjects=[self.subjects.area(JOB_AREA, keyed=False)],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                max_bytes=self.settings.polljobs_max_bytes,
                max_msgs_per_subject=1,
                discard=DiscardPolicy.NEW,
                discard_new_per_subject=True,
            )
        )

    async def on_config(self, event: Event, msg: Msg) -> None:
        await super().on_config(event, msg)
        if isinstance(event, PrinterConfigured) and event.monitored:
            await self.schedule(event)

    async def schedule(self, config: PrinterConfigured) -> None:
        """Publish the printer's poll job unless it has one already (the stream refuses a second)."""
        payload = json.dumps(
            {
                "printer_id": config.printer_id,
                "site_id": config.site_id,
                "scheduled_at": time.time(),
            }
        ).encode()
        try:
            await self.bus.js.publish(
                self.subjects.subject(config.site_id, JOB_AREA, config.printer_id),
                payload,
                timeout=5.0,
            )
        except nats.js.errors.APIError as exc:
            if "maximum messages per subject" not in str(exc).lower():
                raise

    async def run_jobs(self, stop: asyncio.Event) -> None:
        slots = asyncio.Semaphore(self.settings.poll_concurrency)
        durable = self.subjects.name("poller_jobs")
        try:
            await self.bus.js.add_consumer(
                self.jobs_stream,
                ConsumerConfig(
                    durable_name=durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.settings.job_ack_wait_s,
                    max_deliver=-1,
                    max_ack_pending=-1,
                ),
            )
            await self._pull_jobs(durable, slots, stop)
        finally:
            if self.in_flight:
                await asyncio.wait(self.in_flight, timeout=self.settings.poll_timeout_s * 4 + 5)

    async def _pull_jobs(self, durable: str, slots: asyncio.Semaphore, stop: asyncio.Event) -> None:
        nc = self.bus.nc
        pull = _JobPull(nc.new_inbox(), f"$JS.API.CONSUMER.MSG.NEXT.{self.jobs_stream}.{durable}")

        async def on_msg(msg: Msg) -> None:
            if not pull.delivered(msg):
                return
            if stop.is_set():
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
                        except nats.errors.Error as exc:
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
            log.exception("poll job failed")
            with contextlib.suppress(Exception):
                await msg.nak(delay=FAILED_JOB_RETRY_S)
        finally:
            slots.release()

    async def handle_job(self, msg: Msg) -> None:
        """Poll the job's printer once and nak it until its next slot, or end it if it is gone."""
        job = json.loads(msg.data)
        printer_id = str(job["printer_id"])
        config = await self.read_config(printer_id)
        if config is None:
            await msg.term()
            return
        current_site.set(config.site_id)
        scheduled_at = job.get("scheduled_at")
        health: PrinterHealth = await self.read_health(config.printer_id)
        now = time.time()
        last_poll_at = health.last_poll_at
        if config.printer_id not in self.recent:
            last_poll_at = schedule.assumed_last_poll(
                now, last_poll_at, health.refresh_s, config.interval_s, config.printer_id
            )
        decision = decide(
            now,
            last_poll_at=last_poll_at,
            scheduled_at=float(scheduled_at) if isinstance(scheduled_at, (int, float)) else None,
            interval_s=config.interval_s,
            printer_id=config.printer_id,
        )
        if not decision.poll_now:
            await msg.nak(delay=decision.wait_s)
            return
        progress = _Progress(msg, self.settings.job_ack_wait_s * PROGRESS_SHARE)
        try:
            await self.poll(config, health)
        except (nats.errors.Error, TimeoutError):
            await msg.nak(delay=min(FAILED_JOB_RETRY_S, config.interval_s))
            return
        finally:
            progress.cancel()
        now = time.time()
        await msg.nak(
            delay=schedule.due_after_poll(now, config.interval_s, config.printer_id) - now
        )


__all__ = ["PreviousPoller", "decide"]
