"""The fleet page's data: reasons on cards, and the table's rows (a few queries, whatever the fleet).

The table view gets every printer of the user's filter as compact rows once; sorting, filtering
and search then run in the browser, and live updates fetch only the printers that changed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import select as sa_select
from sqlalchemy.orm import load_only
from sqlmodel import Session, col, select

from tonerwatch_api.attention import (
    AlertFacts,
    Reason,
    SupplyFacts,
    days_left,
    level_text,
    reasons,
    supply_name,
    supply_severity,
    worst_supply,
)
from tonerwatch_api.db.groups import PrinterGroup, PrinterGroupMember
from tonerwatch_api.db.models import Alert, Printer, Site, SupplyStateRow
from tonerwatch_api.domain.access import Scope
from tonerwatch_api.domain.printers import printer_filters
from tonerwatch_api.schemas.printers import PrinterOut
from tonerwatch_api.status import printer_status

FLEET_TABLE_MAX = 20000  # rows one table fetch returns at most (the page says when it is cut)
PRINTER_COLUMNS = (
    Printer.id,
    Printer.site_id,
    Printer.name,
    Printer.model,
    Printer.vendor,
    Printer.address,
    Printer.monitored,
    Printer.reachable,
    Printer.last_seen_at,
    Printer.last_error,
    Printer.device_status,
    Printer.status_errors,
    Printer.lifetime_pages,
)
SUPPLY_COLUMNS = (
    col(SupplyStateRow.printer_id),
    col(SupplyStateRow.supply_index),
    col(SupplyStateRow.description),
    col(SupplyStateRow.kind),
    col(SupplyStateRow.supply_class),
    col(SupplyStateRow.colour),
    col(SupplyStateRow.colour_hex),
    col(SupplyStateRow.percent),
    col(SupplyStateRow.state),
)


def open_alerts_of(session: Session, printer_ids: Sequence[str]) -> dict[str, list[AlertFacts]]:
    """Return the open alerts of printer_ids (one query)."""
    out: dict[str, list[AlertFacts]] = defaultdict(list)
    if not printer_ids:
        return out
    q = select(Alert).where(
        col(Alert.printer_id).in_(list(printer_ids)), col(Alert.resolved_at).is_(None)
    )
    for a in session.exec(q).all():
        if a.printer_id is None:  # a site-wide alert (a collector's): no printer's card
            continue
        out[a.printer_id].append(AlertFacts(a.rule, a.severity, a.supply_index, a.days_to_empty))
    return out


def supply_facts(p: PrinterOut) -> list[SupplyFacts]:
    """Return what the reasons need of an API printer's supplies."""
    return [
        SupplyFacts(s.index, s.description, s.kind, s.supply_class, s.colour, s.percent, s.state)
        for s in p.supplies
    ]


def card_reasons(p: PrinterOut, alerts: Sequence[AlertFacts]) -> list[Reason]:
    """Return the reasons one card shows."""
    return reasons(
        monitored=p.monitored,
        reachable=p.reachable,
        last_seen_at=p.last_seen_at,
        last_error=p.last_error,
        device_status=p.device_status,
        status_errors=p.status_errors,
        supplies=supply_facts(p),
        alerts=alerts,
    )


def supply_alert_severity(alerts: Sequence[AlertFacts]) -> dict[str, str]:
    """Return the worst open alert severity per supply index."""
    rank = {"critical": 0, "warning": 1, "info": 2}
    out: dict[str, str] = {}
    for a in alerts:
        if a.supply_index is None:
            continue
        seen = out.get(a.supply_index)
        if seen is None or rank.get(a.severity, 9) < rank.get(seen, 9):
            out[a.supply_index] = a.severity
    return out


