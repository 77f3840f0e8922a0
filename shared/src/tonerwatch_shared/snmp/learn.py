"""The first poll of a v2c/v3 printer in at most three round trips: first columns, then the rest.

Round 1 walks every table from its first wanted column with a GETBULK sized to a usual printer
(a table's first column lists its rows), the system scalars riding as non-repeaters. Round 2
reads the other wanted columns with repetitions equal to the rows found, so no answer runs past
a column's end, with the private scalars of the vendor sysObjectID names as non-repeaters.
A walk that steps from one column to a later one (or out of the table) shows the columns in
between absent: they are not asked. Tables and columns the parser reads only through another
(colorants, tray descriptions) wait for it. Round 3 only happens for tables longer than the
first guess (or answers the agent cut short).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tonerwatch_shared.printer import oids
from tonerwatch_shared.printer.profiles import registry
from tonerwatch_shared.printer.vendors import BRAND_ENTERPRISES, brand_in, enterprise_number
from tonerwatch_shared.snmp.base import SnmpProtocol
from tonerwatch_shared.snmp.ber import oid_key
from tonerwatch_shared.snmp.errors import IoStats, gather_or_cancel
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Missing, SnmpValue
from tonerwatch_shared.snmp.walk import MAX_POLL_BYTES, MAX_ROWS_PER_COLUMN, scalar_parent

# Round-1 repetitions per table, few distinct values so the tables share few GETBULKs. Too few
# costs a round trip; too many costs whatever follows the table (on the HP M252dw an empty
# alert table runs into its 170-byte device ID). Sized on the recordings' colour lasers.
FIRST_REPETITIONS: Mapping[str, int] = {
    "1.3.6.1.2.1.43.11.1.1": 7,  # prtMarkerSuppliesEntry: 4 toners + drum + waste, on into col 3
    "1.3.6.1.2.1.43.12.1.1": 5,  # prtMarkerColorantEntry: CMYK
    "1.3.6.1.2.1.43.8.2.1": 7,  # prtInputEntry: 2-3 trays x adjacent columns 8-10
    "1.3.6.1.2.1.2.2.1": 5,  # ifEntry: loopback, Ethernet, Wi-Fi, ...
    "1.3.6.1.2.1.43.10.2.1": 2,  # prtMarkerEntry: one marker
    "1.3.6.1.2.1.43.5.1.1": 2,  # prtGeneralEntry: one printer
    "1.3.6.1.2.1.25.3.2.1": 6,  # hrDeviceEntry: the printer first
    "1.3.6.1.2.1.25.3.5.1": 2,  # hrPrinterEntry: one printer
    "1.3.6.1.2.1.43.18.1.1": 1,  # prtAlertEntry: often empty
}
DEFAULT_FIRST_REPETITIONS = 7
# Columns the parser reads only for rows that lack another one: asked after that column is
# read, and only when some row lacks it (prtInputDescription names a tray without a
# prtInputName; the HP M252dw and Ricoh MP C3002 have names). From the third round on they go
# beside their primary column, so a long table still finishes in three round trips.
FALLBACK_COLUMNS: Mapping[str, Mapping[int, int]] = {
    "1.3.6.1.2.1.43.8.2.1": {18: 13},
}
# Tables that only matter through a column of another table: read from round 2 on, and only
# when round 1 did not show that column absent. prtMarkerColorantTable names colours only for
# supplies with a prtMarkerSuppliesColorantIndex (RFC 3805); none of the recordings has it, and
# walked blind it runs into whatever follows (Konica C250i: seven IPv6 rows, 300 octets).
NEEDED_THROUGH: Mapping[str, tuple[str, int]] = {
    "1.3.6.1.2.1.43.12.1.1": ("1.3.6.1.2.1.43.11.1.1", 3),
}
# A printer table has tens of rows; more means a looping agent (or one inventing rows).
MAX_ROWS = MAX_ROWS_PER_COLUMN
MAX_ROUNDS = 40
# Bytes of one request and its response besides varbinds and community (v2c), and of one
# varbind beyond a column's end: what deciding to merge GETBULKs weighs.
MESSAGE_OVERHEAD = 60
VARBIND_COST = 16

PRIVATE = "1.3.6.1.4.1."
# Standard objects only one vendor's decoder reads (Brother decodes its status text with the
# charset), from the vendor profiles.
VENDOR_STANDARD_SCALARS: Mapping[int, tuple[str, ...]] = registry.VENDOR_STANDARD_SCALARS
IDENTITY_SCALARS: tuple[str, ...] = (
    oids.SYS_DESCR,
    oids.SYS_OBJECT_ID,
    oids.SYS_UPTIME,
    oids.SYS_NAME,
    oids.SYS_LOCATION,
)
# HP's IEEE 1284 device ID object is implemented by many other makers: asked of every printer.
SHARED_PRIVATE_SCALARS: tuple[str, ...] = registry.SHARED_SCALARS


def vendor_enterprise(values: Mapping[str, SnmpValue]) -> int | None:
    """The enterprise number whose private MIB the parser will read, as parse_identity picks it."""
    raw = values.get(oids.SYS_OBJECT_ID)
    found = enterprise_number(str(raw).lstrip(".")) if isinstance(raw, str) and raw else None
    if found is not None:
        return found
    texts: list[str] = []
    descr = values.get(oids.SYS_DESCR)
    if isinstance(descr, bytes):
        texts.append(descr.decode("latin-1"))
    for oid in registry.DEVICE_ID_OIDS:
        raw_id = values.get(oid)
        if isinstance(raw_id, bytes):
            fields = dict(
                part.partition(":")[::2] for part in raw_id.decode("latin-1").split(";") if part
            )
            texts.append(fields.get("MFG", fields.get("MANUFACTURER", "")).strip())
    for text in texts:
        brand = brand_in(text)
        if brand is not None and brand in BRAND_ENTERPRISES:
            return BRAND_ENTERPRISES[brand]
    return None


def split_scalars(
    scalars: Iterable[str], columns: Iterable[str]
) -> tuple[list[str], list[str], list[str]]:
    """Scalars as (round-1 standard ones, vendor-private ones, ones a column walk already reads)."""
    table_prefixes = tuple(c.strip(".") + "." for c in columns)
    first: list[str] = []
    private: list[str] = []
    covered: list[str] = []
    for oid in dict.fromkeys(scalars):
        if oid in IDENTITY_SCALARS:
            first.append(oid)
        elif oid.startswith(table_prefixes):
            covered.append(oid)
        elif oid.startswith(PRIVATE) or any(oid in v for v in VENDOR_STANDARD_SCALARS.values()):
            private.append(oid)
        else:
            first.append(oid)
    return first, private, covered


def private_for(private: Sequence[str], enterprise: int | None) -> list[str]:
    """The private scalars worth asking a printer of this enterprise (all when unknown)."""
    if enterprise is None:
        return list(private)
    own = f"{PRIVATE}{enterprise}."
    extra = (*VENDOR_STANDARD_SCALARS.get(enterprise, ()), *SHARED_PRIVATE_SCALARS)
    return [o for o in private if o.startswith(own) or o in extra]


@dataclass
class Column:
    """One wanted column of a table: what was read, where to go on, whether it ended."""

    number: int
    values: dict[str, SnmpValue] = field(default_factory=dict)
    cursor: str = ""
    done: bool = False


@dataclass
class Table:
    """A table under `entry` and its wanted columns; its rows are those of its first column."""

    entry: str
    columns: dict[int, Column]
    rows: list[str] | None = None
    lead: int = 0
    anomaly: str | None = None
    _lead_values: dict[str, SnmpValue] = field(default_factory=dict)
    _lead_cursor: str = ""
    _lead_done: bool = False

    @classmethod
    def group(cls, column_prefixes: Iterable[str]) -> list[Table]:
        """Tables covering these column OIDs, in order of first appearance."""
        by_entry: dict[str, set[int]] = {}
        for p in column_prefixes:
            entry, _, col = p.strip(".").rpartition(".")
            by_entry.setdefault(entry, set()).add(int(col))
        tables = []
        for entry, cols in by_entry.items():
            columns = {c: Column(c, cursor=f"{entry}.{c}") for c in sorted(cols)}
            tables.append(cls(entry, columns, _lead_cursor=f"{entry}.{min(cols)}"))
        return tables

    def lacks(self, number: int) -> bool:
        """True once the walk has shown this column has no rows here."""
        c = self.columns.get(number)
        return c is not None and c.done and not c.values

    def absent(self) -> None:
        """Ends the table unread: nothing in it is needed."""
        self._end_lead(None)

    @property
    def done(self) -> bool:
        """True once every wanted column is read (or the table turned out absent)."""
        return self._lead_done and all(c.done for c in self.columns.values())

    def values(self) -> dict[str, SnmpValue]:
        """Every value read in wanted columns."""
        out: dict[str, SnmpValue] = {}
        for c in self.columns.values():
            out.update(c.values)
        return out

    def lead_request(self) -> tuple[str, int] | None:
        """Where the walk of the first present column goes on, or None when it has ended."""
        if self._lead_done:
            return None
        return self._lead_cursor, len(self._lead_values)

    def column_requests(self, defer_fallbacks: bool = False) -> list[tuple[list[Column], int]]:
        """Columns still to read with their exact rows left; adjacent unread ones share a walk."""
        if self.rows is None:
            return []
        out: list[tuple[list[Column], int]] = []
        run: list[Column] = []
        fallbacks = FALLBACK_COLUMNS.get(self.entry, {})
        for c in self.columns.values():
            primary = self.columns.get(fallbacks.get(c.number, 0))
            if not c.done and primary is not None:
                if primary.done and len(primary.values) >= len(self.rows):
                    c.done = True  # every row has the primary column: not needed
                elif defer_fallbacks and not primary.done:
                    continue
            if c.done:
                continue
            left = len(self.rows) - len(c.values)
            if left <= 0:
                c.done = True
                continue
            if not c.values and run and run[-1].number + 1 == c.number:
                # One repeater reads both columns: the first's end is the second's start.
                run.append(c)
                out[-1] = (run, out[-1][1] + len(self.rows))
                continue
            run = [c]
            out.append((run, left))
        return out

    def _column_of(self, oid: str) -> tuple[int, str] | None:
        prefix = self.entry + "."
        if not oid.startswith(prefix):
            return None
        column, _, index = oid[len(prefix) :].partition(".")
        if not column.isdigit() or not index:
            return None
        return int(column), index

    def _skipped(self, after: int, reached: int | None) -> None:
        """Marks wanted columns strictly between two an answer stepped over as absent."""
        # GETNEXT returns the next object there is: stepping from column `after` to column
        # `reached` (None: out of the table) proves every column in between has no rows.
        for c in self.columns.values():
            if c.number > after and (reached is None or c.number < reached) and not c.values:
                c.done = True

    def feed_lead(self, varbinds: Sequence[tuple[str, SnmpValue]]) -> None:
        """Takes a GETBULK answer for the first-column walk; learns the rows when it ends."""
        for oid, value in varbinds:
            where = None if isinstance(value, Missing) else self._column_of(oid)
            if where is not None and oid_key(oid) <= oid_key(self._lead_cursor):
                self._end_lead(f"non-increasing OID {oid}")
                return
            if where is None:
                self._end_lead(None)
                if self.lead and (
                    isinstance(value, Missing) or oid_key(oid) > oid_key(self._lead_cursor)
                ):
                    self._skipped(self.lead, None)
                return
            col, _index = where
            if not self.lead:
                self.lead = col
            if col != self.lead:
                # Past the first column: its rows are the table's rows. Keep what overran
                # into the next wanted column (it is that column's first rows).
                self._end_lead(None)
                self._skipped(self.lead, col)
                self._feed_column(oid, value, col)
                continue
            self._lead_values[oid] = value
            self._lead_cursor = oid
            if len(self._lead_values) >= MAX_ROWS:
                self._end_lead(f"more than {MAX_ROWS} rows")
                return

    def give_up(self, why: str) -> None:
        """Ends the table's walk: its first column as read so far gives the rows."""
        self._end_lead(why)

    def _end_lead(self, why: str | None) -> None:
        if self._lead_done:
            return
        self._lead_done = True
        if why and self.anomaly is None:
            self.anomaly = why
        if self.rows is not None:
            return
        prefix = f"{self.entry}.{self.lead}."
        self.rows = [o[len(prefix) :] for o in self._lead_values]
        for c in self.columns.values():
            if self.lead and c.number < self.lead:
                c.done = True  # the agent has no such column (trimmed tables)
            elif c.number == self.lead:
                c.values.update(self._lead_values)
                c.done = True
            if not self.rows:
                c.done = True

    def _feed_column(self, oid: str, value: SnmpValue, col: int) -> None:
        column = self.columns.get(col)
        if column is None or column.done or self.rows is None:
            return
        if oid_key(oid) <= oid_key(column.cursor):
            return
        column.values[oid] = value
        column.cursor = oid
        if len(column.values) >= len(self.rows):
            column.done = True

    def feed_columns(self, run: list[Column], varbinds: Sequence[tuple[str, SnmpValue]]) -> None:
        """Takes a GETBULK answer for a run of adjacent columns; anything past the run ends it."""
        by_number = {c.number: c for c in run}
        for oid, value in varbinds:
            where = None if isinstance(value, Missing) else self._column_of(oid)
            column = by_number.get(where[0]) if where is not None else None
            if column is None or oid_key(oid) <= oid_key(column.cursor):
                last = run[-1]
                if isinstance(value, Missing) or oid_key(oid) > oid_key(last.cursor):
                    # Stepped past the run: the columns it jumped over are absent too.
                    beyond = where[0] if where is not None else None
                    if beyond is None or beyond > last.number:
                        self._skipped(last.number, beyond)
                for c in run:
                    c.done = True
                return
            for c in run:
                if c.number < column.number:
                    c.done = True  # walked past it: complete, or absent on this agent
            if column.done:
                continue
            column.values[oid] = value
            column.cursor = oid
            if self.rows is not None and len(column.values) >= len(self.rows):
                column.done = True


