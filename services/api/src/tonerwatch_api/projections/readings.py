"""Readings in batches, set-based: the same results as applying them one by one, in a few statements.

apply_readings gives exactly the rows and outcomes that apply_event (projections/printers.py)
gives for each reading in turn (test_projections.py proves it on both engines), in a fixed number
of statements per batch instead of about ten per reading: processed_events in one multi-row
INSERT ... ON CONFLICT DO NOTHING RETURNING, the printers read (and locked, in id order) in one
SELECT, their supply states and open-alert severities in one SELECT each, then the new supply
states upserted, the history and counter rows inserted with one executemany each. Printers are
read as plain rows (_PrinterRow, not ORM objects) and what changed written back in one UPDATE.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, String, Table, Text, any_, bindparam, type_coerce
from sqlalchemy import cast as sql_cast
from sqlmodel import Session, SQLModel, col, select

from tonerwatch_api.db.models import (
    Alert,
    CounterReading,
    Printer,
    Reading,
    SupplyStateRow,
)
from tonerwatch_api.projections.arrays import (
    STORED,
    JsonText,
    insert_rows,
    sqlite_rows,
    sqlite_update_rows,
    update_rows,
)
from tonerwatch_api.projections.forecasts import forecast_columns
from tonerwatch_api.projections.monitoring import monitoring_run
from tonerwatch_api.projections.network_usage import apply_usage_batch
from tonerwatch_api.projections.order import reading_applied, reading_status
from tonerwatch_api.projections.printers import (
    PrinterNotYetKnown,
    ProjectionOptions,
    fitted_snapshot,
)
from tonerwatch_api.projections.processed import record_processed
from tonerwatch_api.projections.status import status_of
from tonerwatch_shared.events import SupplyReading
from tonerwatch_shared.ordering import Position, is_stale, position_of
from tonerwatch_shared.printer.clamp import fit_int
from tonerwatch_shared.printer.model import PrinterIdentity

log = logging.getLogger("tonerwatch_api.projections.printers")


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def _among(column: Any, values: list[str], postgres: bool) -> ColumnElement[bool]:
    """column IN values; on PostgreSQL `= ANY(array)`: one SQL text whatever the count.

    An expanding IN writes a new text for every count, which SQLAlchemy renders and psycopg
    parses again for every batch (neither caches it); an array is one parameter.
    """
    if postgres:
        # Imported where used: SQLAlchemy's PostgreSQL dialect is ~6 MB `up` on SQLite does without.
        from sqlalchemy.dialects.postgresql import ARRAY

        return cast(
            ColumnElement[bool], column == any_(bindparam(None, values, type_=ARRAY(String)))
        )
    return cast(ColumnElement[bool], column.in_(values))


def _put(obj: Printer, **values: Any) -> None:
    """Set the printer row's columns (_PrinterRow.changed finds which differ from the stored)."""
    for name, value in values.items():
        setattr(obj, name, value)


def _set_identity(printer: Printer, ident: PrinterIdentity) -> None:
    """printers.set_identity, setting only what differs."""
    _put(
        printer,
        vendor=ident.vendor or printer.vendor,
        model=ident.model or printer.model,
        serial=ident.serial or printer.serial,
        sys_object_id=ident.sys_object_id or printer.sys_object_id,
        mac_address=ident.mac_address or printer.mac_address,
        firmware=ident.firmware or printer.firmware,
    )
    if not printer.location and ident.sys_location:
        printer.location = ident.sys_location
    if not printer.name and ident.sys_name:
        printer.name = ident.sys_name


FORECAST_COLUMNS = (
    "envelope",
    "use_per_day",
    "days_to_empty",
    "days_to_empty_low",
    "days_to_empty_high",
)
_STATE_COLUMNS = (
    "description",
    "part_number",
    "kind",
    "supply_class",
    "colour",
    "colour_hex",
    "level",
    "max_capacity",
    "percent",
    "state",
    "updated_at",
    "seq",
    *FORECAST_COLUMNS,
)


