"""Storage: engines for SQLite and PostgreSQL, URL normalisation."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
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
