"""Printer search: case-insensitive substring in id, name, address, vendor, model, serial and
location on both databases; index-backed on PostgreSQL (pg_trgm), and working without it."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from tonerwatch_api.db.models import Printer
from tonerwatch_api.db.tx import ensure_default_site, in_tx, upgrade
from tonerwatch_api.domain.printers import find_printers, fleet_page
from tonerwatch_shared.storage import make_engine, normalise_url

Row = tuple[str, str | None, str, str | None, str | None, str | None, str | None]
PRINTERS: list[Row] = [
    # id, name, address, vendor, model, serial, location
    ("p-acc", "Accounts HP", "10.0.0.5", "HP", "LaserJet M479fdw", "CNB1M2N3P4", "Floor 2"),
    ("p-brd", "Boardroom", "10.0.0.17", "Kyocera", "TASKalfa 2553ci", "LZX9000123", None),
    ("p-pct", "50% Scale Proofs", "print-7.example", None, None, None, "Room_1"),
    ("p-rmx", "Reception", "10.0.1.9", "Ricoh", "MP C3002", "E1234", "RoomX1"),
    ("p-esc", "Depot", "10.0.2.1", "Brother", "HL-L8360CDW", None, "Bldg 2/3 \\ Annex"),
    ("P-Ünï", "Ünicode Lab", "lab-3.example", "Canon", "iR-ADV C5535", "XYZ", "Lab"),
]


def add_printers(db: Engine, rows: list[Row], site: str = "default") -> None:
    def add(s: Session) -> None:
        for pid, name, address, vendor, model, serial, location in rows:
            s.add(
                Printer(
                    id=pid,
                    site_id=site,
                    name=name,
                    address=address,
                    vendor=vendor,
                    model=model,
                    serial=serial,
                    location=location,
                    status="ok",
                )
            )

    in_tx(db, add)


def found(db: Engine, needle: str) -> list[str]:
    """Return the ids the list API's query and the dashboard's page find for needle (they agree)."""
    listed = [p.id for p in in_tx(db, lambda s: find_printers(s, "default", search=needle))]
    page = in_tx(db, lambda s: fleet_page(s, "default", search=needle, limit=100))
    assert sorted(p.id for p in page.printers) == sorted(listed) and page.total == len(listed)
    return sorted(listed)  # id order differs between collations


@pytest.mark.parametrize(
    ("needle", "ids"),
    [
        ("p-acc", ["p-acc"]),  # id
        ("BOARDROOM", ["p-brd"]),  # name, any case
        ("0.0.17", ["p-brd"]),  # address
        ("kyocera", ["p-brd"]),  # vendor
        ("c3002", ["p-rmx"]),  # model
        ("cnb1m2", ["p-acc"]),  # serial
        ("floor 2", ["p-acc"]),  # location
        ("  Reception ", ["p-rmx"]),  # surrounding spaces ignored
        ("10.0.", ["p-acc", "p-brd", "p-esc", "p-rmx"]),
        ("p-", ["P-Ünï", "p-acc", "p-brd", "p-esc", "p-pct", "p-rmx"]),
        ("NICODE LAB", ["P-Ünï"]),
        ("nowhere", []),
    ],
)
def test_search_finds_a_substring_of_any_column_in_any_case(
    db: Engine, needle: str, ids: list[str]
) -> None:
    add_printers(db, PRINTERS)
    assert found(db, needle) == ids


def test_like_wildcards_and_the_escape_character_in_the_needle_are_literal(db: Engine) -> None:
    add_printers(db, PRINTERS)
    assert found(db, "%") == ["p-pct"]
    assert found(db, "50%") == ["p-pct"]
    assert found(db, "room_1") == ["p-pct"]  # not RoomX1
    assert found(db, "_") == ["p-pct"]
    assert found(db, "2/3") == ["p-esc"]
    assert found(db, "/") == ["p-esc"]
    assert found(db, "\\") == ["p-esc"]
    assert found(db, "\\ annex") == ["p-esc"]
    assert found(db, "%%") == [] and found(db, "__") == []


def test_quotes_in_the_needle_are_text(db: Engine) -> None:
    add_printers(db, [*PRINTERS, ("p-obr", "O'Brien's desk", "10.9.9.9", None, None, None, None)])
    assert found(db, "o'brien's") == ["p-obr"]
    assert found(db, "'") == ["p-obr"]
    assert found(db, "x'; DELETE FROM printers; --") == []
    assert found(db, '"') == []
    assert len(found(db, "p-")) == 7


def test_a_match_never_spans_two_columns(db: Engine) -> None:
    add_printers(db, PRINTERS)
    # name "Boardroom" then address "10.0.0.17"; vendor "Kyocera" then model "TASKalfa".
    assert found(db, "boardroom10") == []
    assert found(db, "kyoceratask") == []
    assert found(db, "room\x1f10") == []  # even with the separator itself in the needle
    assert found(db, "oom\x1f1") == []


def test_search_stays_within_the_filters_and_skips_removed_printers(db: Engine) -> None:
    add_printers(db, PRINTERS)

    def remove(s: Session) -> None:
        printer = s.get(Printer, "p-rmx")
        assert printer is not None
        printer.removed_at = printer.created_at
        s.add(printer)

    in_tx(db, remove)
    assert found(db, "10.0.") == ["p-acc", "p-brd", "p-esc"]
    hits = in_tx(db, lambda s: find_printers(s, "default", site_id="elsewhere", search="hp"))
    assert hits == []
    assert in_tx(db, lambda s: find_printers(s, "other-tenant", search="hp")) == []


# --- PostgreSQL: the index -------------------------------------------------------------------------


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def explain_app_queries(db: Engine, needle: str, *, seqscan: bool) -> list[dict[str, Any]]:
    """Return the plans of the SQL the dashboard page and the list API send for a search."""
    sent: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if "printers.id" in statement and "LIKE" in statement:
            sent.append((statement, params))

    event.listen(db, "before_cursor_execute", capture)
    try:
        in_tx(db, lambda s: fleet_page(s, "default", search=needle))
        in_tx(db, lambda s: find_printers(s, "default", search=needle, limit=51))
    finally:
        event.remove(db, "before_cursor_execute", capture)
    assert len(sent) == 3  # status counts, page ids, list
    plans = []
    with db.connect() as conn:
        if not seqscan:
            conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, params in sent:
            row = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar_one()
            plans.append((row if isinstance(row, list) else json.loads(row))[0]["Plan"])
        conn.rollback()
    return plans


def index_scans(plan: dict[str, Any]) -> list[str]:
    return [n.get("Index Name", "") for n in _plan_nodes(plan) if "Index" in n["Node Type"]]


def test_postgresql_has_the_trigram_index_on_the_search_expression(pg: Engine) -> None:
    with pg.connect() as conn:
        indexdef = conn.execute(
            text(
                "SELECT indexdef FROM pg_indexes"
                " WHERE indexname = 'ix_printers_search' AND schemaname = current_schema()"
            )
        ).scalar_one()
    assert "USING gin" in indexdef and "gin_trgm_ops" in indexdef
    assert "WITH (fastupdate=off)" in indexdef
    assert all(c in indexdef for c in ("location", "serial", "model", "vendor", "address"))


def test_a_selective_search_uses_the_trigram_index_on_postgresql(pg: Engine) -> None:
    # 10,000 printers named like the bench's: a search for one of them must not scan them all.
    with pg.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO printers (id, site_id, name, address, port, protocol, monitored,"
                " interval_s, interval_follows_site, origin, vendor, model, serial, status,"
                " created_at, updated_at)"
                " SELECT 'p-' || lpad(n::text, 5, '0'), 'default',"
                " 'Printer ' || lpad(n::text, 5, '0'), '127.1.' || n / 256 || '.' || n % 256,"
                " 161, 'snmp', true, 300, false, 'discovered', 'HP', 'LaserJet M479fdw',"
                " 'CNB' || lpad(n::text, 7, '0'), 'ok', now(), now()"
                " FROM generate_series(0, 9999) n"
            )
        )
        conn.execute(text("ANALYZE printers"))
    assert found(pg, "printer 04242") == ["p-04242"]
    assert found(pg, "cnb0000777") == ["p-00777"]
    # The planner can use the index for the query the app sends (the expressions are the same)...
    for plan in explain_app_queries(pg, "printer 04242", seqscan=False):
        assert "ix_printers_search" in index_scans(plan), plan
    # ...and with 10,000 printers it chooses it for the page's query on its own.
    counts, ids, _listed = explain_app_queries(pg, "printer 04242", seqscan=True)
    assert "ix_printers_search" in index_scans(ids), ids
    assert "ix_printers_search" in index_scans(counts), counts


# --- PostgreSQL without pg_trgm ------------------------------------------------------------------


@pytest.fixture
def no_trgm_db(database_url: str) -> Iterator[Engine]:
    """Return an engine as a role that may not create extensions, in a database without pg_trgm."""
    tag = uuid.uuid4().hex[:10]
    name = f"tw_notrgm_{tag}"
    url = make_url(normalise_url(database_url))
    admin = make_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{name}" LOGIN')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
    owner = make_engine(url.set(database=name).render_as_string(hide_password=False))
    with owner.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA app AUTHORIZATION "{name}"')
    owner.dispose()
    engine = make_engine(
        url.set(database=name, username=name, password=None).render_as_string(hide_password=False),
        schema="app",
    )
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')
        admin.dispose()


def test_without_pg_trgm_the_migration_skips_the_index_and_search_still_works(
    no_trgm_db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tonerwatch_api.migrations"):
        upgrade(no_trgm_db)
    assert any("pg_trgm is not available" in r.getMessage() for r in caplog.records)
    assert "permission denied" in caplog.text
    with no_trgm_db.connect() as conn:
        trgm = conn.execute(
            text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
        ).scalar_one()
        indexes = conn.execute(
            text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_printers_search'")
        ).scalar_one()
    assert trgm == 0 and indexes == 0
    ensure_default_site(no_trgm_db, "default")
    add_printers(no_trgm_db, PRINTERS)
    assert found(no_trgm_db, "Boardroom") == ["p-brd"]
    assert found(no_trgm_db, "room_1") == ["p-pct"]
