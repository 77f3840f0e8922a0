"""The discovery service: runs the sweeps people ask for and publishes what they find.

Consumes `DiscoveryRequested` (durable consumer on `<root>.*.discovery.requested.*`, or one per
site in TONERWATCH_SITES so a collector sweeps only its own site's networks; new requests only), runs the sweep in the background (the request is acknowledged once the sweep starts: a sweep
cut by a restart is not resumed, its `DiscoveryFinished` says "cancelled"), publishes
`DiscoveryProgress` at least once a second, `PrinterFound` per printer (recognised again by serial
or MAC through the DISCOVERY_DEVICES bucket) and `DiscoveryFinished` at the end. A
`DiscoveryCancelled` (live subscription) stops the job. Scheduled re-discovery, off by default,
publishes a `DiscoveryRequested` per site every `discovery_schedule_interval_s` (the first one interval
after start), with the site's targets, credential sets and port from the settings; the sweep then
runs like any requested one. `PrinterFound` carries the device key and the credential set that
answered (the bus is internal to the deployment; SnmpCredentials never shows its secrets in repr).

`sweep_once` is the one-shot entry point without the bus (`tonerwatch discover` reaches it through
the CLI's service loading): one sweep, each printer and the progress handed to callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry
from pydantic import Field

from tonerwatch_discovery.devices import BUCKET, DeviceStore, KvDeviceStore, recognise
from tonerwatch_discovery.icmp import IcmpNotPermittedError
from tonerwatch_discovery.identify import FoundPrinter
from tonerwatch_discovery.netinfo import DEFAULT_MAX_PREFIX
from tonerwatch_discovery.sweep import Sweep, SweepConfig, SweepProgress, SweepResult
from tonerwatch_shared.bus import Bus, ConsumerSpec
from tonerwatch_shared.events import (
    DiscoveryCancelled,
    DiscoveryFinished,
    DiscoveryProgress,
    DiscoveryRequested,
    Event,
    PrinterFound,
    SnmpCredentials,
)
from tonerwatch_shared.lifecycle import sleep_until_stopped, stop_event
from tonerwatch_shared.ops import (
    Check,
    bus_check,
    consumer_lag_gauge,
    not_connected,
    serve_ops,
    stream_fill_gauge,
)
from tonerwatch_shared.sealing import Sealer, SealingError, open_credentials, seal_credentials
from tonerwatch_shared.settings import CommonSettings
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.targets import LOCAL, TargetError

log = logging.getLogger("tonerwatch.discovery")

_SHUTDOWN_WAIT_S = 10.0
_REMEMBERED_CANCELS = 256


class Settings(CommonSettings):
    """Discovery knobs (env TONERWATCH_<NAME>)."""

    discovery_rate_pps: float = Field(
        default=200.0, gt=0, description="Probe rate when a request gives none"
    )
    discovery_max_rate_pps: float = Field(
        default=5000.0, gt=0, description="Upper bound on any request's rate"
    )
    discovery_timeout_s: float = Field(default=1.0, gt=0, description="Wait for a probe's answer")
    discovery_time_limit_s: float = Field(
        default=3600.0, gt=0, description="Time limit of a sweep whose request gives none"
    )
    discovery_max_in_flight: int = Field(
        default=8192, ge=1, description="Probes awaiting an answer"
    )
    discovery_identify_concurrency: int = Field(
        default=32, ge=1, description="Devices identified at once"
    )
    discovery_identify_timeout_s: float = Field(default=2.0, gt=0)
    discovery_max_prefix: int = Field(
        default=DEFAULT_MAX_PREFIX, ge=8, le=32, description="Largest local subnet swept"
    )
    discovery_max_addresses: int = Field(default=1 << 20, ge=1)
    discovery_max_jobs: int = Field(default=2, ge=1, description="Sweeps running at once")
    discovery_snapshot: bool = Field(default=True, description="First supply snapshot per printer")
    discovery_schedule_interval_s: float | None = Field(
        default=None, gt=0, description="Re-discover every N seconds (off when unset)"
    )
    discovery_schedule_targets: list[str] = Field(default_factory=lambda: [LOCAL])
    discovery_schedule_sites: list[str] = Field(
        default_factory=list, description="Sites swept on schedule (default: the default site)"
    )
    discovery_schedule_site_targets: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Targets per scheduled site, JSON (sites not named get discovery_schedule_targets)",
    )
    discovery_schedule_communities: list[str] = Field(
        default_factory=lambda: ["public"], repr=False
    )
    discovery_schedule_credentials: list[SnmpCredentials] = Field(
        default_factory=list,
        repr=False,
        description="Credential sets in order, JSON (v3 users too); replaces the communities when set",
    )
    discovery_schedule_port: int = Field(default=161, ge=1, le=65535)
    discovery_schedule_icmp_prepass: bool = Field(
        default=False, description="Scheduled sweeps ping first (hosts that drop ping are missed)"
    )


class DiscoveryService:
    """Runs sweeps for requests and publishes their events."""

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        store: DeviceStore,
        client: SnmpClient,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.store = store
        self.client = client
        self.source = f"discovery/{settings.instance}"
        self.jobs: dict[tuple[str, str], Sweep] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.cancelled: deque[tuple[str, str]] = deque(maxlen=_REMEMBERED_CANCELS)
        self.slots = asyncio.Semaphore(settings.discovery_max_jobs)
        self.clock = clock
        self._scheduled = 0
        self.sealer = Sealer.from_settings(settings)

    def config_for(self, request: DiscoveryRequested) -> SweepConfig:
        """The sweep a request asks for, bounded by this service's settings."""
        s = self.settings
        return SweepConfig(
            targets=request.targets,
            # Requests carry sealed credentials: opened here, for the probes of this sweep only.
            credentials=tuple(open_credentials(self.sealer, c) for c in request.credentials)
            or (SnmpCredentials(),),
            port=request.port,
            rate_pps=min(request.rate_pps, s.discovery_max_rate_pps),
            timeout_s=request.timeout_s,
            time_limit_s=request.time_limit_s or s.discovery_time_limit_s,
            max_in_flight=s.discovery_max_in_flight,
            identify_concurrency=s.discovery_identify_concurrency,
            identify_timeout_s=s.discovery_identify_timeout_s,
            snapshot=s.discovery_snapshot,
            max_prefix=s.discovery_max_prefix,
            max_addresses=s.discovery_max_addresses,
            icmp_prepass=request.icmp_prepass,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def on_requested(self, event: Event, _msg: Msg) -> None:
        """Starts the requested sweep in the background (acknowledged once started)."""
        if not isinstance(event, DiscoveryRequested):
            return
        key = (event.site_id, event.job_id)
        if key in self.jobs:
            return  # redelivered while it runs
        try:
            config = self.config_for(event)
        except (ValueError, TargetError, SealingError) as exc:
            await self._finished(event, None, error=str(exc))
            return
        sweep = Sweep(
            config,
            client=self.client,
            on_progress=lambda p: self._progress(event, p),
            on_printer=lambda f: self._printer(event, f),
        )
        self.jobs[key] = sweep
        if key in self.cancelled:
            sweep.cancel()
        self._spawn(self._run_job(event, sweep))

    async def _run_job(self, request: DiscoveryRequested, sweep: Sweep) -> None:
        key = (request.site_id, request.job_id)
        try:
            async with self.slots:
                log.info("sweep %s of %s started", request.job_id, ", ".join(request.targets))
                try:
                    result = await sweep.run()
                except (ValueError, TargetError, OSError) as exc:
                    await self._finished(request, None, error=str(exc))
                    return
                await self._finished(request, result)
                log.info(
                    "sweep %s %s: %d printers, %d other devices, %d/%d addresses in %.1fs",
                    request.job_id,
                    result.end_condition,
                    len(result.printers),
                    len(result.non_printers),
                    result.probed,
                    result.total,
                    result.elapsed_s,
                )
        except Exception as exc:
            log.exception("sweep %s failed", request.job_id)
            with contextlib.suppress(Exception):
                await self._finished(request, None, error=repr(exc))
        finally:
            self.jobs.pop(key, None)

    async def _finished(
        self, request: DiscoveryRequested, result: SweepResult | None, *, error: str | None = None
    ) -> None:
        if result is None:
            event = DiscoveryFinished(
                source=self.source,
                site_id=request.site_id,
                job_id=request.job_id,
                end_condition="failed",
                probed=0,
                total=0,
                live=0,
                printers=0,
                non_printers=0,
                elapsed_s=0.0,
                error=error,
            )
        else:
            event = DiscoveryFinished(
                source=self.source,
                site_id=request.site_id,
                job_id=request.job_id,
                end_condition=result.end_condition,
                probed=result.probed,
                total=result.total,
                live=result.live,
                printers=len(result.printers),
                non_printers=len(result.non_printers),
                elapsed_s=result.elapsed_s,
                bytes_sent=result.bytes_sent,
                bytes_received=result.bytes_received,
                error="; ".join(result.errors) or None,
            )
        await self.bus.publish(event)

    def _progress(self, request: DiscoveryRequested, progress: SweepProgress) -> None:
        # Published from a task: a slow bus must not hold the probe pacing.
        event = DiscoveryProgress(
            source=self.source,
            site_id=request.site_id,
            job_id=request.job_id,
            probed=progress.probed,
            total=progress.total,
            live=progress.live,
            printers_found=progress.printers,
            elapsed_s=progress.elapsed_s,
            remaining_s=progress.remaining_s,
        )
        self._spawn(self._publish_quietly(event))

    async def _publish_quietly(self, event: Event) -> None:
        try:
            await self.bus.publish(event)
        except Exception as exc:
            log.warning("could not publish %s: %r", type(event).__name__, exc)

    async def _printer(self, request: DiscoveryRequested, found: FoundPrinter) -> None:
        await recognise(self.store, request.site_id, found)
        if found.previous_address:
            log.info(
                "printer %s moved from %s to %s",
                found.device_key,
                found.previous_address,
                found.address,
            )
        await self.bus.publish(
            found_event(found, self.source, request.site_id, request.job_id, self.sealer)
        )

    async def on_cancelled(self, event: Event) -> None:
        """Cancels the job named, now or as soon as it starts."""
        if not isinstance(event, DiscoveryCancelled):
            return
        key = (event.site_id, event.job_id)
        self.cancelled.append(key)
        sweep = self.jobs.get(key)
        if sweep is not None:
            log.info("sweep %s cancelled", event.job_id)
            sweep.cancel()

    def scheduled_requests(self) -> list[DiscoveryRequested]:
        """The sweep requests one scheduled round publishes: one per configured site."""
        s = self.settings
        sites = s.discovery_schedule_sites or s.sites or [s.default_site]
        credentials = tuple(
            seal_credentials(self.sealer, c)
            for c in s.discovery_schedule_credentials
            or [SnmpCredentials(community=c) for c in s.discovery_schedule_communities]
        )
        self._scheduled += 1
        # Unique per round even at short intervals: a repeated job id would be taken as a redelivery.
        stamp = f"{self.clock():%Y%m%dT%H%M%SZ}-{self._scheduled}"
        return [
            DiscoveryRequested(
                source=self.source,
                site_id=site,
                job_id=f"scheduled-{stamp}",
                targets=tuple(
                    s.discovery_schedule_site_targets.get(site, s.discovery_schedule_targets)
                ),
                credentials=credentials,
                port=s.discovery_schedule_port,
                rate_pps=s.discovery_rate_pps,
                timeout_s=s.discovery_timeout_s,
                icmp_prepass=s.discovery_schedule_icmp_prepass,
            )
            for site in sites
        ]

    async def schedule(self, stop: asyncio.Event) -> None:
        """Publishes a sweep request per scheduled site every interval (first after one) until stop."""
        interval = self.settings.discovery_schedule_interval_s
        if interval is None:
            return
        # The first round waits one interval: a restart must not start a sweep of every site.
        while not await sleep_until_stopped(stop, interval):
            for request in self.scheduled_requests():
                log.info("scheduled sweep %s of site %s", request.job_id, request.site_id)
                await self._publish_quietly(request)

    async def shutdown(self) -> None:
        """Cancels running sweeps and waits (bounded) for their DiscoveryFinished."""
        for sweep in self.jobs.values():
            sweep.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=_SHUTDOWN_WAIT_S)