_STATE_KEY = ("printer_id", "supply_index")
# What a reading reads of a stored supply state: its position, its level and forecast (carried on
# or extended), its state (the printer's status). The rest is only written, never read here.
_STATE_READ = (*_STATE_KEY, "seq", "updated_at", "percent", "state", *FORECAST_COLUMNS)
_HISTORY_COLUMNS = ("printer_id", "supply_index", "occurred_at", "percent", "level")
_COUNTER_COLUMNS = (
    "printer_id",
    "occurred_at",
    "lifetime_pages",
    "mono_pages",
    "colour_pages",
    "duplex_pages",
)
# Each supply state replaces the stored one (PostgreSQL: as arrays, arrays.insert_rows; SQLite:
# one executemany of the driver, arrays.sqlite_rows).
_STATES = "ON CONFLICT (printer_id, supply_index) DO UPDATE SET " + ", ".join(
    f'"{c}" = excluded."{c}"' for c in _STATE_COLUMNS
)
# PostgreSQL: an envelope the batch left as it read it goes as SQL NULL (arrays.STORED) and the
# stored one stays. Writing the same ~6 KB back cost the backend more than the rest of the row
# (compressed and TOASTed again); kept, the new row version shares its stored value. A JSON None
# is sent as the text 'null', never as SQL NULL, so NULL here means only "as stored".
_PG_STATES = "ON CONFLICT (printer_id, supply_index) DO UPDATE SET " + ", ".join(
    '"envelope" = COALESCE(excluded."envelope", "supply_states"."envelope")'
    if c == "envelope"
    else f'"{c}" = excluded."{c}"'
    for c in _STATE_COLUMNS
)

# The printer columns a reading reads or sets (trays only set: _PrinterRow). Credentials, notes
# and configuration are never loaded.
_PRINTER_READ = (
    "id",
    "removed_at",
    "monitored",
    "name",
    "location",
    "vendor",
    "model",
    "serial",
    "sys_object_id",
    "mac_address",
    "firmware",
    "reachable",
    "last_seen_at",
    "status_seq",
    "status_at",
    "monitoring_since",
    "read_seq",
    "last_error",
    "poll_failure",
    "device_status",
    "printer_status",
    "status_errors",
    "status_text",
    "lifetime_pages",
    "last_bytes_sent",
    "last_bytes_received",
    "status",
    "updated_at",
)
_NOT_LOADED = object()


def apply_readings(
    session: Session,
    events: Sequence[SupplyReading],
    consumer: str,
    options: ProjectionOptions,
    now: datetime,
) -> list[str]:
    """Apply readings in one transaction; return each one's outcome, as apply_event would.

    events must be in the order they are to be applied (the projector sorts them by printer and
    time). Raises PrinterNotYetKnown like apply_event, naming in `waiting` every reading whose
    printer is not known yet (the bus applies the fetch's other messages again at once).
    """
    if not events:
        return []
    with session.no_autoflush:  # one flush, at commit
        return _apply(session, events, consumer, now, options)


def apply_readings_and_usage(
    session: Session,
    events: Sequence[SupplyReading],
    consumer: str,
    options: ProjectionOptions,
    now: datetime,
) -> list[str]:
    """apply_readings, and the bytes the same readings put on the wire (apply_usage_batch), in one transaction.

    What the api-readings consumer applies: each reading reaches the api once. The usage is
    recorded under its own processed_events key (network_usage.usage_key), so a redelivery changes
    neither, and a reading the retired api-usage-polling consumer already counted is not counted
    again. Returns the readings' outcomes (the usage's are the same or "duplicate").
    """
    outcomes = apply_readings(session, events, consumer, options, now)
    apply_usage_batch(session, events)
    return outcomes


