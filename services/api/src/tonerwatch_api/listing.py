"""Sorted, cursor-paginated lists: `?sort=-raised_at,name&limit=50&cursor=...` for every list endpoint.

Keyset pagination (not OFFSET): a cursor holds the sort values of the last row of its page, so the
next page is "rows after these values" and costs the same on page 1 and page 1,000, and a row
added or removed meanwhile never makes a page repeat or skip another row. NULLs sort last in
both directions; the table's unique id is always the final key, so the order is total.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, false, or_
from sqlalchemy.sql.elements import ColumnElement

Kind = Literal["str", "int", "float", "bool", "datetime"]
MAX_SORT_KEYS = 3
CURSOR_HELP = "next_cursor of the previous page, with the same sort (and filters); omit for page 1"


class ListingError(ValueError):
    """The sort or cursor parameter is unusable; the message names the parameter and says why."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True)
class SortField:
    """A column callers may sort by: its SQL expression and how to read its value off a row."""

    expr: Any
    kind: Kind
    value: Callable[[Any], Any]


def field(expr: Any, kind: Kind, attr: str | None = None) -> SortField:
    """Return a sort field reading attribute attr (default: the column's name) off result rows."""
    name = attr or str(getattr(expr, "key", None) or getattr(expr, "name", ""))
    return SortField(expr=expr, kind=kind, value=lambda row: getattr(row, name))


@dataclass(frozen=True)
class Sort:
    """A parsed sort parameter: (name, descending) keys, the unique tiebreak last."""

    keys: tuple[tuple[str, bool], ...]

    @property
    def text(self) -> str:
        """Return the canonical sort parameter (what a cursor is bound to)."""
        return ",".join(("-" if desc else "") + name for name, desc in self.keys)


@dataclass(frozen=True)
class Listing:
    """What one list endpoint can sort by, its default order and its unique tiebreak field."""

    fields: Mapping[str, SortField]
    default: str
    tiebreak: str = "id"

    def describe(self) -> str:
        """Return the OpenAPI description of this endpoint's sort parameter."""
        names = ", ".join(sorted(self.fields))
        return (
            f"Comma-separated fields, '-' for descending (at most {MAX_SORT_KEYS}): {names}. "
            f"Default: {self.default}. NULLs sort last; ties are broken by {self.tiebreak}."
        )

    def parse_sort(self, text: str | None) -> Sort:
        """Return the sort asked for (or the default), ending with the tiebreak; raise ListingError."""
        raw = (text or self.default).strip()
        keys: list[tuple[str, bool]] = []
        for part in (p.strip() for p in raw.split(",")):
            if not part:
                continue
            desc = part.startswith("-")
            name = part.lstrip("-+")
            if name not in self.fields:
                allowed = ", ".join(sorted(self.fields))
                raise ListingError("sort", f"unknown field {name!r} (one of: {allowed})")
            if any(name == k for k, _ in keys):
                raise ListingError("sort", f"field {name!r} given twice")
            keys.append((name, desc))
        if not keys:
            raise ListingError("sort", "no field given")
        if len(keys) > MAX_SORT_KEYS:
            raise ListingError("sort", f"at most {MAX_SORT_KEYS} fields")
        if keys[-1][0] != self.tiebreak:
            # The tiebreak is unique: anything after it never decides the order.
            if any(name == self.tiebreak for name, _ in keys):
                keys = keys[: [n for n, _ in keys].index(self.tiebreak) + 1]
            else:
                keys.append((self.tiebreak, keys[-1][1]))
        return Sort(tuple(keys))

    def order_by(self, sort: Sort) -> list[Any]:
        """Return the ORDER BY clauses of sort (NULLs last both ways)."""
        out: list[Any] = []
        for name, desc in sort.keys:
            expr = self.fields[name].expr
            out.append((expr.desc() if desc else expr.asc()).nulls_last())
        return out

    def after(self, sort: Sort, values: Sequence[Any]) -> ColumnElement[bool]:
        """Return the condition selecting rows that come after a row with these sort values."""
        branches: list[ColumnElement[bool]] = []
        equal_so_far: list[ColumnElement[bool]] = []
        for (name, desc), value in zip(sort.keys, values, strict=True):
            expr = self.fields[name].expr
            if value is None:
                later: ColumnElement[bool] = false()  # NULLs are last: nothing sorts after one
                same: ColumnElement[bool] = expr.is_(None)
            else:
                later = or_(expr < value if desc else expr > value, expr.is_(None))
                same = expr == value
            branches.append(and_(*equal_so_far, later) if equal_so_far else later)
            equal_so_far.append(same)
        return or_(*branches)

    def encode_cursor(self, sort: Sort, row: Any) -> str:
        """Return the opaque cursor that continues after row."""
        values = [_dump(self.fields[name].value(row)) for name, _ in sort.keys]
        raw = json.dumps({"s": sort.text, "v": values}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def decode_cursor(self, sort: Sort, cursor: str) -> list[Any]:
        """Return the sort values inside cursor; raise ListingError if it is not for this sort."""
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            data = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
            text, values = data["s"], data["v"]
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            raise ListingError("cursor", "not a cursor this API returned") from exc
        if text != sort.text:
            raise ListingError(
                "cursor", f"it continues sort={text!r}; ask with that sort or start over"
            )
        if not isinstance(values, list) or len(values) != len(sort.keys):
            raise ListingError("cursor", "not a cursor this API returned")
        try:
            return [
                _load(self.fields[name].kind, v)
                for (name, _), v in zip(sort.keys, values, strict=True)
            ]
        except (TypeError, ValueError) as exc:
            raise ListingError("cursor", "not a cursor this API returned") from exc

    def page(self, query: Any, sort: Sort, cursor: str | None, limit: int) -> Any:
        """Return query ordered, started after cursor and limited to one page plus one row."""
        if cursor:
            query = query.where(self.after(sort, self.decode_cursor(sort, cursor)))
        return query.order_by(*self.order_by(sort)).limit(limit + 1)

    def fetch(
        self,
        session: Any,
        query: Any,
        sort: Sort,
        cursor: str | None,
        limit: int,
        row_of: Callable[[Any], Any] | None = None,
    ) -> tuple[list[Any], str | None]:
        """Return one page of query's rows in sort order after cursor, and the next cursor."""
        return self.cut(
            sort, session.exec(self.page(query, sort, cursor, limit)).all(), limit, row_of
        )

    def cut(
        self,
        sort: Sort,
        rows: Sequence[Any],
        limit: int,
        row_of: Callable[[Any], Any] | None = None,
    ) -> tuple[list[Any], str | None]:
        """Return the page's rows (page() fetched one more) and the next cursor (None: last page)."""
        more = len(rows) > limit
        kept = list(rows[:limit])
        if not (more and kept):
            return kept, None
        last = kept[-1] if row_of is None else row_of(kept[-1])
        return kept, self.encode_cursor(sort, last)


def _dump(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _load(kind: Kind, value: Any) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        if not isinstance(value, str):
            raise TypeError("datetime expected")
        return datetime.fromisoformat(value)
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError("string expected")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError("boolean expected")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("integer expected")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("number expected")
    return float(value)


@dataclass(frozen=True)
class Page:
    """One page of a list as asked for: the parsed sort, the page size and the cursor."""

    order: Sort
    limit: int
    cursor: str | None = None
