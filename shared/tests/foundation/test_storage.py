"""Storage: engines for SQLite and PostgreSQL, URL normalisation."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

from tonerwatch_shared.storage import normalise_url


def test_postgres_urls_use_psycopg3() -> None:
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_engine_answers_on_each_database(any_engine: Engine) -> None:
    with any_engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