def _apply(
    session: Session,
    events: Sequence[SupplyReading],
    consumer: str,
    now: datetime,
    options: ProjectionOptions,
) -> list[str]:
    outcomes = ["duplicate"] * len(events)
    keys = [str(e.event_id) for e in events]
    first_of: dict[str, int] = {}
    for i, key in enumerate(keys):
        first_of.setdefault(key, i)
    new = record_processed(session, sorted(first_of), consumer, now)
    todo = [i for key, i in first_of.items() if key in new]
    if not todo:
        return outcomes
    todo.sort()
    postgres = session.get_bind().dialect.name == "postgresql"
    ids = sorted({events[i].printer_id for i in todo})
    printers = _load_printers(session, ids, postgres)
    # Every reading that waits is named (not only the first): the bus applies the other readings
    # of the fetch again at once, only the messages holding these go one by one.
    waiting: list[SupplyReading] = []
    for i in todo:
        if events[i].printer_id not in printers:
            if options.unknown.may_wait(events[i], now):
                waiting.append(events[i])
                continue
            log.warning("dropped SupplyReading for unknown printer %s", events[i].printer_id)
            outcomes[i] = "ignored"
    if waiting:
        more = f" (and {len(waiting) - 1} more readings)" if len(waiting) > 1 else ""
        raise PrinterNotYetKnown(
            f"printer {waiting[0].printer_id!r} not known yet{more}",
            waiting=[e.event_id for e in waiting],
        )
    live = [pid for pid, p in printers.items() if p.removed_at is None]
    states_t = _table(SupplyStateRow)
    current: dict[str, dict[str, dict[str, Any]]] = {pid: {} for pid in live}
    # Each stored envelope as read (the JsonText itself): what a new row holds if no reading of
    # the batch changed it.
    read_envelopes: dict[tuple[str, str], JsonText] = {}
    if live:
        for stored in session.execute(
            select(*(_state_column(states_t, name, postgres) for name in _STATE_READ)).where(
                _among(states_t.c.printer_id, live, postgres)
            )
        ):
            row = current[stored[0]][stored[1]] = dict(zip(_STATE_READ, stored, strict=True))
            if row["envelope"] is not None:
                row["envelope"] = read_envelopes[stored[0], stored[1]] = JsonText(row["envelope"])
    changed: dict[tuple[str, str], dict[str, Any]] = {}
    history: list[dict[str, Any]] = []
    counters: list[dict[str, Any]] = []
    touched: dict[str, Printer] = {}
    for i in todo:
        event = events[i]
        printer = printers.get(event.printer_id)
        if printer is None:
            continue
        if printer.removed_at is not None:
            outcomes[i] = "ignored"
            continue
        outcomes[i] = "applied"
        at = event.occurred_at
        position = position_of(event)
        fitted = fitted_snapshot(event)
        _set_identity(printer, fitted.printer)
        _put(printer, monitoring_since=monitoring_run(printer, at, options.coverage_rules))
        answered, newest = reading_status(printer, position), reading_applied(printer, position)
        _put(printer, **answered, **(newest or {}))
        if newest is not None:
            _put(
                printer,
                device_status=fitted.status.device_status,
                printer_status=fitted.status.printer_status,
                status_errors=list(fitted.status.errors),
                status_text=fitted.status.status_text,
                trays=[t.model_dump() for t in fitted.trays],
                lifetime_pages=fitted.counters.lifetime_pages or printer.lifetime_pages,
                last_bytes_sent=fit_int(event.bytes_sent)[0],
                last_bytes_received=fit_int(event.bytes_received)[0],
            )
        _put(printer, updated_at=now)
        touched[printer.id] = printer
        rows = current[printer.id]
        for supply in fitted.supplies:
            history.append(
                {
                    "printer_id": printer.id,
                    "supply_index": supply.index,
                    "occurred_at": at,
                    "percent": supply.percent,
                    "level": supply.level,
                }
            )
            old = rows.get(supply.index)
            if old is not None and is_stale(Position(old.get("seq"), old["updated_at"]), position):
                continue  # a late, older reading: history gets it, the current state stays newer
            new_row: dict[str, Any] = {
                "printer_id": printer.id,
                "supply_index": supply.index,
                "description": supply.description,
                "part_number": supply.part_number,
                "kind": supply.kind.value,
                "supply_class": supply.supply_class.value,
                "colour": supply.colour,
                "colour_hex": supply.colour_hex,
                "level": supply.level,
                "max_capacity": supply.max_capacity,
                "percent": supply.percent,
                "state": supply.state.value,
                "updated_at": at,
                "seq": position.seq if position.seq is not None or old is None else old.get("seq"),
            }
            # The forecast as one by one (_forecast): an unknown level leaves it as it stood.
            if supply.percent is not None:
                new_row.update(
                    forecast_columns(
                        old.get("envelope") if old else None,
                        old.get("percent") if old else None,
                        supply.percent,
                        at,
                        supply=(printer.id, supply.index),
                    )
                )
            else:
                new_row.update({c: old.get(c) if old else None for c in FORECAST_COLUMNS})
            rows[supply.index] = new_row
            changed[(printer.id, supply.index)] = new_row
        c = fitted.counters
        if any(v is not None for v in (c.lifetime_pages, c.mono_pages, c.colour_pages)):
            counters.append(
                {
                    "printer_id": printer.id,
                    "occurred_at": at,
                    "lifetime_pages": c.lifetime_pages,
                    "mono_pages": c.mono_pages,
                    "colour_pages": c.colour_pages,
                    "duplex_pages": c.duplex_pages,
                }
            )
    if changed and postgres:
        rows_out = _envelopes_kept(changed, read_envelopes)
        insert_rows(session, states_t, _STATE_KEY + _STATE_COLUMNS, rows_out, _PG_STATES)
    elif changed:
        sqlite_rows(session, states_t, _STATE_KEY + _STATE_COLUMNS, list(changed.values()), _STATES)
    if history and postgres:
        insert_rows(session, _table(Reading), _HISTORY_COLUMNS, history)
    elif history:
        sqlite_rows(session, _table(Reading), _HISTORY_COLUMNS, history)
    if counters and postgres:
        insert_rows(session, _table(CounterReading), _COUNTER_COLUMNS, counters)
    elif counters:
        sqlite_rows(session, _table(CounterReading), _COUNTER_COLUMNS, counters)
    if touched:
        severities: dict[str, list[str]] = {pid: [] for pid in touched}
        for pid, severity in session.exec(
            select(Alert.printer_id, Alert.severity).where(
                _among(col(Alert.printer_id), list(severities), postgres),
                col(Alert.resolved_at).is_(None),
            )
        ).all():
            if pid is not None:
                severities[pid].append(severity)
        for printer in touched.values():
            states = [r["state"] for r in current[printer.id].values()]
            _put(printer, status=status_of(printer, states, severities[printer.id]))
        _write_printers(session, list(touched.values()))
    return outcomes