def found_event(
    found: FoundPrinter,
    source: str,
    site_id: str,
    job_id: str | None,
    sealer: Sealer | None = None,
) -> PrinterFound:
    """The PrinterFound event for a printer found (discovery bytes: probe + identification).

    The credentials that answered travel sealed (with sealer's key, if it has one).
    """
    return PrinterFound(
        source=source,
        site_id=site_id,
        job_id=job_id,
        address=found.address,
        port=found.port,
        identity=found.identity,
        credentials_name=found.credentials_name,
        supplies=found.snapshot.supplies if found.snapshot is not None else (),
        bytes_sent=found.probe.sent + found.identify.sent,
        bytes_received=found.probe.received + found.identify.received,
        device_key=found.device_key,
        # The set that answered, so monitoring uses it (internal bus only; never logged: repr=False).
        credentials=seal_credentials(sealer or Sealer(None), found.credentials),
    )


async def run(
    settings: Settings, *, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None
) -> None:
    """Run the discovery service until stop (or SIGTERM): request consumer, cancel listener, schedule."""
    stop = stop_event(stop)
    registry = CollectorRegistry()
    # /healthz answers while NATS is still being reached (liveness); /readyz says it is not yet.
    checks: dict[str, Check] = {"nats": not_connected("NATS")}
    async with serve_ops(settings.ops_host, settings.ops_port, registry, checks):
        await _run(settings, stop, ready, registry, checks)


