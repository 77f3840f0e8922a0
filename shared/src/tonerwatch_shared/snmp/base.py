"""The operations every SNMP client offers, and the multi-column walk built on GETNEXT/GETBULK."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from tonerwatch_shared.snmp.ber import NO_SUCH_NAME, TOO_BIG
from tonerwatch_shared.snmp.errors import IoStats, SnmpResponseError
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Missing, SnmpValue
from tonerwatch_shared.snmp.walk import ColumnWalk, scalar_parent

# Many agents (snmpsim included) answer at most 64 varbinds per response.
DEFAULT_MAX_VALUES = 64
# Every walk ends: a printer's tables need a handful of requests, this is the guard.
MAX_WALK_REQUESTS = 500

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
        walk = ColumnWalk(column_prefixes)
        stats = stats if stats is not None else IoStats()
        values: dict[str, SnmpValue] = {}
        pending_scalars = list(dict.fromkeys(scalars))
        column_limit = len(walk.active) or 1
        repetitions = max(1, max_repetitions)
        for _ in range(MAX_WALK_REQUESTS):
            columns = walk.active[:column_limit]
            if not columns and not pending_scalars:
                break
            asked = [scalar_parent(s) for s in pending_scalars] + [walk.cursor(c) for c in columns]
            nr = len(pending_scalars)
            try:
                if target.version == "1":
                    answer = await self.get_next(target, asked, stats=stats)
                    reps = 1
                else:
                    # Stay inside the agent's varbind budget, so the answer is not cut short.
                    reps = max(1, min(repetitions, (max_values - nr) // max(1, len(columns))))
                    answer = await self.get_bulk(target, asked, nr, reps, stats=stats)
            except SnmpResponseError as exc:
                if exc.status == TOO_BIG:
                    if repetitions > 1:
                        repetitions = max(1, min(repetitions, reps) // 2)
                    elif column_limit > 1:
                        column_limit //= 2
                    else:
                        raise
                    continue
                if exc.status == NO_SUCH_NAME and 1 <= exc.index <= len(asked):
                    # SNMPv1: the varbind at error-index has nothing after it.
                    i = exc.index - 1
                    if i < nr:
                        values[pending_scalars.pop(i)] = Missing.NO_SUCH_OBJECT
                    else:
                        walk.finish(columns[i - nr])
                    continue
                raise
            for scalar, (oid, value) in zip(pending_scalars, answer[:nr], strict=False):
                values[scalar] = value if oid == scalar else Missing.NO_SUCH_OBJECT
            for scalar in pending_scalars[len(answer) :]:
                values[scalar] = Missing.NO_SUCH_OBJECT
            pending_scalars = []
            if columns and not walk.feed(columns, answer[nr:]):
                for c in columns:
                    walk.finish(c, "agent answered nothing for this column")
            if columns and len(answer) - nr < len(columns):
                # Cut short below one value per column: ask for fewer columns at a time.
                column_limit = max(1, len(answer) - nr)
                repetitions = 1
        else:
            for c in walk.active:
                walk.finish(c, f"walk stopped after {MAX_WALK_REQUESTS} requests")
        values.update(walk.values)
        return values
