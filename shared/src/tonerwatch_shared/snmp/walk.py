"""State of a walk over several table columns at once, guarded against buggy agents; pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tonerwatch_shared.snmp.ber import oid_key
from tonerwatch_shared.snmp.types import Missing, SnmpValue

# A printer table has tens of rows; an agent that keeps inventing rows is looping.
DEFAULT_MAX_ROWS = 2000


def scalar_parent(oid: str) -> str:
    """The OID whose GETNEXT answers the scalar (x.y.0 -> x.y)."""
    return oid[:-2] if oid.endswith(".0") else oid


@dataclass
class ColumnWalk:
    """Walks columns in lock-step: which OIDs to ask next, and the values collected so far."""

    prefixes: Sequence[str]
    max_rows: int = DEFAULT_MAX_ROWS
    values: dict[str, SnmpValue] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)
    _cursor: dict[str, str] = field(default_factory=dict)
    _last: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _rows: dict[str, int] = field(default_factory=dict)
    _active: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for p in self.prefixes:
            p = p.strip(".")
            if p in seen:
                continue
            seen.add(p)
            self._cursor[p] = p
            self._last[p] = oid_key(p)
            self._rows[p] = 0
            self._active.append(p)

    @property
    def active(self) -> list[str]:
        """Columns not yet finished, in request order."""
        return list(self._active)

    @property
    def done(self) -> bool:
        """True when every column has left its prefix or was stopped by a guard."""
        return not self._active

    def cursor(self, prefix: str) -> str:
        """The OID to GETNEXT from to continue this column."""
        return self._cursor[prefix]

    def rows(self, prefix: str) -> int:
        """How many values this column has yielded."""
        return self._rows[prefix]

    def finish(self, prefix: str, why: str | None = None) -> None:
        """Stops a column (end of its prefix, an error, or a guard)."""
        if prefix in self._active:
            self._active.remove(prefix)
            if why:
                self.anomalies.append(f"{prefix}: {why}")

    def feed(self, columns: Sequence[str], varbinds: Sequence[tuple[str, SnmpValue]]) -> bool:
        """Takes a GETNEXT/GETBULK answer for these columns (row-major); True if any progressed."""
        width = len(columns)
        if width == 0:
            return False
        progressed = False
        for i, (oid, value) in enumerate(varbinds):
            col = columns[i % width]
            if col not in self._active:
                continue  # finished earlier in this answer
            if isinstance(value, Missing):
                # endOfMibView ends a column; noSuch* does not belong in a GETNEXT answer.
                self.finish(col, None if value is Missing.END_OF_MIB_VIEW else value.value)
                progressed = True
                continue
            if not oid.startswith(col + "."):
                self.finish(col)
                progressed = True
                continue
            key = oid_key(oid)
            if key <= self._last[col]:
                # RFC 3416 requires increasing OIDs; anything else would loop forever.
                self.finish(col, f"non-increasing OID {oid}")
                progressed = True
                continue
            self._last[col] = key
            self._cursor[col] = oid
            self.values[oid] = value
            self._rows[col] += 1
            progressed = True
            if self._rows[col] >= self.max_rows:
                self.finish(col, f"more than {self.max_rows} rows")
        return progressed