def _repetitions(table: Table, first: bool, seen: int) -> int:
    """Repetitions for a first-column walk: the table's usual size, then four times what was seen."""
    if first:
        return FIRST_REPETITIONS.get(table.entry, DEFAULT_FIRST_REPETITIONS)
    return max(16, 4 * seen)


_Owner = Table | tuple[Table, list[Column]]


def _split(answer: Sequence[tuple[str, SnmpValue]], n: int) -> list[list[tuple[str, SnmpValue]]]:
    per: list[list[tuple[str, SnmpValue]]] = [[] for _ in range(n)]
    for i, vb in enumerate(answer):
        per[i % n].append(vb)
    return per


async def _bulk(
    client: SnmpProtocol,
    target: SnmpTarget,
    jobs: list[tuple[str, int, _Owner]],
    max_values: int,
    stats: IoStats,
    scalars: Sequence[str] = (),
    scalar_values: dict[str, SnmpValue] | None = None,
) -> list[tuple[_Owner, list[tuple[str, SnmpValue]], bool]]:
    """GETBULKs for (cursor, repetitions, owner) jobs: one per repetition count, within max_values."""
    by_reps: dict[int, list[tuple[str, _Owner]]] = {}
    for cursor, reps, owner in jobs:
        by_reps.setdefault(max(1, min(reps, max_values)), []).append((cursor, owner))
    # A request costs its header twice (out and back); a repetition past a column's end
    # costs one varbind. Fold a group into the next larger one when that is cheaper,
    # counting every repetition its jobs would get beyond what they asked for.
    overhead = MESSAGE_OVERHEAD + 2 * len(target.community)
    asked: dict[int, list[int]] = {r: [r] * len(g) for r, g in by_reps.items()}
    sizes = sorted(by_reps)
    for small, large in itertools.pairwise(sizes):
        group = by_reps[small]
        extra = sum(large - r for r in asked[small])
        fits = (len(by_reps[large]) + len(group)) * large <= max_values
        if fits and extra * VARBIND_COST < overhead:
            by_reps[large].extend(by_reps.pop(small))
            asked[large].extend(asked.pop(small))
    requests: list[tuple[int, list[tuple[str, _Owner]]]] = []
    for reps, group in sorted(by_reps.items()):
        per_request = max(1, max_values // reps)
        for i in range(0, len(group), per_request):
            requests.append((reps, group[i : i + per_request]))

    async def one(
        reps: int, group: list[tuple[str, _Owner]], nr: Sequence[str]
    ) -> list[tuple[_Owner, list[tuple[str, SnmpValue]], bool]]:
        asked = [*(scalar_parent(o) for o in nr), *(c for c, _ in group)]
        answer = await client.get_bulk(target, asked, len(nr), reps, stats=stats)
        if scalar_values is not None:
            # GETNEXT from just below: anything but the scalar itself means it is absent. A
            # scalar cut off by a truncated answer stays unread: round 2 GETs it.
            for oid, (got, value) in zip(nr, answer[: len(nr)], strict=False):
                scalar_values[oid] = value if got == oid else Missing.NO_SUCH_OBJECT
        rest = answer[len(nr) :]
        if not answer:
            # Nothing at all: an agent that answers so would loop us. (Non-repeaters alone
            # mean a cut answer: the next round, without them, tells.)
            return [(owner, [], True) for _, owner in group]
        # Agents cut long GETBULK answers short (RFC 3416 4.2.3): a repeater left without
        # values is asked again next round, not taken as ended.
        per = _split(rest, len(group))
        return [(owner, vbs, False) for (_, owner), vbs in zip(group, per, strict=True)]

    results = await gather_or_cancel(
        *(one(reps, group, scalars if i == 0 else ()) for i, (reps, group) in enumerate(requests))
    )
    return [item for result in results for item in result]


async def learn_tables(
    client: SnmpProtocol,
    target: SnmpTarget,
    columns: Sequence[str],
    scalars: Sequence[str],
    stats: IoStats,
    *,
    max_values: int = 64,
    max_bytes: int = MAX_POLL_BYTES,
) -> tuple[dict[str, SnmpValue], list[str]]:
    """The learn values of a v2c/v3 printer (scalars and columns), and anomalies met on the way."""
    tables = Table.group(columns)
    by_entry = {t.entry: t for t in tables}
    waiting = {e: r for e, r in NEEDED_THROUGH.items() if e in by_entry and r[0] in by_entry}
    started: set[str] = set()
    guesses: dict[str, int] = {}
    first_scalars, private, _covered = split_scalars(scalars, columns)
    values: dict[str, SnmpValue] = {}
    scalar_stats, walk_stats = IoStats(), IoStats()

    # Values walks ran into past their tables' ends: a private scalar among them is not asked.
    spilled: dict[str, SnmpValue] = {}
    # Scalars to read in round 2: identity ones round 1 missed, then the vendor's private ones.
    later: list[str] = []
    leftover: asyncio.Task[None] | None = None

    def scalars_for_round_two() -> list[str]:
        wanted = private_for(private, vendor_enterprise(values))
        values.update({o: spilled[o] for o in wanted if o in spilled})
        missed = [o for o in first_scalars if o not in values]
        return [*missed, *(o for o in wanted if o not in spilled)]

    async def get_scalars(oids_: list[str]) -> None:
        values.update(await client.get(target, oids_, stats=scalar_stats))

    async def walk() -> None:
        nonlocal leftover
        for round_no in range(MAX_ROUNDS):
            taken = scalar_stats.bytes_received + walk_stats.bytes_received
            if taken > max_bytes:
                for t in tables:
                    if not t.done:
                        why = f"poll stopped after {taken} bytes (cap {max_bytes})"
                        t.give_up(why)
                        t.anomaly = t.anomaly or why
                        for c in t.columns.values():
                            c.done = True
                return
            if round_no == 1:
                later.extend(scalars_for_round_two())
            elif round_no == 2 and later:
                # Cut from a truncated answer: a GET beside round 3, not a round of its own.
                unread = [o for o in later if o not in values]
                if unread:
                    leftover = asyncio.ensure_future(get_scalars(unread))
            jobs: list[tuple[str, int, _Owner]] = []
            for t in tables:
                through = waiting.get(t.entry)
                if through is not None:
                    if round_no == 0:
                        continue
                    del waiting[t.entry]
                    referrer, column = through
                    if by_entry[referrer].lacks(column):
                        t.absent()
                    else:
                        # As many rows as distinct references seen so far: usually all.
                        refs = by_entry[referrer].columns[column].values.values()
                        guesses[t.entry] = max(1, len(set(map(str, refs))))
                lead = t.lead_request()
                if lead is not None:
                    cursor, seen = lead
                    # The first ask guesses; a longer table's next round asks for plenty.
                    first = t.entry not in started
                    reps = guesses.get(t.entry) if first else None
                    jobs.append((cursor, reps or _repetitions(t, first, seen), t))
                    started.add(t.entry)
                for run, left in t.column_requests(defer_fallbacks=round_no < 2):
                    jobs.append((run[0].cursor, left, (t, run)))
            if not jobs:
                if round_no == 1 and later:
                    await get_scalars(later)  # the tables ended in round 1
                return
            walk_stats.round_trips += 1
            before = walk_stats.round_trips
            # Round 1 reads the identity scalars as non-repeaters of its first GETBULK, and
            # round 2 the private scalars sysObjectID picked: a message less each.
            riders = first_scalars if round_no == 0 else later if round_no == 1 else []
            answers = await _bulk(
                client, target, jobs, max_values - len(riders), walk_stats, riders, values
            )
            for owner, vbs, refused in answers:
                spilled.update((o, v) for o, v in vbs if not isinstance(v, Missing))
                if isinstance(owner, Table):
                    if refused:
                        owner.give_up("agent answered nothing for this table")
                    owner.feed_lead(vbs)
                else:
                    table, run = owner
                    if refused:
                        for c in run:
                            c.done = True
                    table.feed_columns(run, vbs)
            walk_stats.round_trips = before  # concurrent GETBULKs: one round trip
        for t in tables:
            if not t.done and t.anomaly is None:
                t.anomaly = f"walk stopped after {MAX_ROUNDS} rounds"

    try:
        await walk()
        if leftover is not None:
            await leftover
    finally:
        if leftover is not None and not leftover.done():
            leftover.cancel()
    for t in tables:
        values.update(t.values())
    stats.requests += scalar_stats.requests + walk_stats.requests
    stats.responses += scalar_stats.responses + walk_stats.responses
    stats.retries += scalar_stats.retries + walk_stats.retries
    stats.bytes_sent += scalar_stats.bytes_sent + walk_stats.bytes_sent
    stats.bytes_received += scalar_stats.bytes_received + walk_stats.bytes_received
    # Scalars and the walk run side by side: the longer of the two is what the poll waited.
    stats.round_trips += max(scalar_stats.round_trips, walk_stats.round_trips)
    return values, [f"{t.entry}: {t.anomaly}" for t in tables if t.anomaly]
