"""The sweep engine: paced probes from one UDP socket, identification of what answers, first snapshots.

How it stays quick and quiet (field notes: pysnmp's hlapi took 420 s and 1.5 GB for a /16, a raw
socket 2.2 s): every probe is a pre-encoded GET sysObjectID.0 with only the request-id patched, sent
from one asyncio datagram endpoint at a token-bucket rate; addresses come from a lazy iterator and
state is kept only for probes in flight and devices that answered. Only answering addresses get the
identifying GET (shared SNMP client), and only printers the first supply snapshot (shared poll).

A silent address is tried with the next v1/v2c community (or the v3 discovery probe) in order, each
after the timeout. With the ICMP echo pre-pass (off by default) each address first gets an 8-byte
echo request, paced by the same token bucket, and only the addresses that answer it get SNMP probes
(a silent address then costs 8 bytes whatever the number of credential sets), but a printer whose
firewall drops ping is never found, which is why it is off unless asked. The sweep ends when every address was probed and
waited for ("completed"), at the time limit ("time_limit") or when cancelled ("cancelled").
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tonerwatch_discovery.icmp import IcmpEcho, SocketKind
from tonerwatch_discovery.identify import (
    Cost,
    FoundPrinter,
    Identification,
    IdentifyError,
    NonPrinter,
    identify_at,
    printer_from,
    resolve,
)
from tonerwatch_discovery.netinfo import (
    DEFAULT_MAX_PREFIX,
    InterfaceAddress,
    SkippedSubnet,
    host_interface_addresses,
    local_subnets,
)
from tonerwatch_discovery.probe import (
    MAX_IN_FLIGHT,
    RID_MAX,
    RID_MIN,
    ProbeTemplate,
    answer_key,
    probe_order,
    probe_sys_object_id,
    probe_template,
)
from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.snmp.base import SnmpProtocol
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.errors import SnmpError
from tonerwatch_shared.targets import (
    DEFAULT_MAX_ADDRESSES,
    ParsedTargets,
    iter_addresses,
    parse_targets,
    with_addresses,
)

log = logging.getLogger("tonerwatch.discovery.sweep")

EndCondition = Literal["completed", "time_limit", "cancelled"]
_MAX_IDLE_S = 0.05  # longest sleep of the main loop: bounds how late a cancel is noticed
_MIN_SLEEP_S = 0.001
_WRITE_BUFFER_LIMIT = 256 * 1024  # stop sending while the kernel pushes back
_RCVBUF = 1 << 20


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep and how fast: targets, credential sets in order, pacing and limits."""

    targets: Sequence[str]
    credentials: Sequence[SnmpCredentials] = (SnmpCredentials(),)
    port: int = 161
    rate_pps: float = 200.0
    timeout_s: float = 1.0
    time_limit_s: float | None = None
    max_in_flight: int = 8192
    identify_concurrency: int = 32
    probe_retries: int = 0
    identify_timeout_s: float = 2.0
    identify_retries: int = 1
    snapshot: bool = True
    max_prefix: int = DEFAULT_MAX_PREFIX
    include_loopback: bool = False
    include_link_local: bool = False
    max_addresses: int = DEFAULT_MAX_ADDRESSES
    progress_interval_s: float = 1.0
    icmp_prepass: bool = False
    icmp_sockets: tuple[SocketKind, ...] = ("dgram", "raw")

    def __post_init__(self) -> None:
        if self.rate_pps <= 0 or self.timeout_s <= 0:
            raise ValueError("rate and timeout must be positive")
        if not 1 <= self.max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight must be 1..{MAX_IN_FLIGHT}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError("time limit must be positive")
        if not self.credentials:
            raise ValueError("at least one credential set is needed")
        if not 0 < self.progress_interval_s <= 1.0:
            raise ValueError("progress comes at least once a second")


@dataclass(frozen=True)
class SweepProgress:
    """How far a sweep is."""

    probed: int
    total: int
    live: int
    printers: int
    non_printers: int
    elapsed_s: float
    remaining_s: float | None


