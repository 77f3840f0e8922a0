"""What a device may send, bounded to what can be stored and shown; pure, idempotent, never raises.

A printer (or something pretending to be one) can send any INTEGER, any OCTET STRING and any number
of rows. Whatever it sends, a snapshot that leaves here fits the api's columns (BIGINT numbers,
texts of known length without control characters) and holds at most MAX_ROWS of each list, and
every change made is named in the anomalies the reading carries (`SupplyReading.anomalies`).

Kept as the device said them (they are real values an agent may send): Counter32 page counts and
levels up to 4,294,967,295, RFC 3805's -1/-2/-3, a vendor's own negative levels (Ricoh's -100).
Changed: integers that fit no BIGINT (other negative levels are kept, flagged and noted), negative capacities and counters RFC 3805 does not define,
levels beyond the maximum (percent clamped to 100), texts too long (cut, ending in TRUNCATED), control
characters (a space each), rows beyond MAX_ROWS.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from tonerwatch_shared.printer.model import (
    Counters,
    PrinterAlert,
    PrinterIdentity,
    PrinterSnapshot,
    PrinterStatus,
    Supply,
    Tray,
)

# PostgreSQL BIGINT, the api's column type for levels, capacities and counters.
MAX_STORED_INT = 2**63 - 1
MIN_STORED_INT = -(2**63)
# RFC 3805 special values: -1 unrestricted/other, -2 unknown, -3 some remaining.
RFC3805_SPECIAL = frozenset({-1, -2, -3})
# A printer has tens of supplies, trays and alerts; more is an agent inventing rows.
MAX_ROWS = 64
MAX_ANOMALIES = 64
TRUNCATED = "…"
# Longest texts kept, the same as the api's columns (services/api db models; a test compares).
IDENTITY_LIMITS: dict[str, int] = {
    "vendor": 100,
    "model": 200,
    "serial": 100,
    "sys_object_id": 255,
    "sys_descr": 1024,
    "sys_name": 200,
    "sys_location": 255,
    "firmware": 200,
    "mac_address": 64,
    "uuid": 255,
}
SUPPLY_LIMITS: dict[str, int] = {
    "index": 64,
    "description": 255,
    "part_number": 100,
    "colour": 64,
    "colour_hex": 16,
    "unit": 64,
    "source": 64,
}
TRAY_LIMITS: dict[str, int] = {"index": 64, "name": 255, "media": 255}
STATUS_LIMITS: dict[str, int] = {"device_status": 32, "printer_status": 32, "status_text": 1024}
ALERT_LIMITS: dict[str, int] = {
    "index": 64,
    "severity": 32,
    "group": 64,
    "code": 64,
    "description": 255,
}
SHORT_TEXT = 64  # one flag, error name, per-marker key
NOTE_TEXT = 255  # one entry of missing

# C0 and C1 controls, DEL and lone surrogates: PostgreSQL refuses NUL, terminals obey escapes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def fit_text(text: str | None, limit: int) -> tuple[str | None, list[str]]:
    """Return text without control characters and at most limit long, and what was changed."""
    if text is None:
        return None, []
    if len(text) <= limit and text.isprintable():
        # The usual case, decided in C: printable excludes every control character and surrogate.
        return text, []
    changed: list[str] = []
    if _CONTROL.search(text):
        text = _CONTROL.sub(" ", text)
        changed.append("control characters replaced")
    if len(text) > limit:
        changed.append(f"{len(text)} characters cut to {limit}")
        text = text[: limit - len(TRUNCATED)] + TRUNCATED
    return text, changed


def fit_int(value: int | None, *, low: int = MIN_STORED_INT) -> tuple[int | None, str | None]:
    """Return value when it lies in low..MAX_STORED_INT, else None and why."""
    if value is None or low <= value <= MAX_STORED_INT:
        return value, None
    return None, f"{value} out of range, dropped"


def _count(value: int | None) -> tuple[int | None, str | None]:
    """A counter: 0..MAX_STORED_INT (an agent's -1 'unknown' becomes None too)."""
    return fit_int(value, low=0)


class _Notes:
    """Collects anomalies as '<where>: <what>', bounded in number and length."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str | None) -> None:
        if what is not None and len(self.items) < MAX_ANOMALIES:
            self.items.append(fit_text(f"{where}: {what}", NOTE_TEXT)[0] or "")

    def texts(self, model: object, limits: dict[str, int], where: str) -> dict[str, object]:
        """Return the updates that fit the model's text fields named in limits."""
        update: dict[str, object] = {}
        for name, limit in limits.items():
            before = getattr(model, name)
            after, changed = fit_text(before, limit)
            if changed:
                update[name] = after
                self.add(f"{where} {name}", ", ".join(changed))
        return update

    def words(self, words: Iterable[str], where: str) -> tuple[str, ...] | None:
        """Return short words (flags, error names) fitted and at most MAX_ROWS, or None if unchanged."""
        words = tuple(words)
        fitted = tuple(fit_text(w, SHORT_TEXT)[0] or "" for w in words[:MAX_ROWS])
        if fitted == words:
            return None
        self.add(where, f"{len(words)} entries fitted to {len(fitted)} of at most {SHORT_TEXT}")
        return fitted


def _rows(rows: tuple[object, ...], what: str, notes: _Notes) -> tuple[object, ...]:
    if len(rows) <= MAX_ROWS:
        return rows
    notes.add(what, f"{len(rows)} rows, kept the first {MAX_ROWS}")
    return rows[:MAX_ROWS]


def _percent(value: float | None) -> tuple[float | None, str | None]:
    if value is None:
        return None, None
    if math.isnan(value):
        return None, "percent not a number, dropped"
    if value < 0.0 or value > 100.0:
        return min(100.0, max(0.0, value)), f"percent {value} clamped to 0..100"
    return value, None


def clamp_identity(identity: PrinterIdentity, notes: _Notes | None = None) -> PrinterIdentity:
    """Return the identity with every text fitting its column."""
    notes = notes if notes is not None else _Notes()
    update = notes.texts(identity, IDENTITY_LIMITS, "printer")
    return identity.model_copy(update=update) if update else identity


def _clamp_supply(supply: Supply, notes: _Notes) -> Supply:
    where = f"supply {fit_text(supply.index, SUPPLY_LIMITS['index'])[0]}"
    update = notes.texts(supply, SUPPLY_LIMITS, where)
    level, capacity = supply.level, supply.max_capacity
    update["level"], why = fit_int(level)
    notes.add(where, why and f"level {why}")
    if "invalid_level" in supply.flags and update["level"] is not None:
        # Kept as sent (it fits, and says what the device said); the flag keeps it out of percent.
        # A level dropped above is noted there once: noting "level None" here would not be idempotent.
        notes.add(where, f"level {level} is no RFC 3805 value")
    if capacity is not None and capacity < 0 and capacity not in RFC3805_SPECIAL:
        update["max_capacity"] = capacity = None
        notes.add(where, f"max capacity {supply.max_capacity} is no RFC 3805 value, dropped")
    else:
        update["max_capacity"], why = fit_int(capacity)
        notes.add(where, why and f"max capacity {why}")
    if level is not None and capacity is not None and 0 < capacity < level:
        notes.add(where, f"level {level} above max capacity {capacity}, percent clamped to 100")
    update["percent"], why = _percent(supply.percent)
    notes.add(where, why)
    update["pages_left"], why = _count(supply.pages_left)
    notes.add(where, why and f"pages left {why}")
    flags = notes.words(supply.flags, f"{where} flags")
    if flags is not None:
        update["flags"] = flags
    changed = {k: v for k, v in update.items() if getattr(supply, k) != v}
    return supply.model_copy(update=changed) if changed else supply


def _clamp_tray(tray: Tray, notes: _Notes) -> Tray:
    where = f"tray {fit_text(tray.index, TRAY_LIMITS['index'])[0]}"
    update = notes.texts(tray, TRAY_LIMITS, where)
    for name in ("level", "max_capacity"):
        value = getattr(tray, name)
        low = MIN_STORED_INT if value in RFC3805_SPECIAL else 0
        update[name], why = fit_int(value, low=low)
        notes.add(where, why and f"{name} {why}")
    update["percent"], why = _percent(tray.percent)
    notes.add(where, why)
    changed = {k: v for k, v in update.items() if getattr(tray, k) != v}
    return tray.model_copy(update=changed) if changed else tray


def _clamp_counters(counters: Counters, notes: _Notes) -> Counters:
    update: dict[str, object] = {}
    for name in ("lifetime_pages", "power_on_pages", "mono_pages", "colour_pages", "duplex_pages"):
        value, why = _count(getattr(counters, name))
        if why:
            update[name] = value
            notes.add(f"counters {name}", why)
    per_marker: dict[str, int] = {}
    for key, pages in list(counters.per_marker.items())[:MAX_ROWS]:
        fitted, _ = fit_text(key, SHORT_TEXT)
        value, why = _count(pages)
        notes.add(f"counters marker {fitted}", why)
        if fitted is not None and value is not None:
            per_marker[fitted] = value
    if per_marker != counters.per_marker:
        if len(counters.per_marker) > MAX_ROWS:
            notes.add("counters per_marker", f"{len(counters.per_marker)} markers, kept {MAX_ROWS}")
        update["per_marker"] = per_marker
    return counters.model_copy(update=update) if update else counters


def _clamp_status(status: PrinterStatus, notes: _Notes) -> PrinterStatus:
    update = notes.texts(status, STATUS_LIMITS, "status")
    errors = notes.words(status.errors, "status errors")
    if errors is not None:
        update["errors"] = errors
    alerts: list[PrinterAlert] = []
    for alert in _rows(status.alerts, "status alerts", notes):
        assert isinstance(alert, PrinterAlert)
        fixed = notes.texts(alert, ALERT_LIMITS, f"alert {fit_text(alert.index, 64)[0]}")
        alerts.append(alert.model_copy(update=fixed) if fixed else alert)
    if tuple(alerts) != status.alerts:
        update["alerts"] = tuple(alerts)
    return status.model_copy(update=update) if update else status


def _texts_fit(model: object, limits: dict[str, int]) -> bool:
    """Whether each text of model named in limits is None or printable and within its limit."""
    values = model.__dict__
    for name, limit in limits.items():
        text = values[name]
        if text is not None and (len(text) > limit or not text.isprintable()):
            return False
    return True


def _words_fit(words: tuple[str, ...], limit: int) -> bool:
    """Whether words are at most MAX_ROWS, each printable and within limit (decided in C)."""
    return (
        len(words) <= MAX_ROWS
        and max(map(len, words), default=0) <= limit
        and "".join(words).isprintable()
    )


def _int_fits(value: int | None, low: int = MIN_STORED_INT) -> bool:
    return value is None or low <= value <= MAX_STORED_INT


def _percent_fits(value: float | None) -> bool:
    return value is None or 0.0 <= value <= 100.0  # NaN compares False: not fitting


def _supply_fits(supply: Supply) -> bool:
    level, capacity = supply.level, supply.max_capacity
    return (
        _texts_fit(supply, SUPPLY_LIMITS)
        and _int_fits(level)
        and not ("invalid_level" in supply.flags and level is not None)
        and (capacity is None or capacity >= 0 or capacity in RFC3805_SPECIAL)
        and _int_fits(capacity)
        and not (level is not None and capacity is not None and 0 < capacity < level)
        and _percent_fits(supply.percent)
        and _int_fits(supply.pages_left, 0)
        and _words_fit(supply.flags, SHORT_TEXT)
    )


def _tray_fits(tray: Tray) -> bool:
    return (
        _texts_fit(tray, TRAY_LIMITS)
        and all(
            v is None or v in RFC3805_SPECIAL or 0 <= v <= MAX_STORED_INT
            for v in (tray.level, tray.max_capacity)
        )
        and _percent_fits(tray.percent)
    )


def _fits(snapshot: PrinterSnapshot) -> bool:
    """Whether clamp_snapshot would find nothing to change or note (False: not sure, clamp it).

    The usual reading fits: deciding that costs a third of clamping it part by part.
    """
    counters, status = snapshot.counters, snapshot.status
    return (
        _texts_fit(snapshot.printer, IDENTITY_LIMITS)
        and len(snapshot.supplies) <= MAX_ROWS
        and all(type(s) is Supply and _supply_fits(s) for s in snapshot.supplies)
        and len(snapshot.trays) <= MAX_ROWS
        and all(type(t) is Tray and _tray_fits(t) for t in snapshot.trays)
        and all(
            _int_fits(v, 0)
            for v in (
                counters.lifetime_pages,
                counters.power_on_pages,
                counters.mono_pages,
                counters.colour_pages,
                counters.duplex_pages,
            )
        )
        and _words_fit(tuple(counters.per_marker), SHORT_TEXT)
        and all(_int_fits(v, 0) for v in counters.per_marker.values())
        and _texts_fit(status, STATUS_LIMITS)
        and _words_fit(status.errors, SHORT_TEXT)
        and len(status.alerts) <= MAX_ROWS
        and all(_texts_fit(a, ALERT_LIMITS) for a in status.alerts)
        and _words_fit(snapshot.missing, NOTE_TEXT)
    )


def clamp_snapshot(snapshot: PrinterSnapshot) -> PrinterSnapshot:
    """Return the snapshot fitting the api's columns, with what was changed added to its anomalies."""
    return snapshot if _fits(snapshot) else _clamp_parts(snapshot)


def _clamp_parts(snapshot: PrinterSnapshot) -> PrinterSnapshot:
    """clamp_snapshot part by part: the reference _fits is tested against."""
    notes = _Notes()
    printer = clamp_identity(snapshot.printer, notes)
    supplies = tuple(
        _clamp_supply(s, notes)
        for s in _rows(snapshot.supplies, "supplies", notes)
        if isinstance(s, Supply)
    )
    trays = tuple(
        _clamp_tray(t, notes) for t in _rows(snapshot.trays, "trays", notes) if isinstance(t, Tray)
    )
    counters = _clamp_counters(snapshot.counters, notes)
    status = _clamp_status(snapshot.status, notes)
    missing = tuple(fit_text(m, NOTE_TEXT)[0] or "" for m in snapshot.missing[:MAX_ROWS])
    if not notes.items and missing == snapshot.missing:
        return snapshot
    return snapshot.model_copy(
        update={
            "printer": printer,
            "supplies": supplies,
            "trays": trays,
            "counters": counters,
            "status": status,
            "missing": missing,
            "anomalies": merge_anomalies(snapshot.anomalies, notes.items),
        }
    )


def clamp_supplies(supplies: Iterable[Supply]) -> tuple[Supply, ...]:
    """Return at most MAX_ROWS supplies, each fitting the api's columns."""
    notes = _Notes()
    return tuple(_clamp_supply(s, notes) for s in list(supplies)[:MAX_ROWS])


def merge_anomalies(*groups: Iterable[str]) -> tuple[str, ...]:
    """Return the anomalies of several steps, each once, in order, at most MAX_ANOMALIES."""
    merged = dict.fromkeys(fit_text(a, NOTE_TEXT)[0] or "" for g in groups for a in g)
    return tuple(merged)[:MAX_ANOMALIES]
