"""Storage: SQLModel engines from a URL (PostgreSQL in production, SQLite embedded) and Alembic migrations."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import create_engine

# Page cache per SQLite connection, KiB.
SQLITE_CACHE_KIB = 512
# Prepared statements kept per SQLite connection (Python's default: 128). An expanding IN writes a
# new text for every count of values, and each kept text holds its compiled program: 128 IN lists
# of 1-128 values are 2.3 MB a connection. The few statements a transaction repeats stay kept.
SQLITE_CACHED_STATEMENTS = 32


def normalise_url(url: str) -> str:
    """Return url with the psycopg 3 driver for PostgreSQL (postgres:// and postgresql:// accepted)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def sqlite_url(data_dir: Path) -> str:
    """Return the embedded default database URL in data_dir."""
    return f"sqlite:///{(data_dir / 'tonerwatch.db').resolve()}"


def make_engine(url: str, *, schema: str | None = None, echo: bool = False) -> Engine:
    """Return an engine for url; schema sets PostgreSQL's search_path (tests isolate themselves so)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            echo=echo,
            connect_args={
                "check_same_thread": False,
                "timeout": 30,
                "cached_statements": SQLITE_CACHED_STATEMENTS,
            },
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer; foreign keys are off by default in SQLite.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            # Each connection keeps its own page cache (SQLite's default: up to 2,000 KiB); the
            # pool holds several, and the OS caches the file for all of them anyway (issue 15).
            cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cur.close()

        return engine
    connect_args: dict[str, object] = {"connect_timeout": 10}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    engine = create_engine(
        url, echo=echo, pool_pre_ping=True, pool_size=10, connect_args=connect_args
    )
    # An INSERT with many rows (executemany) is sent as multi-row VALUES statements, as SQLAlchemy
    # does for psycopg2: psycopg 3's pipeline still has the server run one statement per row.
    engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


def migrate(engine: Engine, script_location: Path, revision: str = "head") -> None:
    """Bring the database behind engine to revision with the Alembic scripts at script_location."""
    # Imported here: Alembic loads Mako and Pygments (~8 MB), which a running service never needs.
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