@dataclass
class SweepResult:
    """How a sweep ended, what it found and what it cost on the wire (SNMP payload bytes)."""

    end_condition: EndCondition
    total: int
    probed: int
    live: int
    printers: list[FoundPrinter]
    non_printers: list[NonPrinter]
    unidentified: list[tuple[str, str]]
    elapsed_s: float
    probe: Cost
    silent_addresses: int
    silent_bytes_sent: int
    identification: Cost
    snapshots: Cost
    errors: list[str] = field(default_factory=list)
    skipped_subnets: list[SkippedSubnet] = field(default_factory=list)
    echo_replies: int | None = None  # addresses that answered the ICMP pre-pass (None: no pre-pass)

    @property
    def bytes_sent(self) -> int:
        """Every byte sent: probes, identifications, first snapshots."""
        return self.probe.sent + self.identification.sent + self.snapshots.sent

    @property
    def bytes_received(self) -> int:
        """Every byte received: answers to probes, identifications, first snapshots."""
        return self.probe.received + self.identification.received + self.snapshots.received

    @property
    def bytes_per_silent_address(self) -> float | None:
        """Bytes sent to each address that never answered."""
        return self.silent_bytes_sent / self.silent_addresses if self.silent_addresses else None

    @property
    def bytes_per_printer(self) -> float | None:
        """Probe plus identification bytes, sent and received, per printer identified."""
        if not self.printers:
            return None
        return sum(p.discovery_bytes for p in self.printers) / len(self.printers)

    @property
    def snapshot_bytes_per_printer(self) -> float | None:
        """First-snapshot bytes, sent and received, per printer."""
        if not self.printers:
            return None
        return sum(p.first_snapshot.total for p in self.printers) / len(self.printers)

    def summary(self) -> dict[str, object]:
        """The figures as a JSON-ready dict."""
        return {
            "end_condition": self.end_condition,
            "addresses": self.total,
            "probed": self.probed,
            "live": self.live,
            "printers": len(self.printers),
            "non_printers": len(self.non_printers),
            "unidentified": len(self.unidentified),
            "seconds": round(self.elapsed_s, 3),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "probe_bytes_sent": self.probe.sent,
            "probe_bytes_received": self.probe.received,
            "bytes_per_silent_address": self.bytes_per_silent_address,
            "bytes_per_printer_identified": self.bytes_per_printer,
            "snapshot_bytes_per_printer": self.snapshot_bytes_per_printer,
            "echo_replies": self.echo_replies,
            "errors": self.errors,
        }


ProgressCallback = Callable[[SweepProgress], Awaitable[None] | None]
PrinterCallback = Callable[[FoundPrinter], Awaitable[None] | None]