def fleet_rows(
    session: Session,
    tenant_id: str,
    *,
    scope: Scope | None = None,
    site_id: str | None = None,
    group_ids: Sequence[int] | None = None,
    printer_ids: Sequence[str] | None = None,
    limit: int = FLEET_TABLE_MAX,
) -> tuple[list[dict[str, Any]], bool]:
    """Return the table rows of the tenant's live printers (those of printer_ids when given).

    Four queries: printers with their site, supplies, open alerts, group memberships. Returns
    (rows, cut) where cut says more printers matched than limit.
    """
    filters = printer_filters(site_id, None, None, group_ids, scope)
    q = (
        select(Printer, Site.name)
        .join(Site, col(Site.id) == col(Printer.site_id))
        .where(Site.tenant_id == tenant_id, col(Printer.removed_at).is_(None), *filters)
        # Only what a row shows: never the credentials nor the trays (JSON decoded for nothing).
        .options(load_only(*cast(Any, PRINTER_COLUMNS), raiseload=True))
    )
    if printer_ids is not None:
        q = q.where(col(Printer.id).in_(list(printer_ids)))
    found = list(session.exec(q.order_by(col(Printer.id)).limit(limit + 1)).all())
    cut = len(found) > limit
    found = found[:limit]
    ids = [p.id for p, _ in found]
    supplies: dict[str, list[SupplyFacts]] = defaultdict(list)
    groups: dict[str, list[str]] = defaultdict(list)
    alerts: dict[str, list[AlertFacts]] = defaultdict(list)
    colours: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for chunk in _chunks(ids, 5000):
        # Plain columns, not rows: a supply's forecast envelope (JSON) is not for the table.
        for pid, index, desc, kind, klass, colour, colour_hex, percent, state in session.execute(
            sa_select(*SUPPLY_COLUMNS)
            .where(col(SupplyStateRow.printer_id).in_(chunk))
            .order_by(col(SupplyStateRow.printer_id), col(SupplyStateRow.supply_index))
        ).all():
            supplies[pid].append(SupplyFacts(index, desc, kind, klass, colour, percent, state))
            colours[(pid, index)] = (colour, colour_hex)
        alerts.update(open_alerts_of(session, chunk))
        for pid, name in session.exec(
            select(PrinterGroupMember.printer_id, PrinterGroup.name)
            .join(PrinterGroup, col(PrinterGroup.id) == col(PrinterGroupMember.group_id))
            .where(col(PrinterGroupMember.printer_id).in_(chunk))
            .order_by(col(PrinterGroup.name))
        ).all():
            groups[pid].append(name)
    rows = []
    for p, site_name in found:
        mine = supplies[p.id]
        open_ = alerts[p.id]
        status = printer_status(
            monitored=p.monitored,
            reachable=p.reachable,
            last_seen_at=p.last_seen_at,
            supply_states=[s.state for s in mine],
            alert_severities=[a.severity for a in open_],
            device_status=p.device_status,
            status_errors=p.status_errors,
        )
        why = reasons(
            monitored=p.monitored,
            reachable=p.reachable,
            last_seen_at=p.last_seen_at,
            last_error=p.last_error,
            device_status=p.device_status,
            status_errors=list(p.status_errors or []),
            supplies=mine,
            alerts=open_,
        )
        worst = worst_supply(mine)
        worst_out = None
        if worst is not None:
            s, left = worst
            sev = supply_severity(s, _alert_of(open_, s.index))
            worst_out = {
                "name": supply_name(s),
                "left": round(left, 1),
                "text": level_text(s),
                "severity": sev or "ok",
                "colour": colours.get((p.id, s.index), (None, None)),
            }
        rows.append(
            {
                "id": p.id,
                "name": p.name or p.model or p.address,
                "site": site_name,
                "site_id": p.site_id,
                "groups": groups[p.id],
                "vendor": p.vendor or "",
                "model": p.model or "",
                "address": p.address,
                "status": status,
                "reasons": [[r.text, r.severity] for r in why],
                "worst": worst_out,
                "days_left": days_left(open_),
                "last_seen": p.last_seen_at.isoformat() if p.last_seen_at else None,
                "pages": p.lifetime_pages,
                "alerts": len(open_),
            }
        )
    return rows, cut


def _alert_of(alerts: Sequence[AlertFacts], index: str) -> AlertFacts | None:
    rank = {"critical": 0, "warning": 1, "info": 2}
    mine = [a for a in alerts if a.supply_index == index]
    return min(mine, key=lambda a: rank.get(a.severity, 9)) if mine else None


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