def _envelopes_kept(
    changed: dict[tuple[str, str], dict[str, Any]], read: dict[tuple[str, str], JsonText]
) -> list[dict[str, Any]]:
    """Return the new supply states, arrays.STORED in place of each envelope that is the one read.

    Identity, not equality nor type: only the object read from the row (forecast_columns gives
    it back when a reading adds no point; carried on when a level is unknown) is known to be the
    stored text; an envelope a reading of the batch changed, then carried on, is another object.
    Such a row exists (read in this transaction after its printer was locked, as every writer of
    supply states locks it first and a printer's DELETE waits for the lock), so its upsert is an
    update and keeps that very text; a new supply's envelope is never one read.
    """
    out = []
    for key, row in changed.items():
        stored = read.get(key)
        out.append(
            {**row, "envelope": STORED} if stored is not None and row["envelope"] is stored else row
        )
    return out


def _state_column(states: Table, name: str, postgres: bool) -> ColumnElement[Any]:
    """A supply state column to read; the envelope as its stored JSON text (JsonText).

    forecast_columns decodes it (psycopg's json loader took ~20 us a row, SQLAlchemy's json.loads
    three times pydantic-core's) and gives the text back when the reading adds no point, written
    as it is (no dump of up to 200 points). PostgreSQL: CAST to text (psycopg would load json);
    SQLite: only the result's type, the SQL the same.
    """
    column = states.c[name]
    if name != "envelope":
        return cast(ColumnElement[Any], column)
    if postgres:
        return cast(ColumnElement[Any], sql_cast(column, Text))
    return cast(ColumnElement[Any], type_coerce(column, Text))


class _PrinterRow:
    """A printer's columns a reading reads or sets, as loaded (core rows, not ORM objects).

    Loading, setting and flushing ORM Printer objects cost more than the rest of a batch
    together (one object per printer, every attribute set tracked); the projection's helpers
    only read and set attributes, so they take this in a Printer's place.
    """

    __slots__ = (*_PRINTER_READ, "trays", "loaded")

    def __init__(self, values: Sequence[Any]) -> None:
        for name, value in zip(_PRINTER_READ, values, strict=True):
            setattr(self, name, value)
        self.trays = _NOT_LOADED
        self.loaded = tuple(values)

    def changed(self) -> tuple[str, ...]:
        """Return the names of the columns set to something else than was loaded."""
        names = tuple(
            name
            for name, before in zip(_PRINTER_READ, self.loaded, strict=True)
            if getattr(self, name) != before
        )
        return (*names, "trays") if self.trays is not _NOT_LOADED else names


def _load_printers(session: Session, ids: list[str], postgres: bool) -> dict[str, Printer]:
    """Return the printers of ids (those stored), locked in id order, as _PrinterRow."""
    table = _table(Printer)
    rows = session.execute(
        select(*(table.c[name] for name in _PRINTER_READ))
        .where(_among(table.c.id, ids, postgres))
        .order_by(table.c.id)
        # FOR NO KEY UPDATE (PostgreSQL): the key is never changed here, and so the foreign-key
        # checks of the history upkeep's rollup upserts (FOR KEY SHARE) do not wait for it.
        .with_for_update(key_share=True)
    )
    return {row[0]: cast(Printer, _PrinterRow(row)) for row in rows}


def _write_printers(session: Session, printers: list[Printer]) -> None:
    """UPDATE what changed in printers: one statement per set of changed columns (usually one).

    Each printer's row gets only the columns a reading set to something new, all printers with
    the same set in one statement (PostgreSQL: arrays, arrays.update_rows; SQLite: executemany).
    """
    groups: dict[tuple[str, ...], list[_PrinterRow]] = {}
    for printer in printers:
        row = cast(_PrinterRow, printer)
        names = row.changed()
        if names:
            groups.setdefault(tuple(sorted(names)), []).append(row)
    write = update_rows if session.get_bind().dialect.name == "postgresql" else sqlite_update_rows
    for columns, rows in sorted(groups.items()):
        rows.sort(key=lambda row: cast(str, row.id))  # type: ignore[attr-defined]
        values = [{c: getattr(row, c) for c in ("id", *columns)} for row in rows]
        write(session, _table(Printer), "id", columns, values)
