"""Polling one printer: learn its table layout once, then read only what changes in one GET."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tonerwatch_shared.printer import oids
from tonerwatch_shared.printer.codes import HR_DEVICE_PRINTER
from tonerwatch_shared.printer.profiles import registry
from tonerwatch_shared.snmp.base import DEFAULT_MAX_VALUES, SnmpProtocol
from tonerwatch_shared.snmp.errors import IoStats
from tonerwatch_shared.snmp.learn import learn_tables
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import Missing, SnmpValue
from tonerwatch_shared.snmp.walk import Stream

# RFC 3805 prtGeneralTable: counters that move when the layout or the alert table changes.
PRT_GENERAL_CONFIG_CHANGES = "1.3.6.1.2.1.43.5.1.1.1"
PRT_ALERT_ALL_EVENTS = "1.3.6.1.2.1.43.5.1.1.19"

# The standard scalars, then every vendor profile's private ones (learn asks a printer only
# those of its own maker, see learn.private_for).
LEARN_SCALARS: tuple[str, ...] = (
    oids.SYS_DESCR,
    oids.SYS_OBJECT_ID,
    oids.SYS_UPTIME,
    oids.SYS_NAME,
    oids.SYS_LOCATION,
    *registry.VENDOR_SCALARS,
)

_SUPPLIES = oids.PRT_MARKER_SUPPLIES
_INPUT = oids.PRT_INPUT
_ALERT = oids.PRT_ALERT
LEARN_COLUMNS: tuple[str, ...] = (
    *(f"{_SUPPLIES}.{c}" for c in range(2, 10)),  # marker index .. level
    oids.PRT_MARKER_COLORANT_VALUE,
    *(f"{_INPUT}.{c}" for c in (8, 9, 10, 12, 13)),  # unit, max, level, media, name
    oids.PRT_MARKER_LIFE_COUNT,
    oids.PRT_MARKER_POWER_ON_COUNT,
    *(f"{_ALERT}.{c}" for c in (2, 4, 7, 8)),  # severity, group, code, description
    oids.HR_DEVICE_TYPE,
    oids.HR_DEVICE_DESCR,
    oids.HR_DEVICE_STATUS,
    oids.HR_PRINTER_STATUS,
    oids.HR_PRINTER_DETECTED_ERROR_STATE,
    oids.PRT_GENERAL_SERIAL_NUMBER,
    PRT_GENERAL_CONFIG_CHANGES,
    PRT_ALERT_ALL_EVENTS,
)

# Read on every steady poll (with every profile's counters and changing private objects,
# registry.VOLATILE_SCALARS); everything else only changes with the layout.
VOLATILE_PREFIXES: tuple[str, ...] = (
    oids.SYS_UPTIME,
    f"{_SUPPLIES}.9.",  # level
    f"{_INPUT}.10.",  # current level
    oids.PRT_MARKER_LIFE_COUNT + ".",
    oids.PRT_MARKER_POWER_ON_COUNT + ".",
    f"{_ALERT}.",  # alerts come and go: a vanished row is a layout change
    oids.HR_DEVICE_STATUS + ".",
    oids.HR_PRINTER_STATUS + ".",
    oids.HR_PRINTER_DETECTED_ERROR_STATE + ".",
    PRT_GENERAL_CONFIG_CHANGES + ".",
    PRT_ALERT_ALL_EVENTS + ".",
)
# A change in any of these means rows were added or removed: learn again.
_TRIGGER_PREFIXES = (PRT_GENERAL_CONFIG_CHANGES + ".", PRT_ALERT_ALL_EVENTS + ".")

DEFAULT_RELEARN_EVERY = 96  # steady polls between full walks (a day at 15-minute polls)


def learn_columns() -> tuple[str, ...]:
    """The columns the first poll walks: ours plus any the printer parser declares."""
    extra: Sequence[str] = getattr(oids, "POLL_COLUMNS", ())
    return tuple(dict.fromkeys((*LEARN_COLUMNS, *(c.strip(".") for c in extra))))


def learn_scalars() -> tuple[str, ...]:
    """The scalars the first poll reads: ours plus any the printer parser declares."""
    extra: Sequence[str] = getattr(oids, "POLL_SCALARS", ())
    return tuple(dict.fromkeys((*LEARN_SCALARS, *(s.strip(".") for s in extra))))


def is_volatile(oid: str) -> bool:
    """True for values a steady poll reads again (levels, counters, status, alerts)."""
    return oid in registry.VOLATILE_SCALARS or oid.startswith(VOLATILE_PREFIXES)


@dataclass(frozen=True)
class PollPlan:
    """A printer's learned layout: the OIDs it has, which to re-read, and the rest's values."""

    volatile: tuple[str, ...]
    static: Mapping[str, SnmpValue]
    triggers: Mapping[str, SnmpValue] = field(default_factory=dict)
    uptime: int | None = None
    steady_polls: int = 0
    # hash(tuple(static.items())), taken once when the plan is learned: a steady poll's values
    # are static's and the fresh ones, so their hash needs only the fresh ones hashed (issue 15).
    static_hash: int | None = field(default=None, compare=False, repr=False)

    @property
    def oids(self) -> tuple[str, ...]:
        """Every concrete OID found on the learning walk."""
        return (*self.static, *self.volatile)


@dataclass(frozen=True)
class PollResult:
    """One poll: every known value (static ones from the plan), what it cost, the plan to reuse."""

    values: dict[str, SnmpValue]
    bytes_sent: int
    bytes_received: int
    requests: int
    round_trips: int
    plan: PollPlan
    learned: bool
    anomalies: tuple[str, ...] = ()
    # hash(tuple(values.items())) or, for a steady poll, a hash telling apart what its values
    # parse to (of the plan's static_hash and the fresh values, sysUpTime by its type only: see
    # steady_values_hash; None: hash the values).
    values_hash: int | None = None


def steady_values_hash(static_hash: int, fresh: Mapping[str, SnmpValue]) -> int:
    """Return the hash telling steady answers apart by what they parse to (sysUpTime by type)."""
    # sysUpTime moves at every poll of a live agent and nothing parses it (a test checks every
    # recording): hashed by its value, no poll of a real printer would ever find the answer it
    # parsed last time, and each would be parsed again (~0.4 ms; issue 15). Its type still
    # counts, as does every other value.
    uptime = fresh.get(oids.SYS_UPTIME)
    if uptime is None:
        return hash((static_hash, tuple(fresh.items())))
    masked: dict[str, object] = dict(fresh)  # in the same order, the uptime's value its type
    masked[oids.SYS_UPTIME] = type(uptime)
    return hash((static_hash, tuple(masked.items())))


def _other_device_status(oid: str, present: Mapping[str, SnmpValue]) -> bool:
    """True for the hrDeviceStatus of a row whose hrDeviceType is not a printer."""
    # The parser reads only the printer's status: Konica C250i's processor, network and disk
    # rows and Ricoh MP C3002's four others are not worth a steady poll's bytes.
    row = oid.removeprefix(oids.HR_DEVICE_STATUS + ".")
    if row == oid:
        return False
    kind = present.get(f"{oids.HR_DEVICE_TYPE}.{row}")
    return isinstance(kind, str) and kind.lstrip(".") != HR_DEVICE_PRINTER


# A plan's ~70 static values of one printer are mostly those of every printer of its model
# (descriptions, units, capacities, OID values): kept once for the fleet, not once per printer
# (issue 15). Bounded: cleared when full (values unique to a printer, serials and names, fill it).
SHARED_VALUES_KEPT = 4096
_shared_values: dict[tuple[type, SnmpValue], SnmpValue] = {}


def shared_value(value: SnmpValue) -> SnmpValue:
    """Return an equal value of the same type kept for other plans, or keep this one."""
    key = (type(value), value)  # by type too: an Oid and an IpAddress may have the same text
    kept = _shared_values.get(key)
    if kept is not None:
        return kept
    if len(_shared_values) >= SHARED_VALUES_KEPT:
        _shared_values.clear()
    _shared_values[key] = value
    return value


def _shared_oid(oid: str) -> str:
    # Interned: each decoded varbind name is a string of its own, the same OIDs for every printer.
    return sys.intern(oid) if type(oid) is str else oid


def plan_from_values(values: Mapping[str, SnmpValue]) -> PollPlan:
    """The plan for a printer whose learning walk returned these values."""
    present = {_shared_oid(o): v for o, v in values.items() if not isinstance(v, Missing)}
    volatile = tuple(o for o in present if is_volatile(o) and not _other_device_status(o, present))
    steady = set(volatile)
    # Only static values are shared: counters and levels differ per printer and would fill the table.
    static = {o: shared_value(v) for o, v in present.items() if o not in steady}
    triggers = {o: static.get(o, v) for o, v in present.items() if o.startswith(_TRIGGER_PREFIXES)}
    uptime = present.get(oids.SYS_UPTIME)
    return PollPlan(
        volatile,
        static,
        triggers,
        uptime if isinstance(uptime, int) else None,
        static_hash=hash(tuple(static.items())),
    )


def needs_relearn(plan: PollPlan, fresh: Mapping[str, SnmpValue]) -> str | None:
    """Why the layout may have changed since the plan was learned, or None."""
    # The steady case first, in a few C-level passes: every volatile OID answered with a value
    # (a Missing is exactly of type Missing), every trigger the same (items containment: the
    # key there and the value equal), the agent not restarted. Anything else: relearn_reason
    # says why (or finds nothing after all: the same answer as without this check).
    volatile = plan.volatile
    if (
        all(map(fresh.__contains__, volatile))
        and Missing not in set(map(type, map(fresh.__getitem__, volatile)))
        and plan.triggers.items() <= fresh.items()
        and not _restarted(plan, fresh)
    ):
        return None
    return relearn_reason(plan, fresh)


def relearn_reason(plan: PollPlan, fresh: Mapping[str, SnmpValue]) -> str | None:
    """Why the layout may have changed, found value by value (needs_relearn's slow path)."""
    for oid in plan.volatile:
        value = fresh.get(oid, Missing.NO_SUCH_INSTANCE)
        if isinstance(value, Missing):
            return f"{oid} is gone ({value.value})"
    for oid, before in plan.triggers.items():
        if fresh.get(oid) != before:
            return f"{oid} changed"
    return "agent restarted" if _restarted(plan, fresh) else None


def _restarted(plan: PollPlan, fresh: Mapping[str, SnmpValue]) -> bool:
    """Return whether sysUpTime went back since the plan was learned (the agent restarted)."""
    uptime = fresh.get(oids.SYS_UPTIME)
    return isinstance(uptime, int) and plan.uptime is not None and uptime < plan.uptime


async def learn(
    client: SnmpProtocol,
    target: SnmpTarget,
    stats: IoStats,
    *,
    max_values: int = DEFAULT_MAX_VALUES,
) -> tuple[dict[str, SnmpValue], list[str]]:
    """All learn values and the walk's anomalies (v2c/v3: index columns first, then exact ones)."""
    if target.version != "1":
        return await learn_tables(
            client, target, learn_columns(), learn_scalars(), stats, max_values=max_values
        )
    # SNMPv1 has no GETBULK: GETNEXT walks of column runs, scalars as extra varbinds.
    streams = Stream.columns(learn_columns())
    scalars = learn_scalars()
    values = await client.walk_streams(
        target, streams, max_values, scalars=scalars, max_values=max_values, stats=stats
    )
    return values, [f"{s.entry}.{s.first}: {s.anomaly}" for s in streams if s.anomaly]


async def poll_printer(
    client: SnmpProtocol,
    target: SnmpTarget,
    plan: PollPlan | None = None,
    *,
    relearn_every: int = DEFAULT_RELEARN_EVERY,
    max_values: int = DEFAULT_MAX_VALUES,
) -> PollResult:
    """The printer's values: a learning walk without a plan, else one GET of the volatile OIDs."""
    stats = IoStats()
    if plan is not None and plan.steady_polls < relearn_every:
        # A device with nothing that changes (identity only) is still checked alive with one small GET.
        fresh = await client.get(target, plan.volatile or (oids.SYS_OBJECT_ID,), stats=stats)
        if needs_relearn(plan, fresh) is None:
            uptime = fresh.get(oids.SYS_UPTIME)
            # Built directly: dataclasses.replace walks the fields on every call.
            plan = PollPlan(
                volatile=plan.volatile,
                static=plan.static,
                triggers=plan.triggers,
                uptime=uptime if isinstance(uptime, int) else plan.uptime,
                steady_polls=plan.steady_polls + 1,
                static_hash=plan.static_hash,
            )
            return PollResult(
                {**plan.static, **fresh},
                stats.bytes_sent,
                stats.bytes_received,
                stats.requests,
                stats.round_trips,
                plan,
                learned=False,
                # The values are static's overlaid with fresh: the same static and the same fresh
                # values (in the same order) make the same values, and parse the same.
                values_hash=None
                if plan.static_hash is None
                else steady_values_hash(plan.static_hash, fresh),
            )
    values, anomalies = await learn(client, target, stats, max_values=max_values)
    new_plan = plan_from_values(values)
    return PollResult(
        {o: v for o, v in values.items() if not isinstance(v, Missing)},
        stats.bytes_sent,
        stats.bytes_received,
        stats.requests,
        stats.round_trips,
        new_plan,
        learned=True,
        anomalies=tuple(anomalies),
    )
