"""Meter readings (page counters) of many printers as CSV rows: one per printer per day, or per poll."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import CounterDaily, CounterReading, Printer
from tonerwatch_api.domain.retention import COUNTER_FIELDS, CounterBucketAgg, merge_counters

MeterResolution = Literal["daily", "raw", "month_end"]
METER_COLUMNS = (
    "printer_id",
    "name",
    "site_id",
    "serial",
    "model",
    "date",
    "lifetime_pages",
    "mono_pages",
    "colour_pages",
    "duplex_pages",
)
RAW_COLUMNS = tuple("read_at" if c == "date" else c for c in METER_COLUMNS)
# Billing: one row per printer per month, the meters of the month's last day with a reading.
MONTH_END_COLUMNS = tuple(
    c2 for c in METER_COLUMNS for c2 in (("period", "read_on") if c == "date" else (c,))
)
PRINTERS_PER_QUERY = 200  # bounds the IN list and the rows held per transaction

Row = tuple[str, datetime, dict[str, int | None]]  # printer id, time or day, counter values


def csv_cell(value: object) -> str:
    """Return value as a CSV cell that spreadsheets will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def daily_rows(
    session: Session, printer_ids: Sequence[str], since: datetime, until: datetime
) -> list[Row]:
    """Return each printer's counters at the end of each UTC day touching [since, until].

    Raw readings the periodic rollup has not merged yet are merged here, so today is current.
    """
    buckets: dict[tuple[str, datetime], CounterBucketAgg] = {}
    first = since - timedelta(days=1)  # a day starting before since still ends inside it
    for r in session.exec(
        select(CounterDaily).where(
            col(CounterDaily.printer_id).in_(printer_ids),
            col(CounterDaily.bucket_start) > first,
            col(CounterDaily.bucket_start) <= until,
        )
    ).all():
        buckets[(r.printer_id, r.bucket_start)] = CounterBucketAgg(
            count=r.count,
            last_at=r.last_at,
            values={f: getattr(r, f) for f in COUNTER_FIELDS},
        )
    pending = session.exec(
        select(CounterReading).where(
            col(CounterReading.printer_id).in_(printer_ids),
            col(CounterReading.rolled_up).is_(False),
            col(CounterReading.occurred_at) >= since,
            col(CounterReading.occurred_at) <= until,
        )
    ).all()
    raw = [
        (r.printer_id, r.occurred_at, {f: getattr(r, f) for f in COUNTER_FIELDS}) for r in pending
    ]
    for key, extra in merge_counters(raw, hourly=False).items():
        into = buckets.get(key)
        if into is None or (
            extra.last_at is not None and (into.last_at is None or extra.last_at >= into.last_at)
        ):
            buckets[key] = extra
    return [(pid, day, b.values) for (pid, day), b in sorted(buckets.items())]


def month_end_rows(
    session: Session, printer_ids: Sequence[str], since: datetime, until: datetime
) -> list[Row]:
    """Return each printer's counters at the end of each UTC month touching [since, until].

    The meters of the month's last day with a reading: what the syncer sends upstream at the turn.
    """
    last: dict[tuple[str, str], Row] = {}
    for row in daily_rows(session, printer_ids, since, until):
        pid, day, _ = row
        last[(pid, f"{day:%Y-%m}")] = row  # daily rows come by printer then day: the last wins
    return list(last.values())


def raw_rows(
    session: Session, printer_ids: Sequence[str], since: datetime, until: datetime
) -> list[Row]:
    """Return every counter reading of the printers in [since, until], by printer then time."""
    rows = session.exec(
        select(CounterReading)
        .where(
            col(CounterReading.printer_id).in_(printer_ids),
            col(CounterReading.occurred_at) >= since,
            col(CounterReading.occurred_at) <= until,
        )
        .order_by(col(CounterReading.printer_id), col(CounterReading.occurred_at))
    ).all()
    return [(r.printer_id, r.occurred_at, {f: getattr(r, f) for f in COUNTER_FIELDS}) for r in rows]


def meter_csv(
    printers: Iterable[Printer], rows: Iterable[Row], resolution: MeterResolution, header: bool
) -> str:
    """Return CSV text of rows, each with its printer's identity (the header line first if asked)."""
    by_id = {p.id: p for p in printers}
    buf = io.StringIO()
    w = csv.writer(buf)
    if header:
        columns = {"daily": METER_COLUMNS, "raw": RAW_COLUMNS, "month_end": MONTH_END_COLUMNS}
        w.writerow(columns[resolution])
    for pid, at, values in rows:
        p = by_id.get(pid)
        if p is None:
            continue
        when: list[str] = {
            "daily": [at.date().isoformat()],
            "raw": [at.isoformat()],
            "month_end": [f"{at:%Y-%m}", at.date().isoformat()],
        }[resolution]
        cells: list[object] = [p.id, p.name, p.site_id, p.serial, p.model, *when]
        cells += [values.get(f) for f in COUNTER_FIELDS]
        w.writerow([csv_cell(v) for v in cells])
    return buf.getvalue()
