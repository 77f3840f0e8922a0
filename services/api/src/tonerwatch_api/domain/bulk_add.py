"""Bulk add: parse a CSV or a list of addresses (pure), then add each line's printer.

Every line that is not blank gets an outcome: added, known (the site already has a printer at that
address and port, or an earlier line named it) or invalid (with the reason). One transaction.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Printer, Site
from tonerwatch_api.domain.access import Principal
from tonerwatch_api.domain.errors import Invalid, NotFound
from tonerwatch_api.domain.printers import add_printer
from tonerwatch_api.domain.sites import DEFAULT_INTERVAL_S
from tonerwatch_api.domain.tenancy import get_site
from tonerwatch_api.schemas.bulk_add import (
    BULK_COLUMNS,
    BULK_MAX_LINES,
    BulkAddIn,
    BulkAddOut,
    BulkLineOut,
)
from tonerwatch_api.schemas.printers import PrinterIn

_ALIASES = {"site": "site_id", "host": "address", "ip": "address"}
_SHOWN = 200


@dataclass(frozen=True)
class BulkRow:
    """One line that is not blank: its fields, or why it cannot be read."""

    line: int
    text: str
    fields: dict[str, str]
    error: str | None = None


def parse_bulk(text: str) -> list[BulkRow]:
    """Return the lines of a CSV (header row naming an `address` column) or of a plain list.

    Raise Invalid (field `text`) for what spoils the whole text: too many lines, none, or a CSV
    header with a column that is not known.
    """
    content = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not content:
        raise Invalid(("text",), "no address in it: one per line, or a CSV with a header row")
    header = [_ALIASES.get(c.strip().lower(), c.strip().lower()) for c in _cells(content[0][1])]
    data = content[1:] if "address" in header else content
    if len(data) > BULK_MAX_LINES:
        raise Invalid(("text",), f"at most {BULK_MAX_LINES} printers at once, got {len(data)}")
    if "address" not in header:
        return [_list_row(n, line) for n, line in data]
    unknown = [c for c in header if c not in BULK_COLUMNS]
    if unknown:
        raise Invalid(
            ("text",),
            f"unknown CSV column {unknown[0]!r} (known: {', '.join(BULK_COLUMNS)})",
        )
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise Invalid(("text",), f"CSV column {twice[0]!r} appears twice")
    rows = []
    for n, line in data:
        cells = _cells(line)
        if len(cells) > len(header):
            rows.append(BulkRow(n, line, {}, f"{len(cells)} cells for {len(header)} columns"))
            continue
        fields = {c: v.strip() for c, v in zip(header, cells, strict=False) if v.strip()}
        if "address" not in fields:
            rows.append(BulkRow(n, line, fields, "no address"))
            continue
        rows.append(BulkRow(n, line, fields))
    return rows


def _cells(line: str) -> list[str]:
    return next(csv.reader([line], skipinitialspace=True), [])


def _list_row(n: int, line: str) -> BulkRow:
    address = line.strip()
    if any(ch in address for ch in " \t,;"):
        return BulkRow(
            n,
            line,
            {"address": address},
            "one address per line (for names and locations, a CSV with a header row)",
        )
    return BulkRow(n, line, {"address": address})


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "line"
        if err["type"] == "string_pattern_mismatch" and where == "address":
            parts.append("address: not an IP address or host name")
        else:
            parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def bulk_add(
    session: Session,
    who: Principal,
    body: BulkAddIn,
    default_site: str,
    source: str,
    default_interval_s: float = DEFAULT_INTERVAL_S,
) -> BulkAddOut:
    """Add a printer for each valid, new line; return what became of every line."""
    rows = parse_bulk(body.text)
    defaults: dict[str, Any] = {
        k: getattr(body, k)
        for k in ("site_id", "protocol", "interval_s", "monitored", "community", "credentials")
        if getattr(body, k) is not None
    }
    seen: dict[tuple[str, str, int], int] = {}
    # The sites looked up, held here: the session's identity map keeps objects only while they
    # are referenced, so every line (and add_printer after it) would read its site again.
    sites: dict[str, Site | None] = {}
    lines: list[BulkLineOut] = []

    def result(row: BulkRow, outcome: str, reason: str | None = None, **kw: Any) -> None:
        lines.append(
            BulkLineOut(
                line=row.line,
                text=row.text.strip()[:_SHOWN],
                address=(row.fields.get("address") or None) and row.fields["address"][:_SHOWN],
                outcome=outcome,
                reason=reason,
                **kw,
            )
        )

    for row in rows:
        if row.error is not None:
            result(row, "invalid", row.error)
            continue
        try:
            wanted = PrinterIn.model_validate({**defaults, **row.fields})
        except ValidationError as exc:
            result(row, "invalid", _reason(exc))
            continue
        site_id = wanted.site_id or default_site
        if site_id not in sites:
            try:
                sites[site_id] = get_site(session, who.tenant_id, site_id)
            except NotFound:
                sites[site_id] = None
        if sites[site_id] is None:
            result(row, "invalid", f"site_id: no site {site_id!r}")
            continue
        key = (site_id, wanted.address, wanted.port)
        if key in seen:
            result(row, "known", f"same address as line {seen[key]}")
            continue
        seen[key] = row.line
        existing = session.exec(
            select(Printer).where(
                Printer.site_id == site_id,
                Printer.address == wanted.address,
                Printer.port == wanted.port,
                col(Printer.removed_at).is_(None),
            )
        ).first()
        if existing is not None:
            name = existing.name or existing.id
            result(row, "known", f"already in site {site_id!r} as {name}", printer_id=existing.id)
            continue
        printer = add_printer(session, who, wanted, default_site, source, default_interval_s)
        result(row, "added", printer_id=printer.id)
    count = {k: sum(1 for x in lines if x.outcome == k) for k in ("added", "known", "invalid")}
    return BulkAddOut(**count, lines=lines)
