"""Readings of hostile or broken devices are stored (SQLite and PostgreSQL), never fail for ever.

Before: one Counter32 page count above 2^31-1 ("integer out of range") or one description longer
than its column ("value too long") failed every reading of that printer on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.db.discovery import DiscoveryFound
from tonerwatch_api.db.models import (
    Alert,
    CounterReading,
    Printer,
    Reading,
    SupplyStateRow,
)
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_shared.events import PrinterConfigured, SupplyReading
from tonerwatch_shared.printer.clamp import (
    IDENTITY_LIMITS,
    SUPPLY_LIMITS,
    TRUNCATED,
)
from tonerwatch_shared.printer.model import Counters, PrinterIdentity, PrinterStatus, Supply
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.snmp.snmprec import load_snmprec

HOSTILE = Path(__file__).parents[3] / "shared" / "tests" / "fixtures" / "hostile"


def test_absurd_mfp_reading_is_stored_with_its_counter32_page_count(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    snap = parse_snapshot(load_snmprec(HOSTILE / "absurd-values.snmprec"))
    event = reading(
        printer_id="p-absurd",
        printer=snap.printer,
        supplies=snap.supplies,
        counters=snap.counters,
        status=snap.status,
        anomalies=snap.anomalies,
    )
    apply_now(db, configured(printer_id="p-absurd"))
    assert apply_now(db, event) == "applied"
    with Session(db) as s:
        printer = s.get(Printer, "p-absurd")
        assert printer is not None and printer.lifetime_pages == 4_294_967_295
        spare = s.get(SupplyStateRow, ("p-absurd", "1.3"))
        assert spare is not None and spare.level == 4_294_967_295
        counters = s.exec(
            select(CounterReading).where(CounterReading.printer_id == "p-absurd")
        ).one()
        assert counters.lifetime_pages == 4_294_967_295
        levels = s.exec(select(Reading.level).where(Reading.printer_id == "p-absurd")).all()
        assert 4_294_967_295 in levels


def test_unclamped_reading_from_an_older_poller_is_fitted_not_refused(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    # What a poller without the clamps published: the api fits it rather than failing for ever.
    event = reading(
        printer_id="p-old",
        printer=PrinterIdentity(vendor="HP", model="M" * 5000, serial="SN\x00\x1b[2J"),
        supplies=(
            Supply(
                index="1.1",
                description="Black " * 1000,
                part_number="P" * 300,
                level=2**64,
                max_capacity=-9,
            ),
        ),
        counters=Counters(lifetime_pages=2**64 + 5, mono_pages=4_294_967_295),
        status=PrinterStatus(status_text="\x00" * 10, errors=("x" * 500,)),
    )
    apply_now(db, configured(printer_id="p-old"))
    assert apply_now(db, event) == "applied"
    with Session(db) as s:
        printer = s.get(Printer, "p-old")
        assert printer is not None
        assert printer.model is not None and len(printer.model) == 200
        assert printer.model.endswith(TRUNCATED)
        assert printer.serial == "SN  [2J"
        assert printer.lifetime_pages is None
        row = s.get(SupplyStateRow, ("p-old", "1.1"))
        assert row is not None and (row.level, row.max_capacity) == (None, None)
        assert len(row.description) == 255 and row.part_number is not None
        counters = s.exec(select(CounterReading).where(CounterReading.printer_id == "p-old")).one()
        assert (counters.lifetime_pages, counters.mono_pages) == (None, 4_294_967_295)


def _length(model: type, column: str) -> int | None:
    return getattr(model.__table__.columns[column].type, "length", None)  # type: ignore[attr-defined]


def test_the_clamps_fit_every_column_they_feed() -> None:
    # printer/clamp.py names its limits after these columns; a narrower column would fail again.
    identity = {
        "vendor": Printer,
        "model": Printer,
        "serial": Printer,
        "sys_object_id": Printer,
        "mac_address": Printer,
        "firmware": Printer,
    }
    for field, model in identity.items():
        assert IDENTITY_LIMITS[field] <= (_length(model, field) or 10**9), field
    assert IDENTITY_LIMITS["sys_name"] <= (_length(Printer, "name") or 0)
    assert IDENTITY_LIMITS["sys_location"] <= (_length(Printer, "location") or 0)
    for field in ("vendor", "model", "serial", "sys_name"):
        assert IDENTITY_LIMITS[field] <= (_length(DiscoveryFound, field) or 0), field
    supply_columns = {
        "index": "supply_index",
        "description": "description",
        "part_number": "part_number",
        "colour": "colour",
        "colour_hex": "colour_hex",
    }
    for field, column in supply_columns.items():
        assert SUPPLY_LIMITS[field] <= (_length(SupplyStateRow, column) or 0), field
    assert SUPPLY_LIMITS["index"] <= (_length(Reading, "supply_index") or 0)
    assert SUPPLY_LIMITS["description"] <= (_length(Alert, "supply_description") or 0)