@dataclass(slots=True)
class _InFlight:
    address: str
    cred: int
    attempt: int
    sent: int  # probe bytes sent to this address so far, over every attempt
    sys_object_id: str | None = None


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.sweep._on_answer(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable for one address: it simply times out like any silent address.
        log.debug("probe socket: %s", exc)


async def _call(callback: Callable[[object], Awaitable[None] | None], value: object) -> None:
    outcome = callback(value)
    if inspect.isawaitable(outcome):
        await outcome


class Sweep:
    """One sweep; `await run()` once, `cancel()` from anywhere to stop it early."""

    def __init__(
        self,
        config: SweepConfig,
        *,
        on_progress: ProgressCallback | None = None,
        on_printer: PrinterCallback | None = None,
        client: SnmpProtocol | None = None,
        interfaces: Sequence[InterfaceAddress] | None = None,
    ) -> None:
        self.config = config
        self.on_progress = on_progress
        self.on_printer = on_printer
        self._client = client
        self._interfaces = interfaces
        self._cancel = asyncio.Event()
        self._templates = [probe_template(c) for c in config.credentials]
        self._next_cred = probe_order(self._templates)
        self._in_flight: dict[int, _InFlight] = {}
        self._expiry: deque[tuple[float, int]] = deque()
        self._retry: deque[_InFlight] = deque()
        self._echo: IcmpEcho | None = None
        self._pinging: dict[str, _InFlight] = {}  # echo requests awaiting a reply, by address
        self._ping_expiry: deque[tuple[float, str]] = deque()
        self._pinged: deque[_InFlight] = deque()  # answered the echo: due an SNMP probe
        self.echo_replies = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._rid = random.randrange(RID_MIN, RID_MAX)
        self._started = 0.0
        self.total = 0
        self.probed = 0
        self.live = 0
        self.silent = 0
        self.silent_sent = 0
        self.probe_cost = Cost()
        self.id_cost = Cost()
        self.snapshot_cost = Cost()
        self.printers: list[FoundPrinter] = []
        self.non_printers: list[NonPrinter] = []
        self.unidentified: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.skipped: list[SkippedSubnet] = []

    def cancel(self) -> None:
        """Stops the sweep as soon as the engine notices (within 50 ms)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """True once cancel() was called."""
        return self._cancel.is_set()

    # --- targets -----------------------------------------------------------------------------

    async def _expand(self, parsed: ParsedTargets) -> ParsedTargets:
        extra: list[tuple[int, int]] = []
        for name in parsed.names:
            try:
                ip = await resolve(name, self.config.port)
            except IdentifyError as exc:
                self.errors.append(str(exc))
                continue
            value = sum(int(o) << s for o, s in zip(ip.split("."), (24, 16, 8, 0), strict=True))
            extra.append((value, value))
        if parsed.local:
            interfaces = (
                self._interfaces
                if self._interfaces is not None
                else await asyncio.to_thread(host_interface_addresses)
            )
            networks, skipped = local_subnets(
                interfaces,
                max_prefix=self.config.max_prefix,
                include_loopback=self.config.include_loopback,
                include_link_local=self.config.include_link_local,
            )
            self.skipped = skipped
            if not networks:
                self.errors.append("local: this host is on no subnet small enough to sweep")
            for net in networks:
                first, last = int(net.network_address), int(net.broadcast_address)
                extra.append((first + 1, last - 1) if net.prefixlen < 31 else (first, last))
        return with_addresses(parsed, extra, max_addresses=self.config.max_addresses)

    # --- the run -----------------------------------------------------------------------------

    async def run(self) -> SweepResult:
        """Sweeps until done, the time limit or cancel; the result says which."""
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        parsed = await self._expand(
            parse_targets(self.config.targets, max_addresses=self.config.max_addresses)
        )
        self.total = parsed.total
        addresses = iter_addresses(parsed.intervals)
        own_client = self._client is None
        client: SnmpProtocol = self._client or SnmpClient(
            max_in_flight=self.config.identify_concurrency * 2
        )
        self._identify_slots = asyncio.Semaphore(self.config.identify_concurrency)
        if self.config.icmp_prepass:
            try:
                self._echo = IcmpEcho(self._on_echo, self.config.icmp_sockets)
            except BaseException:
                if own_client:
                    await client.close()
                raise
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self), family=socket.AF_INET, local_addr=("0.0.0.0", 0)
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self._transport = transport
        self._client_in_use = client
        end: EndCondition = "completed"
        try:
            end = await self._loop(addresses)
        finally:
            transport.close()
            if self._echo is not None:
                self._echo.close()
            pending = [t for t in self._tasks if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            if own_client:
                await client.close()
        elapsed = loop.time() - self._started
        # Addresses still in flight at a time limit or cancel never answered in time: silent.
        waiting = [*self._in_flight.values(), *self._retry, *self._pinging.values(), *self._pinged]
        for entry in waiting:
            self.silent += 1
            self.silent_sent += entry.sent
        await self._progress(final=True)
        return SweepResult(
            end_condition=end,
            total=self.total,
            probed=self.probed,
            live=self.live,
            printers=list(self.printers),
            non_printers=list(self.non_printers),
            unidentified=list(self.unidentified),
            elapsed_s=elapsed,
            probe=self.probe_cost,
            silent_addresses=self.silent,
            silent_bytes_sent=self.silent_sent,
            identification=self.id_cost,
            snapshots=self.snapshot_cost,
            errors=list(self.errors),
            skipped_subnets=list(self.skipped),
            echo_replies=self.echo_replies if self._echo is not None else None,
        )

    async def _loop(self, addresses: Iterator[str]) -> EndCondition:
        loop = asyncio.get_running_loop()
        cfg = self.config
        rate = cfg.rate_pps
        burst = max(1.0, rate * 0.02)  # at most 20 ms worth of packets at once
        tokens = 1.0
        last = self._started
        limit_at = self._started + cfg.time_limit_s if cfg.time_limit_s is not None else None
        next_progress = self._started + cfg.progress_interval_s
        exhausted = False
        port = cfg.port
        sendto = self._transport.sendto
        in_flight = self._in_flight
        echo = self._echo
        while True:
            if self._cancel.is_set():
                return "cancelled"
            now = loop.time()
            if limit_at is not None and now >= limit_at:
                return "time_limit"
            self._expire(now)
            tokens = min(burst, tokens + (now - last) * rate)
            last = now
            deadline = now + cfg.timeout_s
            while (
                tokens >= 1.0
                and len(in_flight) + len(self._pinging) < cfg.max_in_flight
                and self._buffered() < _WRITE_BUFFER_LIMIT
            ):
                if self._retry:
                    entry = self._retry.popleft()
                elif self._pinged:
                    entry = self._pinged.popleft()
                elif not exhausted:
                    address = next(addresses, None)
                    if address is None:
                        exhausted = True
                        break
                    self.probed += 1
                    entry = _InFlight(address, 0, 0, 0)
                    if echo is not None:
                        self._ping(echo, entry, deadline)
                        tokens -= 1.0
                        continue
                else:
                    break
                template = self._templates[entry.cred]
                rid = self._rid
                self._rid = rid + 1 if rid < RID_MAX else RID_MIN
                message = template.message(rid)
                entry.sent += len(message)
                self.probe_cost.sent += len(message)
                in_flight[rid] = entry
                self._expiry.append((deadline, rid))
                sendto(message, (entry.address, port))
                tokens -= 1.0
            if (
                exhausted
                and not self._retry
                and not in_flight
                and not self._tasks
                and not self._pinging
                and not self._pinged
            ):
                return "completed"
            if now >= next_progress:
                next_progress = now + cfg.progress_interval_s
                await self._progress()
            wait = min(_MAX_IDLE_S, next_progress - now)
            if not exhausted or self._retry or self._pinged:
                wait = min(wait, max(0.0, (1.0 - tokens) / rate))
            if self._expiry:
                wait = min(wait, self._expiry[0][0] - now)
            if self._ping_expiry:
                wait = min(wait, self._ping_expiry[0][0] - now)
            if limit_at is not None:
                wait = min(wait, limit_at - now)
            await asyncio.sleep(max(_MIN_SLEEP_S, wait))

    def _ping(self, echo: IcmpEcho, entry: _InFlight, deadline: float) -> None:
        size = echo.send(entry.address)
        entry.sent += size
        self.probe_cost.sent += size
        self._pinging[entry.address] = entry
        self._ping_expiry.append((deadline, entry.address))

    def _on_echo(self, address: str, size: int) -> None:
        entry = self._pinging.pop(address, None)
        if entry is None:
            return  # late, duplicate, or an address this sweep did not ping
        self.probe_cost.received += size
        self.echo_replies += 1
        self._pinged.append(entry)

    def _buffered(self) -> int:
        """Bytes the transport holds because the kernel pushed back."""
        size = getattr(self._transport, "get_write_buffer_size", None)
        return int(size()) if size is not None else 0

    def _expire(self, now: float) -> None:
        expiry = self._expiry
        in_flight = self._in_flight
        next_cred = self._next_cred
        pings = self._ping_expiry
        while pings and pings[0][0] <= now:
            _deadline, address = pings.popleft()
            silent = self._pinging.pop(address, None)
            if silent is not None:  # no echo reply: never asked over SNMP
                self.silent += 1
                self.silent_sent += silent.sent
        while expiry and expiry[0][0] <= now:
            _deadline, rid = expiry.popleft()
            entry = in_flight.pop(rid, None)
            if entry is None:
                continue  # answered
            if entry.attempt < self.config.probe_retries:
                entry.attempt += 1
                self._retry.append(entry)
            elif (following := next_cred[entry.cred]) is not None:
                entry.cred = following
                entry.attempt = 0
                self._retry.append(entry)
            else:
                self.silent += 1
                self.silent_sent += entry.sent

    def _on_answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.probe_cost.received += len(data)
        key = answer_key(data)
        entry = self._in_flight.get(key) if key is not None else None
        if entry is None or addr[0] != entry.address or addr[1] != self.config.port:
            return  # a late answer, a duplicate or a stranger
        del self._in_flight[key]  # type: ignore[arg-type]
        self.live += 1
        entry.sys_object_id = probe_sys_object_id(data)
        cost = Cost(entry.sent, len(data))
        task = asyncio.get_running_loop().create_task(self._identify(entry, cost))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _candidates(self, entry: _InFlight) -> list[int]:
        """Credential sets to identify with: the one that answered, or every v3 set from there on."""
        if self._templates[entry.cred].version != "3":
            return [entry.cred]
        creds = self.config.credentials
        return [i for i in range(entry.cred, len(creds)) if creds[i].version == "3"]

    async def _identify(self, entry: _InFlight, probe: Cost) -> None:
        try:
            await self._identify_one(entry, probe)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug or an agent's nonsense must not end the sweep: say so, go on.
            log.exception("identification of %s failed", entry.address)
            self.unidentified.append((entry.address, f"identification failed: {exc!r}"))

    async def _identify_one(self, entry: _InFlight, probe: Cost) -> None:
        cfg = self.config
        client = self._client_in_use
        async with self._identify_slots:
            found: Identification | None = None
            errors: list[str] = []
            for index in self._candidates(entry):
                try:
                    found = await identify_at(
                        client,
                        entry.address,
                        cfg.port,
                        cfg.credentials[index],
                        index,
                        timeout_s=cfg.identify_timeout_s,
                        retries=cfg.identify_retries,
                        sys_object_id=entry.sys_object_id,
                    )
                    break
                except SnmpError as exc:
                    errors.append(str(exc))
            if found is None:
                self.unidentified.append((entry.address, "; ".join(errors) or "no answer"))
                return
            self.id_cost.sent += found.cost.sent
            self.id_cost.received += found.cost.received
            if not found.identity.is_printer:
                self.non_printers.append(
                    NonPrinter(
                        entry.address, found.identity.sys_descr, found.identity.sys_object_id
                    )
                )
                return
            printer = await printer_from(
                client,
                found,
                timeout_s=cfg.identify_timeout_s,
                retries=cfg.identify_retries,
                snapshot=cfg.snapshot,
            )
        printer.probe = probe
        self.snapshot_cost.sent += printer.first_snapshot.sent
        self.snapshot_cost.received += printer.first_snapshot.received
        self.printers.append(printer)
        if self.on_printer is not None:
            try:
                await _call(self.on_printer, printer)  # type: ignore[arg-type]
            except Exception:
                log.exception("printer callback failed for %s", printer.address)

    def progress(self) -> SweepProgress:
        """The sweep's progress now."""
        loop = asyncio.get_running_loop()
        elapsed = loop.time() - self._started if self._started else 0.0
        left = self.total - self.probed
        waits = 2 if self._echo is not None else 1  # echo, then SNMP
        remaining: float | None = left / self.config.rate_pps + (
            self.config.timeout_s * waits
            if (left or self._in_flight or self._retry or self._pinging or self._pinged)
            else 0.0
        )
        if self.config.time_limit_s is not None and remaining is not None:
            remaining = min(remaining, max(0.0, self.config.time_limit_s - elapsed))
        return SweepProgress(
            probed=self.probed,
            total=self.total,
            live=self.live,
            printers=len(self.printers),
            non_printers=len(self.non_printers),
            elapsed_s=elapsed,
            remaining_s=remaining,
        )

    async def _progress(self, *, final: bool = False) -> None:
        if self.on_progress is None:
            return
        snapshot = self.progress()
        if final:
            snapshot = SweepProgress(
                snapshot.probed,
                snapshot.total,
                snapshot.live,
                snapshot.printers,
                snapshot.non_printers,
                snapshot.elapsed_s,
                0.0,
            )
        try:
            await _call(self.on_progress, snapshot)  # type: ignore[arg-type]
        except Exception:
            log.exception("progress callback failed")


async def sweep(
    config: SweepConfig,
    *,
    on_progress: ProgressCallback | None = None,
    on_printer: PrinterCallback | None = None,
    cancel: asyncio.Event | None = None,
) -> SweepResult:
    """Runs one sweep; setting `cancel` stops it early with end condition "cancelled"."""
    engine = Sweep(config, on_progress=on_progress, on_printer=on_printer)
    if cancel is None:
        return await engine.run()
    runner = asyncio.ensure_future(engine.run())
    watcher = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({runner, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            engine.cancel()
        return await runner
    finally:
        watcher.cancel()
        if not runner.done():
            runner.cancel()


__all__ = [
    "EndCondition",
    "ProbeTemplate",
    "Sweep",
    "SweepConfig",
    "SweepProgress",
    "SweepResult",
    "sweep",
]
