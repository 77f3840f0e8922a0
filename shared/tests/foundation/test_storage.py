"""Storage: engines for SQLite and PostgreSQL, URL normalisation."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from tonerwatch_shared.storage import SQLITE_CACHE_KIB, make_engine, normalise_url, sqlite_url


def test_postgres_urls_use_psycopg3() -> None:
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_engine_answers_on_each_database(any_engine: Engine) -> None:
    with any_engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1


def test_each_sqlite_connection_keeps_a_small_page_cache(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA cache_size")).scalar() == -SQLITE_CACHE_KIB
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()


def test_sqlite_connection_does_not_keep_every_in_list_it_ran(tmp_path: Path) -> None:
    # A batch of readings looks its printers up with an IN of as many values as the batch has
    # printers: a new statement text for every count. Kept, 128 of them are ~2.3 MB a connection.
    try:
        libsqlite = ctypes.CDLL("libsqlite3.so.0")
    except OSError:
        pytest.skip("no shared libsqlite3 to ask for its memory")
    libsqlite.sqlite3_memory_used.restype = ctypes.c_int64
    engine = make_engine(sqlite_url(tmp_path))
    try:
        with engine.connect() as conn:
            conn.execute(text("create table printers (id text primary key, name text)"))
            before = libsqlite.sqlite3_memory_used()
            if before <= 0:  # a Python with SQLite linked in counts in its own copy, not this one
                pytest.skip("Python's sqlite3 does not use the shared libsqlite3 asked here")
            for count in range(1, 129):
                ids = [f"p{i}" for i in range(count)]
                stmt = text("select * from printers where id in :ids").bindparams(
                    bindparam("ids", expanding=True)
                )
                conn.execute(stmt, {"ids": ids}).fetchall()
            kept = libsqlite.sqlite3_memory_used() - before
        assert kept < 1_200_000, f"{kept:,} bytes kept for 128 IN lists"
    finally:
        engine.dispose()
