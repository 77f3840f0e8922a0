"""PostgreSQL: a batch's rows in one short statement of arrays (unnest) instead of a long VALUES.

SQLAlchemy's multi-row VALUES (insertmanyvalues) writes a new SQL text for every batch size, which
psycopg then parses and converts again each time (its cache keeps short queries only), and an
executemany of an UPDATE is one statement per row in the pipeline. Here each table and column set
has one SQL text, built once: the rows go as one array per column, `INSERT ... SELECT ... FROM
unnest(...)` (upserts with ON CONFLICT) and `UPDATE ... FROM unnest(...)`, and psycopg prepares
the statement after a few runs. The arrays are sent in binary (`%b`): psycopg writes a text array
element by element in Python, ten times slower. The rows stored are the same (test_projections compares them).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Float, Integer, Table
from sqlalchemy.engine import Dialect
from sqlmodel import Session

_TEXTS: dict[tuple[Any, ...], str] = {}


class JsonText(str):
    """A JSON column's value as its stored text, written back as it is (not serialised again).

    What a projection read and did not change (a supply's envelope of up to 200 points with no
    new low: most readings): dumping it again cost more than the rest of the row's write. A
    plain str stays a JSON string, as SQLAlchemy's JSON type stores it.
    """

    __slots__ = ()


class _Stored:
    """The type of STORED."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STORED"


# A JSON column's value to keep as it is stored: sent as SQL NULL (never what a JSON None is
# sent as, the text 'null'), for an ON CONFLICT that keeps the stored one, COALESCE(excluded."c",
# t."c"). PostgreSQL then neither receives nor compresses and TOASTs the same text again.
STORED = _Stored()


@functools.cache
def _pg() -> Dialect:
    """Return a PostgreSQL dialect, imported at the first statement built here.

    Not at import: SQLAlchemy's PostgreSQL dialect is ~6 MB that `up` on SQLite does without.
    """
    from sqlalchemy.dialects import postgresql

    return postgresql.dialect()  # type: ignore[no-untyped-call]


def _quote(name: str) -> str:
    return str(_pg().identifier_preparer.quote(name))


def _arrays(table: Table, columns: Sequence[str]) -> tuple[str, str]:
    """Return (unnest(...) AS v(...), the select list of v's columns in the table's types)."""
    params, names, select = [], [], []
    for i, name in enumerate(columns):
        column_type = table.c[name].type
        q = _quote(name)
        names.append(q)
        if isinstance(column_type, JSON):
            # JSON goes as text (one document per row): an array of json documents has no
            # dimensions to confuse with the rows'.
            params.append(f"CAST(%(p{i})b AS TEXT[])")
            select.append(f"CAST(v.{q} AS JSON)")
        else:
            params.append(f"CAST(%(p{i})b AS {column_type.compile(dialect=_pg())}[])")
            select.append(f"v.{q}")
    return f"unnest({', '.join(params)}) AS v({', '.join(names)})", ", ".join(select)


