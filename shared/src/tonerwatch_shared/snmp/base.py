"""The operations every SNMP client offers, and the multi-column walk built on GETNEXT/GETBULK."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Sequence

from tonerwatch_shared.snmp.ber import NO_SUCH_NAME, TOO_BIG
from tonerwatch_shared.snmp.errors import IoStats, SnmpError, SnmpResponseError, gather_or_cancel
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Missing, SnmpValue
from tonerwatch_shared.snmp.walk import MAX_POLL_BYTES, Stream, scalar_parent, split_bulk

# Many agents (snmpsim included) answer at most 64 varbinds per response.
DEFAULT_MAX_VALUES = 64
# Every walk ends: a printer's tables need a handful of requests, this is the guard.
MAX_WALK_ROUNDS = 500

VarBindList = list[tuple[str, SnmpValue]]


class SnmpProtocol(abc.ABC):
    """Read-only SNMP operations against one target at a time; values as SnmpValue."""

    @abc.abstractmethod
    async def get(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> dict[str, SnmpValue]:
        """The values of these exact OIDs (Missing where the agent has none)."""

    @abc.abstractmethod
    async def get_next(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> VarBindList:
        """The next OID and value after each of these, in order (v1 end of MIB: endOfMibView)."""

    @abc.abstractmethod
    async def get_bulk(
        self,
        target: SnmpTarget,
        oids: Sequence[str],
        non_repeaters: int,
        max_repetitions: int,
        *,
        stats: IoStats | None = None,
    ) -> VarBindList:
        """The raw GETBULK answer: non-repeaters first, then rows of repeaters (may be short)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Releases sockets and engines."""

    async def walk_columns(
        self,
        target: SnmpTarget,
        column_prefixes: Sequence[str],
        max_repetitions: int = 10,
        *,
        scalars: Sequence[str] = (),
        max_values: int = DEFAULT_MAX_VALUES,
        stats: IoStats | None = None,
    ) -> dict[str, SnmpValue]:
        """Every value under these columns (and these scalars, read in the first request)."""
        return await self.walk_streams(
            target,
            Stream.columns(column_prefixes),
            max_repetitions,
            scalars=scalars,
            max_values=max_values,
            stats=stats,
        )

    async def walk_streams(
        self,
        target: SnmpTarget,
        streams: Sequence[Stream],
        max_repetitions: int = 10,
        *,
        scalars: Sequence[str] = (),
        max_values: int = DEFAULT_MAX_VALUES,
        max_bytes: int = MAX_POLL_BYTES,
        stats: IoStats | None = None,
    ) -> dict[str, SnmpValue]:
        """Walks these streams in rounds; later rounds send one GETBULK per size, concurrently."""
        stats = stats if stats is not None else IoStats()
        values: dict[str, SnmpValue] = {}
        pending_scalars = list(dict.fromkeys(scalars))
        first_reps = max(1, max_repetitions)
        taken_before = stats.bytes_received
        for round_no in range(MAX_WALK_ROUNDS):
            active = [s for s in streams if not s.done]
            if not active and not pending_scalars:
                break
            taken = stats.bytes_received - taken_before
            if taken > max_bytes:
                for s in active:
                    s.finish(f"walk stopped after {taken} bytes (cap {max_bytes})")
                break
            # v2c/v3 read the scalars with a GET beside the first GETBULK: an absent
            # scalar then costs a small noSuchObject, not whatever value follows it.
            scalars_by_get = pending_scalars if target.version != "1" else []
            walk_scalars = [] if scalars_by_get else pending_scalars
            if target.version == "1" or round_no == 0:
                nr = len(walk_scalars)
                reps = max(1, min(first_reps, (max_values - nr) // max(1, len(active))))
                batches = [(active, reps)] if active or walk_scalars else []
            else:
                batches = _batches(active, max_values)
            rounds_before = stats.round_trips
            jobs: list[Awaitable[tuple[dict[str, SnmpValue], bool]]] = [
                self._walk_request(target, walk_scalars if i == 0 else [], batch, reps, stats)
                for i, (batch, reps) in enumerate(batches)
            ]
            if scalars_by_get:
                jobs.append(self._get_scalars(target, scalars_by_get, stats))
            results = await gather_or_cancel(*jobs)
            stats.round_trips = rounds_before + 1  # concurrent requests: one round trip
            for (scalar_values, progressed), (batch, _reps) in zip(
                results, [*batches, ([], 0)], strict=False
            ):
                values.update(scalar_values)
                if not progressed:
                    for st in batch:
                        if not st.done:
                            st.finish("agent answered nothing for this column")
            pending_scalars = []
        else:
            for s in streams:
                if not s.done:
                    s.finish(f"walk stopped after {MAX_WALK_ROUNDS} rounds")
        for s in streams:
            values.update(s.values)
        return values

    async def _get_scalars(
        self, target: SnmpTarget, scalars: list[str], stats: IoStats
    ) -> tuple[dict[str, SnmpValue], bool]:
        return await self.get(target, scalars, stats=stats), True

    async def _walk_request(
        self,
        target: SnmpTarget,
        scalars: list[str],
        streams: list[Stream],
        reps: int,
        stats: IoStats,
    ) -> tuple[dict[str, SnmpValue], bool]:
        """One GETNEXT/GETBULK for these streams; the scalars read, and whether any stream moved."""
        scalars = list(scalars)
        values: dict[str, SnmpValue] = {}
        streams = list(streams)
        for _ in range(MAX_WALK_ROUNDS):
            nr = len(scalars)
            asked = [scalar_parent(s) for s in scalars] + [s.cursor for s in streams]
            if not asked:
                return values, True
            try:
                if target.version == "1":
                    answer = await self.get_next(target, asked, stats=stats)
                else:
                    answer = await self.get_bulk(target, asked, nr, reps, stats=stats)
            except SnmpResponseError as exc:
                if exc.status == TOO_BIG and reps > 1:
                    reps //= 2
                    continue
                if exc.status == TOO_BIG and len(streams) > 1:
                    streams = streams[: len(streams) // 2]  # the rest go next round
                    continue
                if exc.status == NO_SUCH_NAME and 1 <= exc.index <= len(asked):
                    # SNMPv1: the varbind at error-index has nothing after it.
                    i = exc.index - 1
                    if i < nr:
                        values[scalars.pop(i)] = Missing.NO_SUCH_OBJECT
                    else:
                        streams.pop(i - nr).finish()
                    continue
                raise
            head, per = split_bulk(answer, nr, len(streams))
            for scalar, (oid, value) in zip(scalars, head, strict=False):
                values[scalar] = value if oid == scalar else Missing.NO_SUCH_OBJECT
            for scalar in scalars[len(head) :]:
                values[scalar] = Missing.NO_SUCH_OBJECT
            before = [(s.seen, s.done) for s in streams]
            for s, vbs in zip(streams, per, strict=True):
                s.feed(vbs)
            return values, not streams or before != [(s.seen, s.done) for s in streams]
        raise SnmpError(f"{target}: agent kept refusing the request")


def _batches(streams: list[Stream], max_values: int) -> list[tuple[list[Stream], int]]:
    """Streams grouped by how many values each still needs, each group within max_values."""
    by_reps: dict[int, list[Stream]] = {}
    for s in streams:
        by_reps.setdefault(min(max_values, s.remaining()), []).append(s)
    batches: list[tuple[list[Stream], int]] = []
    for reps, group in sorted(by_reps.items()):
        per_request = max(1, max_values // reps)
        for i in range(0, len(group), per_request):
            batches.append((group[i : i + per_request], reps))
    return batches