async def _run(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None,
    registry: CollectorRegistry,
    checks: dict[str, Check],
) -> None:
    subjects = Subjects(settings.subject_root, settings.stream_prefix)
    bus = await Bus.for_service(settings, "discovery", stop=stop)
    client = SnmpClient(max_in_flight=settings.discovery_identify_concurrency * 2)
    service: DiscoveryService | None = None
    stack = contextlib.AsyncExitStack()
    try:
        await bus.ensure_event_stream()
        store = KvDeviceStore(await bus.key_value(BUCKET))
        service = DiscoveryService(settings, bus, store, client)
        specs = request_consumers(subjects, settings.sites)
        for spec in specs:
            await bus.ensure_consumer(spec)  # before ready: a request published after ready is seen
        checks.update(
            {
                "nats": bus_check(bus),
                "stream_fill": stream_fill_gauge(registry, bus),
                "lag": consumer_lag_gauge(
                    registry, bus, {spec.durable: subjects.events_stream for spec in specs}
                ),
            }
        )
        if ready is not None:
            ready.set()
        log.info("discovery ready")
        async with asyncio.TaskGroup() as tg:
            for spec in specs:
                tg.create_task(bus.consume(spec, service.on_requested, stop=stop))
            for site in settings.sites or ["*"]:
                tg.create_task(
                    bus.subscribe_events(
                        DiscoveryCancelled.subject_filter(subjects, site),
                        stop=stop,
                        handler=service.on_cancelled,
                    )
                )
            tg.create_task(service.schedule(stop))
            tg.create_task(stop.wait())
    finally:
        if service is not None:
            await service.shutdown()
        await stack.aclose()
        await client.close()
        await bus.drain()