def _values(table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return one list per column, each value as the column stores it."""
    out: dict[str, Any] = {}
    for i, name in enumerate(columns):
        column_type = table.c[name].type
        values = [row[name] for row in rows]
        if isinstance(column_type, JSON):
            # As SQLAlchemy's JSON type binds them: None is JSON null unless none_as_null.
            keep_null = column_type.none_as_null
            values = [
                str(v)
                if type(v) is JsonText
                else None
                if v is STORED or (v is None and keep_null)
                else json.dumps(v)
                for v in values
            ]
        elif isinstance(column_type, Float):
            # One element type per array: psycopg would refuse a float among ints.
            values = [None if v is None else float(v) for v in values]
        elif isinstance(column_type, Integer):
            values = [None if v is None else int(v) for v in values]
        out[f"p{i}"] = values
    return out


def insert_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    tail: str = "",
) -> Any:
    """INSERT rows (dicts with every name in columns) in one statement; tail: ON CONFLICT, RETURNING."""
    key = ("insert", table.name, tuple(columns), tail)
    statement = _TEXTS.get(key)
    if statement is None:
        source, select = _arrays(table, columns)
        names = ", ".join(_quote(c) for c in columns)
        statement = _TEXTS[key] = (
            f"INSERT INTO {_quote(table.name)} ({names}) SELECT {select} FROM {source} {tail}"
        )
    return session.connection().exec_driver_sql(statement, _values(table, columns, rows))


def update_rows(
    session: Session, table: Table, key: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """UPDATE the rows whose key each row names, setting columns, in one statement."""
    cache_key = ("update", table.name, key, tuple(columns))
    statement = _TEXTS.get(cache_key)
    if statement is None:
        everything = [key, *columns]
        source, _ = _arrays(table, everything)
        sets = ", ".join(
            f"{_quote(c)} = CAST(v.{_quote(c)} AS JSON)"
            if isinstance(table.c[c].type, JSON)
            else f"{_quote(c)} = v.{_quote(c)}"
            for c in columns
        )
        t, k = _quote(table.name), _quote(key)
        statement = _TEXTS[cache_key] = f"UPDATE {t} SET {sets} FROM {source} WHERE {t}.{k} = v.{k}"
    session.connection().exec_driver_sql(statement, _values(table, [key, *columns], rows))


def sqlite_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    tail: str = "",
) -> None:
    """SQLite: INSERT rows with one executemany of the driver (tail: ON CONFLICT ...).

    Each value goes through its column's own bind processing (UTC datetimes stored naive, JSON
    serialised), once per distinct value of a column rather than per row (a reading's rows share
    its time and printer): SQLAlchemy's per-row parameter processing cost more than SQLite's work.
    """
    key = ("sqlite", table.name, tuple(columns), tail)
    statement = _SQL.get(key)
    if statement is None:
        names = ", ".join(_quote(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {_quote(table.name)} ({names}) VALUES ({marks}) {tail}"
        statement = _SQL[key] = (sql, _processors(session, table, columns))
    sql, processors = statement
    session.connection().exec_driver_sql(sql, _sqlite_params(columns, processors, rows))


def sqlite_update_rows(
    session: Session, table: Table, key: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """SQLite: UPDATE the rows whose key each row names, setting columns, with one executemany.

    The values processed as sqlite_rows processes them (SQLAlchemy's executemany of an UPDATE
    processed every parameter of every row in Python).
    """
    cache_key = ("sqlite-update", table.name, key, tuple(columns))
    statement = _SQL.get(cache_key)
    if statement is None:
        sets = ", ".join(f"{_quote(c)} = ?" for c in columns)
        sql = f"UPDATE {_quote(table.name)} SET {sets} WHERE {_quote(key)} = ?"
        statement = _SQL[cache_key] = (sql, _processors(session, table, [*columns, key]))
    sql, processors = statement
    session.connection().exec_driver_sql(sql, _sqlite_params([*columns, key], processors, rows))


def _processors(session: Session, table: Table, columns: Sequence[str]) -> list[Any]:
    dialect = session.get_bind().dialect
    return [
        _JsonKept(process) if isinstance(table.c[c].type, JSON) and process is not None else process
        for c in columns
        for process in [table.c[c].type.dialect_impl(dialect).bind_processor(dialect)]
    ]


class _JsonKept:
    """A JSON column's bind processing that writes a JsonText as it is."""

    __slots__ = ("process",)

    def __init__(self, process: Any) -> None:
        self.process = process

    def __call__(self, value: Any) -> Any:
        return str(value) if type(value) is JsonText else self.process(value)


def _sqlite_params(
    columns: Sequence[str], processors: list[Any], rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    values: list[list[Any]] = []
    for name, process in zip(columns, processors, strict=True):
        column = [row[name] for row in rows]
        if isinstance(process, _JsonKept):
            # Each value its own (not shared through `seen`: a JsonText equals the plain str
            # of its text, which the JSON type stores as a JSON string).
            column = [process(v) for v in column]
        elif process is not None:
            seen: dict[Any, Any] = {}
            column = [_processed(v, process, seen) for v in column]
        values.append(column)
    return list(zip(*values, strict=True))


def _processed(value: Any, process: Any, seen: dict[Any, Any]) -> Any:
    try:
        return seen[value]
    except KeyError:
        out = seen[value] = process(value)
        return out
    except TypeError:  # unhashable (a JSON list): processed every time
        return process(value)


_SQL: dict[tuple[Any, ...], tuple[str, list[Any]]] = {}
