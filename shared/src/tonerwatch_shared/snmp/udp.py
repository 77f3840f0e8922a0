"""SNMP v1/v2c over one shared asyncio UDP socket, requests matched to answers by request-id."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from tonerwatch_shared.snmp.base import SnmpProtocol, VarBindList
from tonerwatch_shared.snmp.ber import (
    GET_BULK_REQUEST,
    GET_NEXT_REQUEST,
    GET_REQUEST,
    NO_SUCH_NAME,
    TOO_BIG,
    VERSION_1,
    VERSION_2C,
    BerError,
    Response,
    decode_header,
    decode_response,
    encode_request,
)
from tonerwatch_shared.snmp.errors import (
    IoStats,
    SnmpError,
    SnmpProtocolError,
    SnmpResponseError,
    SnmpTimeoutError,
    gather_or_cancel,
)
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Missing, SnmpValue

log = logging.getLogger(__name__)

# Request ids kept in 0x01000000..0x7FFFFFFF: always 4 content octets, so messages keep their size.
_RID_MIN = 0x01000000
_RID_MAX = 0x7FFFFFFF
_RESOLVE_TIMEOUT = 5.0
_MAX_SPLIT_DEPTH = 8
# Answers read in ticks while more are due (issue 15): after a wakeup that read answers, while a
# request sent less than _DUE_S ago is still unanswered, the socket is read again READ_TICK_S
# later (every answer queued meanwhile at once) instead of waking the loop for each answer.
READ_TICK_S = 0.02
_DUE_S = 0.25
_MAX_READS = 256  # datagrams read per wakeup at most (the rest at the next)
_RECV_SIZE = 65536
# Room asked for answers queued between ticks (the kernel caps it at net.core.rmem_max).
_RCVBUF = 1 << 20
# What one queued answer of n bytes costs the socket's receive buffer, at most (the kernel
# counts each datagram's whole allocation: ~1.3 KB for 300 bytes, ~17 KB for 8,000 here).
_ANSWER_OVERHEAD = 1024


@dataclass(slots=True)
class _Pending:
    address: tuple[str, int]
    future: asyncio.Future[tuple[Response | SnmpError, int]]
    attempts: _Attempts | None = None


# What a request's future holds when every attempt went unanswered.
_TIMED_OUT = SnmpError("timed out")


class _Attempts:
    """Sends a request and its retries, each after the previous one's timeout (the client's
    deadlines, no task and no timer of its own)."""

    __slots__ = (
        "address",
        "client",
        "due",
        "future",
        "left",
        "message",
        "sent",
        "sent_at",
        "stats",
        "timeout",
        "transport",
    )

    def __init__(
        self,
        client: UdpSnmpClient,
        transport: _Socket,
        message: bytes,
        address: tuple[str, int],
        target: SnmpTarget,
        stats: IoStats | None,
        future: asyncio.Future[tuple[Response | SnmpError, int]],
    ) -> None:
        self.client = client
        self.transport = transport
        self.message = message
        self.address = address
        self.timeout = target.timeout
        self.left = target.retries + 1
        self.sent = 0
        self.stats = stats
        self.future = future
        # The loop time the attempt under way times out at (None: answered, or stopped).
        self.due: float | None = None
        self.sent_at = 0.0  # the loop time the last attempt went out

    def send(self) -> None:
        """Send the next attempt and set its timeout."""
        retry = self.sent > 0
        self.sent += 1
        self.left -= 1
        self.transport.sendto(self.message, self.address)
        size = len(self.message)
        totals = self.client.totals
        totals.requests += 1
        totals.bytes_sent += size
        stats = self.stats
        if stats is not None:
            stats.requests += 1
            stats.bytes_sent += size
            stats.retries += retry
        self.due = self.client._expire_at(self.future.get_loop(), self.timeout, self)
        self.sent_at = self.due - self.timeout

    def expired(self) -> None:
        """Send the next attempt, or end the request as timed out (the attempt's time is up)."""
        self.due = None
        if self.future.done():
            return
        if self.left > 0:
            try:
                self.send()
            except Exception as exc:  # what sendto raised, raised to the request as before
                self.future.set_exception(exc)
        else:
            self.future.set_result((_TIMED_OUT, 0))

    def stop(self) -> None:
        self.due = None  # its deadline, still in the client's heap, is skipped when it comes


class _Socket:
    """The client's UDP socket, read by the client itself (not an asyncio transport): every
    answer queued is read at each wakeup, and while more answers are due the loop reads again on
    a tick instead of waking for each one (UdpSnmpClient._readable)."""

    def __init__(self, client: UdpSnmpClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.bind(("0.0.0.0", 0))
            # Refused: the default then; the pause's budget reads what it got.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            # The receive buffer's size as the kernel counts it (twice what was asked, capped).
            self.rcvbuf: int = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except BaseException:
            self.sock.close()
            raise
        self.fd = self.sock.fileno()
        self.reading = False
        self.tick: asyncio.TimerHandle | None = None
        self.largest = 484  # the largest answer read so far (484: every SNMP agent takes that)

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            # The send buffer is full: the datagram is lost, as on the wire; its attempt's timeout
            # sends it again.
            log.debug("SNMP socket: send buffer full, a request dropped")
        except OSError as exc:
            # ICMP port unreachable and the like: the request times out and is retried.
            log.debug("SNMP socket error: %s", exc)

    def resume(self) -> None:
        """Wake the loop for the next answer as it arrives."""
        if self.tick is not None:
            self.tick.cancel()
            self.tick = None
        if not self.reading:
            self.loop.add_reader(self.fd, self.client._readable)
            self.reading = True

    def pause(self, delay: float) -> None:
        """Leave the socket unread for delay, then read every answer queued (client._ticked)."""
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False
        if self.tick is None:
            self.tick = self.loop.call_later(delay, self.client._ticked)

    def drain(self) -> int:
        """Read every datagram queued (at most _MAX_READS); return how many."""
        sock, received = self.sock, self.client._on_datagram
        n = 0
        while n < _MAX_READS:
            try:
                data, addr = sock.recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error reported on the socket: the read goes on
                log.debug("SNMP socket error: %s", exc)
                n += 1
                continue
            n += 1
            if len(data) > self.largest:
                self.largest = len(data)
            received(data, addr)
        return n

    def holds(self, answers: int) -> bool:
        """Return whether this many answers, as large as the largest yet, fit the socket's
        receive buffer (else the kernel would drop some while the socket is left unread)."""
        return answers * (2 * self.largest + _ANSWER_OVERHEAD) <= self.rcvbuf

    def close(self) -> None:
        if self.tick is not None:
            self.tick.cancel()
            self.tick = None
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False
        self.sock.close()


class UdpSnmpClient(SnmpProtocol):
    """SNMP v1/v2c client: one UDP socket for all targets, bounded requests in flight."""

    def __init__(self, max_in_flight: int = 32, *, read_tick_s: float = READ_TICK_S) -> None:
        self._semaphore = asyncio.Semaphore(max_in_flight)
        self._pending: dict[int, _Pending] = {}
        self._next_rid = random.randrange(_RID_MIN, _RID_MAX)
        self._transport: _Socket | None = None
        # 0: every answer wakes the loop as it arrives (no ticks).
        self.read_tick_s = read_tick_s
        self._addresses: dict[str, str] = {}
        self.totals = IoStats()
        """Counters over the client's lifetime."""
        # Every attempt's deadline in one heap under one timer (set for the earliest), instead of
        # a timer per request set and cancelled: a loop TimerHandle, a heap push and a cancel
        # each, compared in Python, on every poll (issue 15). Answered attempts' deadlines stay
        # until they come (at most one timeout), then are skipped.
        self._deadlines: list[tuple[float, int, _Attempts]] = []
        self._deadline_seq = itertools.count()
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf

    def _expire_at(
        self, loop: asyncio.AbstractEventLoop, timeout: float, attempts: _Attempts
    ) -> float:
        """Return the loop time the attempt times out at, its expiry scheduled."""
        due = loop.time() + timeout
        heapq.heappush(self._deadlines, (due, next(self._deadline_seq), attempts))
        if due < self._sweep_at:
            if self._sweep is not None:
                self._sweep.cancel()
            self._sweep_at = due
            self._sweep = loop.call_at(due, self._expire, loop)
        return due

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out every attempt whose time is up; set the timer for the next deadline."""
        self._sweep, self._sweep_at = None, math.inf
        transport = self._transport
        if transport is not None and not transport.reading:
            # Between ticks: an answer already queued counts before its request times out.
            transport.drain()
        deadlines, now = self._deadlines, loop.time()
        while deadlines:
            due, _, attempts = deadlines[0]
            if attempts.due != due:  # answered, or a later attempt's time counts: not waited for
                heapq.heappop(deadlines)
            elif due <= now:
                heapq.heappop(deadlines)
                attempts.expired()
            else:
                break
        # The timer is set for a request still unanswered (set again by expired()'s retries).
        if deadlines and deadlines[0][0] < self._sweep_at:
            if self._sweep is not None:
                self._sweep.cancel()
            self._sweep_at = deadlines[0][0]
            self._sweep = loop.call_at(self._sweep_at, self._expire, loop)

    async def _socket(self) -> _Socket:
        if self._transport is None:
            transport = self._transport = _Socket(self, asyncio.get_running_loop())
            transport.resume()
        return self._transport

    def _readable(self) -> None:
        """Answers arrived: read every one queued; while more are due, read again on a tick."""
        transport = self._transport
        if transport is None:
            return
        if transport.drain() and self.read_tick_s > 0 and self._may_pause(transport):
            transport.pause(self.read_tick_s)

    def _ticked(self) -> None:
        """The tick: read what came meanwhile; tick again while answers keep coming and more
        are due, else wake for the next answer as it arrives."""
        transport = self._transport
        if transport is None:
            return
        transport.tick = None
        paused = False
        try:
            if transport.drain() and self._may_pause(transport):
                transport.pause(self.read_tick_s)
                paused = True
        finally:
            if not paused:  # also when reading failed: the socket is never left unread
                transport.resume()

    def _may_pause(self, transport: _Socket) -> bool:
        """Return whether to leave the socket unread until the next tick: an answer is due and
        every answer that may come meanwhile fits the socket's receive buffer."""
        return transport.holds(len(self._pending)) and self._due_soon(transport.loop.time())

    def _due_soon(self, now: float) -> bool:
        """Return whether a request sent less than _DUE_S ago is unanswered (an answer is due)."""
        since = now - _DUE_S
        for pending in self._pending.values():
            attempts = pending.attempts
            if (
                attempts is not None
                and attempts.sent_at > since
                and attempts.due is not None
                and not pending.future.done()
            ):
                return True
        return False

    async def close(self) -> None:
        """Closes the socket; requests in flight fail."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_result((SnmpError("client closed"), 0))
        self._pending.clear()
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep, self._sweep_at = None, math.inf
        self._deadlines.clear()

    async def _address(self, target: SnmpTarget) -> tuple[str, int]:
        host = self._addresses.get(target.host)
        if host is None:
            if target.is_ip_literal:
                host = target.host
            else:
                loop = asyncio.get_running_loop()
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(target.host, target.port, family=socket.AF_INET),
                    _RESOLVE_TIMEOUT,
                )
                host = str(infos[0][4][0])
            self._addresses[target.host] = host
        return (host, target.port)

    def _rid(self) -> int:
        rid = self._next_rid
        self._next_rid = rid + 1 if rid < _RID_MAX else _RID_MIN
        return rid

    def _on_datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.totals.bytes_received += len(data)
        result: Response | SnmpError
        try:
            # The whole answer decoded at once (its header read once, not once for the request id
            # and again for the values): almost every datagram answers a request waiting.
            result = decode_response(data)
            rid = result.request_id
        except Exception as exc:  # whatever a device sends fails its request, not the socket
            try:
                rid = decode_header(data)[3]
            except (BerError, ValueError, IndexError):
                # Not even a header (cut short, garbage): it answers one of the requests waiting
                # on that address, which one cannot be told. An agent sending such answers fails
                # them all now rather than after every timeout and retry.
                error = SnmpProtocolError(
                    f"malformed response from {addr[0]}:{addr[1]}: {len(data)} bytes, no header"
                )
                for waiting in self._pending.values():
                    if waiting.address == (addr[0], addr[1]) and not waiting.future.done():
                        waiting.future.set_result((error, len(data)))
                return
            result = SnmpProtocolError(f"malformed response from {addr[0]}:{addr[1]}: {exc}")
        pending = self._pending.get(rid)
        if pending is None or pending.future.done() or (addr[0], addr[1]) != pending.address:
            return  # late duplicate, or a stranger's packet
        pending.future.set_result((result, len(data)))

    async def _exchange(
        self,
        target: SnmpTarget,
        pdu_tag: int,
        oids: Sequence[str],
        stats: IoStats | None,
        non_repeaters: int = 0,
        max_repetitions: int = 0,
    ) -> Response:
        transport = await self._socket()
        address = await self._address(target)
        version = VERSION_1 if target.version == "1" else VERSION_2C
        if target.version == "3":
            raise SnmpError("UdpSnmpClient speaks v1/v2c only")
        rid = self._rid()
        message = encode_request(
            version, target.community.encode(), pdu_tag, rid, oids, non_repeaters, max_repetitions
        )
        loop = asyncio.get_running_loop()
        async with self._semaphore:
            future: asyncio.Future[tuple[Response | SnmpError, int]] = loop.create_future()
            # One request-id for all attempts: a late answer to attempt 1 still counts. The
            # retries are sent from a timer and the answer awaited directly (no wait_for and
            # shield per attempt: fewer futures, callbacks and loop turns per request, issue 15).
            attempts = _Attempts(self, transport, message, address, target, stats, future)
            self._pending[rid] = _Pending(address, future, attempts)
            try:
                attempts.send()
                result, size = await future
            finally:
                attempts.stop()
                self._pending.pop(rid, None)  # close() may have cleared it already
                if not future.done():
                    future.cancel()
        if result is _TIMED_OUT:
            raise SnmpTimeoutError(
                f"{target}: no response after {target.retries + 1} attempt(s)"
                f" of {target.timeout:g}s"
            )
        self.totals.responses += 1
        if stats is not None:
            stats.responses += 1
            stats.bytes_received += size
        if isinstance(result, SnmpError):
            raise result
        if result.version != version:
            raise SnmpProtocolError(f"{target}: answered in version {result.version}")
        if result.error_status:
            i = result.error_index
            raise SnmpResponseError(
                str(target), result.error_status, i, oids[i - 1] if 0 < i <= len(oids) else None
            )
        return result

    async def get(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> dict[str, SnmpValue]:
        """The values of these exact OIDs (Missing where the agent has none)."""
        values: dict[str, SnmpValue] = {}
        await self._get(target, list(dict.fromkeys(oids)), values, stats, 0)
        return values

    async def _get(
        self,
        target: SnmpTarget,
        oids: list[str],
        values: dict[str, SnmpValue],
        stats: IoStats | None,
        depth: int,
    ) -> None:
        remaining = oids
        while remaining:
            if stats is not None:
                stats.round_trips += 1
            try:
                response = await self._exchange(target, GET_REQUEST, remaining, stats)
            except SnmpResponseError as exc:
                if exc.status == TOO_BIG and len(remaining) > 1 and depth < _MAX_SPLIT_DEPTH:
                    # Halves go out together: one more round trip, not two.
                    half = len(remaining) // 2
                    await gather_or_cancel(
                        self._get(target, remaining[:half], values, stats, depth + 1),
                        self._get(target, remaining[half:], values, stats, depth + 1),
                    )
                    if stats is not None:
                        stats.round_trips -= 1  # the halves counted their own
                    return
                if exc.status == NO_SUCH_NAME and 0 < exc.index <= len(remaining):
                    # SNMPv1 fails the whole GET for one missing OID: drop it and ask again.
                    values[remaining[exc.index - 1]] = Missing.NO_SUCH_OBJECT
                    remaining = remaining[: exc.index - 1] + remaining[exc.index :]
                    continue
                raise
            if len(response.varbinds) != len(remaining):
                raise SnmpProtocolError(
                    f"{target}: {len(response.varbinds)} values for {len(remaining)} OIDs"
                )
            values.update(response.varbinds)
            return

    async def get_next(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> VarBindList:
        """The next OID and value after each of these, in order."""
        if stats is not None:
            stats.round_trips += 1
        response = await self._exchange(target, GET_NEXT_REQUEST, oids, stats)
        return response.varbinds

    async def get_bulk(
        self,
        target: SnmpTarget,
        oids: Sequence[str],
        non_repeaters: int,
        max_repetitions: int,
        *,
        stats: IoStats | None = None,
    ) -> VarBindList:
        """The raw GETBULK answer: non-repeaters first, then rows of repeaters."""
        if target.version == "1":
            raise SnmpError("GETBULK does not exist in SNMPv1")
        if stats is not None:
            stats.round_trips += 1
        response = await self._exchange(
            target, GET_BULK_REQUEST, oids, stats, non_repeaters, max_repetitions
        )
        return response.varbinds
