"""State of walks over table columns, guarded against buggy agents; pure.

A stream walks one or more adjacent columns of a table in lexicographic order
(column 2 rows, then column 3 rows, ...): the value past a column's end is the
next column's first row, so walking a run of columns wastes nothing in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tonerwatch_shared.snmp.ber import oid_key
from tonerwatch_shared.snmp.types import Missing, SnmpValue

# A printer table has tens of rows (the largest recording: 15 supplies, 7 hrDevice rows); an
# agent answering GETBULK for ever made 995 phantom supplies and a 531 kB event before this cap.
MAX_ROWS_PER_COLUMN = 64
# The answers one poll may take in (a 15-supply colour MFP's learning walk is under 5 kB).
MAX_POLL_BYTES = 128 * 1024


def scalar_parent(oid: str) -> str:
    """An OID whose GETNEXT answers this instance (x.0 -> x, x.5 -> x.4)."""
    head, _, last = oid.rpartition(".")
    return head if last == "0" else f"{head}.{int(last) - 1}"


@dataclass
class Stream:
    """A walk of columns first..last of the table under `entry`, keeping only `wanted` ones."""

    entry: str
    first: int
    last: int
    wanted: frozenset[int]
    max_values: int = 0  # 0: MAX_ROWS_PER_COLUMN for each column first..last
    values: dict[str, SnmpValue] = field(default_factory=dict)
    anomaly: str | None = None
    done: bool = False
    seen: int = 0
    lead_column: int = 0
    lead_rows: int = 0
    past_lead_column: bool = False
    cursor: str = ""
    _last_key: tuple[int, ...] = ()
    _prefix: str = ""

    def __post_init__(self) -> None:
        self.entry = self.entry.strip(".")
        self._prefix = self.entry + "."
        self.cursor = f"{self.entry}.{self.first}"
        self._last_key = oid_key(self.cursor)
        if self.max_values <= 0:
            self.max_values = MAX_ROWS_PER_COLUMN * (self.last - self.first + 1)

    @classmethod
    def column(cls, prefix: str) -> Stream:
        """A stream over a single column, given its OID."""
        entry, _, col = prefix.strip(".").rpartition(".")
        return cls(entry, int(col), int(col), frozenset({int(col)}))

    @classmethod
    def columns(cls, prefixes: Iterable[str]) -> list[Stream]:
        """Streams covering these columns: adjacent wanted columns of one table share a stream."""
        by_entry: dict[str, set[int]] = {}
        for p in prefixes:
            entry, _, col = p.strip(".").rpartition(".")
            by_entry.setdefault(entry, set()).add(int(col))
        streams = []
        for entry, cols in by_entry.items():
            run: list[int] = []
            for c in sorted(cols):
                if run and c != run[-1] + 1:
                    streams.append(cls(entry, run[0], run[-1], frozenset(run)))
                    run = []
                run.append(c)
            streams.append(cls(entry, run[0], run[-1], frozenset(run)))
        return streams

    def remaining(self) -> int:
        """Values still expected, plus one to see the end; a guess until the first column ends.

        Columns of a table share their rows, so the first column seen sizes the others
        (trimmed agents may lack leading columns: count from the first one present).
        """
        lead = self.lead_column or self.first
        rows = max(1, self.lead_rows)
        return max(1, (self.last - lead + 1) * rows - self.seen + 1)

    def finish(self, why: str | None = None) -> None:
        """Stops the stream (end of its columns, an error, or a guard)."""
        self.done = True
        if why and self.anomaly is None:
            self.anomaly = why

    def feed(self, varbinds: Iterable[tuple[str, SnmpValue]]) -> None:
        """Takes this stream's share of a GETNEXT/GETBULK answer, in order."""
        for oid, value in varbinds:
            if self.done:
                return
            if isinstance(value, Missing):
                # endOfMibView ends a walk; noSuch* does not belong in a GETNEXT answer.
                self.finish(None if value is Missing.END_OF_MIB_VIEW else value.value)
                return
            if not oid.startswith(self._prefix):
                self.finish()
                return
            column, _, index = oid[len(self._prefix) :].partition(".")
            try:
                col = int(column)
            except ValueError:
                self.finish(f"bad OID {oid}")
                return
            if col > self.last or not index:
                self.finish()
                return
            key = oid_key(oid)
            if key <= self._last_key:
                # RFC 3416 requires increasing OIDs; anything else would loop forever.
                self.finish(f"non-increasing OID {oid}")
                return
            self._last_key = key
            self.cursor = oid
            self.seen += 1
            if not self.lead_column:
                self.lead_column = col
            if col == self.lead_column:
                self.lead_rows += 1
            else:
                self.past_lead_column = True
            if col in self.wanted:
                self.values[oid] = value
            if self.seen >= self.max_values:
                self.finish(f"more than {self.max_values} values")


def split_bulk(
    answer: Sequence[tuple[str, SnmpValue]], non_repeaters: int, repeaters: int
) -> tuple[list[tuple[str, SnmpValue]], list[list[tuple[str, SnmpValue]]]]:
    """A GETBULK answer as (non-repeater varbinds, varbinds per repeater in order)."""
    head = list(answer[:non_repeaters])
    per: list[list[tuple[str, SnmpValue]]] = [[] for _ in range(repeaters)]
    if repeaters:
        for i, vb in enumerate(answer[non_repeaters:]):
            per[i % repeaters].append(vb)
    return head, per
