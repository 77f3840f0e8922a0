"""A printer's service coverage from our own records: first reading, orders placed through us."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import func
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Reading
from tonerwatch_api.db.orders import Order
from tonerwatch_api.domain.printers import get_printer
from tonerwatch_shared.coverage import Coverage, CoverageRule, evaluate, rule_for


def printer_coverage(
    session: Session,
    tenant_id: str,
    printer_id: str,
    rules: Mapping[str, CoverageRule],
    now: dt.datetime,
) -> Coverage:
    """Return the printer's coverage: monitored since its first reading, its orders not cancelled."""
    printer = get_printer(session, tenant_id, printer_id)
    first = session.exec(
        select(func.min(Reading.occurred_at)).where(Reading.printer_id == printer.id)
    ).one()
    orders = session.exec(
        select(Order.created_at).where(
            Order.printer_id == printer.id, col(Order.status) != "cancelled"
        )
    ).all()
    since = first if isinstance(first, dt.datetime) else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    at = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in orders]
    return evaluate(rule_for(printer.vendor, rules), since, at, now)