def request_consumers(subjects: Subjects, sites: list[str]) -> list[ConsumerSpec]:
    """Return the sweep-request consumers of a replica serving sites (empty: every site)."""
    # Only requests made from now on: a new deployment must not replay a week of sweeps.
    if not sites:
        return [
            ConsumerSpec(
                durable=subjects.name("discovery_requests"),
                filter_subject=DiscoveryRequested.subject_filter(subjects),
                deliver_new_only=True,
            )
        ]
    return [
        ConsumerSpec(
            durable=subjects.name(f"discovery_requests_{site}"),
            filter_subject=DiscoveryRequested.subject_filter(subjects, site),
            deliver_new_only=True,
        )
        for site in sites
    ]


class SweepRefused(Exception):
    """A one-shot sweep that cannot run: bad targets or limits, or the ICMP pre-pass not permitted."""


async def sweep_once(
    targets: Sequence[str],
    credentials: Sequence[SnmpCredentials],
    *,
    rate_pps: float = 200.0,
    time_limit_s: float | None = None,
    timeout_s: float = 1.0,
    port: int = 161,
    icmp_prepass: bool = False,
    progress_interval_s: float = 1.0,
    on_progress: Callable[[SweepProgress], None] | None = None,
    on_printer: Callable[[FoundPrinter], None] | None = None,
) -> SweepResult:
    """Sweep targets once without the bus; return how it ended (a cancel ends it with what was found).

    Raises SweepRefused (the message says why) when the arguments are wrong or the pre-pass is not
    permitted; nothing was sent then.
    """
    try:
        config = SweepConfig(
            targets=list(targets),
            credentials=list(credentials) or [SnmpCredentials()],
            rate_pps=rate_pps,
            time_limit_s=time_limit_s,
            timeout_s=timeout_s,
            port=port,
            icmp_prepass=icmp_prepass,
            progress_interval_s=progress_interval_s,
        )
    except ValueError as exc:
        raise SweepRefused(str(exc)) from None
    engine = Sweep(config, on_progress=on_progress, on_printer=on_printer)
    task = asyncio.ensure_future(engine.run())
    try:
        return await asyncio.shield(task)
    except (TargetError, IcmpNotPermittedError) as exc:
        raise SweepRefused(str(exc)) from None
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Ctrl-C: stop probing, but still report what was found so far.
        engine.cancel()
        return await task


__all__ = [
    "DiscoveryService",
    "Settings",
    "SweepRefused",
    "found_event",
    "request_consumers",
    "run",
    "sweep_once",
]
