"""A printer's service coverage from our own records: its continuous monitoring, orders placed through us."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlmodel import Session, col, select

from tonerwatch_api.db.orders import Order
from tonerwatch_api.domain.printers import get_printer
from tonerwatch_shared.coverage import Coverage, CoverageRule, evaluate, rule_for


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def printer_coverage(
    session: Session,
    tenant_id: str,
    printer_id: str,
    rules: Mapping[str, CoverageRule],
    now: dt.datetime,
) -> Coverage:
    """Return the printer's coverage: monitored continuously since printers.monitoring_since (the
    reading projections keep it; a gap over the rule's max_gap_days restarts it), its orders not
    cancelled."""
    printer = get_printer(session, tenant_id, printer_id)
    orders = session.exec(
        select(Order.created_at).where(
            Order.printer_id == printer.id, col(Order.status) != "cancelled"
        )
    ).all()
    at = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in orders]
    return evaluate(
        rule_for(printer.vendor, rules),
        _aware(printer.monitoring_since),
        at,
        now,
        last_seen=_aware(printer.last_seen_at),
    )
