"""What to order now: the supplies that will run low within the lead time, one line per part and site.

A supply needs ordering when it has an open low, critical or empty alert, or a forecast alert
(the alerter's forecast says it runs out within the lead time in force for it), or the api's own
forecast of it (supply_states.days_to_empty, tonerwatch_shared.forecast) is within that lead
time, so suggestions do not wait for the alerter; and no open order yet (orders never go twice). Supplies of one site needing the same part number are one
line (consolidated: one click orders them together, as one batch); a supply without a part
number, reported or from the catalogue (tonerwatch_shared.printer.catalogue), is a line of its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from tonerwatch_api.db.alerting import SiteAlertSettings
from tonerwatch_api.db.models import Alert, Printer, Site, SupplyStateRow
from tonerwatch_api.db.orders import OPEN_STATUSES, Order
from tonerwatch_api.domain.access import Principal, Scope, in_scope
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.domain.limits import lead_time_for
from tonerwatch_api.domain.orders import place_order
from tonerwatch_api.schemas.orders import OrderIn, SuggestedSupply, SuggestionOut
from tonerwatch_shared.printer.catalogue import find_part

# Alert rules that say a supply should be ordered now (tonerwatch_alerter.rules).
ORDER_NOW_RULES = ("low", "critical", "empty", "forecast")
_URGENCY = {"empty": 0, "critical": 1, "low": 2, "forecast": 3}
# TONERWATCH_LEAD_TIME_DAYS's default (the api's settings and the alerter's).
DEFAULT_LEAD_TIME_DAYS = 7.0


@dataclass(frozen=True)
class _Need:
    site_id: str
    printer: Printer
    supply: SupplyStateRow
    rule: str
    alert_id: str | None  # None: from the api's forecast, no alert (yet)
    days_to_empty: float | None
    part_number: str | None
    page_yield: int | None
    from_catalogue: bool


def _need(printer: Printer, supply: SupplyStateRow, rule: str, alert: Alert | None) -> _Need:
    part = find_part(printer.vendor, printer.model, supply.kind, supply.colour)
    number = supply.part_number or (part.part_number if part else None)
    days = alert.days_to_empty if alert is not None else supply.days_to_empty
    return _Need(
        site_id=printer.site_id,
        printer=printer,
        supply=supply,
        rule=rule,
        alert_id=alert.alert_id if alert is not None else None,
        days_to_empty=days if days is not None else supply.days_to_empty,
        part_number=number,
        page_yield=part.page_yield if part and part.part_number == number else None,
        from_catalogue=supply.part_number is None and part is not None,
    )


def line_key(site_id: str, part_number: str | None, printer_id: str, supply_index: str) -> str:
    """Return the key of a suggestion line (site and part; site, printer and supply without one)."""
    if part_number:
        return f"{site_id}/{part_number}"
    return f"{site_id}/{printer_id}/{supply_index}"


def _needs(
    session: Session,
    tenant_id: str,
    site_id: str | None,
    scope: Scope | None,
    lead_time_days: float,
) -> list[_Need]:
    q = (
        select(Alert, Printer, SupplyStateRow)
        .join(Printer, col(Printer.id) == col(Alert.printer_id))
        .join(Site, col(Site.id) == col(Printer.site_id))
        .join(
            SupplyStateRow,
            (col(SupplyStateRow.printer_id) == col(Alert.printer_id))
            & (col(SupplyStateRow.supply_index) == col(Alert.supply_index)),
        )
        .where(
            Site.tenant_id == tenant_id,
            col(Alert.resolved_at).is_(None),
            col(Alert.rule).in_(ORDER_NOW_RULES),
            col(Printer.removed_at).is_(None),
        )
    )
    if site_id:
        q = q.where(Printer.site_id == site_id)
    if scope is not None:
        q = q.where(in_scope(scope, Printer.site_id, Printer.id))
    on_order = {
        (p, s)
        for p, s in session.exec(
            select(Order.printer_id, Order.supply_index).where(
                col(Order.status).in_(sorted(OPEN_STATUSES))
            )
        ).all()
    }
    best: dict[tuple[str, str], _Need] = {}
    for alert, printer, supply in session.exec(q).all():
        key = (printer.id, supply.supply_index)
        if key in on_order:
            continue
        held = best.get(key)
        if held is None or _URGENCY[alert.rule] < _URGENCY[held.rule]:
            best[key] = _need(printer, supply, alert.rule, alert)
    # The api's own forecast within the lead time in force, where no alert says so (yet).
    forecast = (
        select(Printer, SupplyStateRow)
        .join(Site, col(Site.id) == col(Printer.site_id))
        .join(SupplyStateRow, col(SupplyStateRow.printer_id) == col(Printer.id))
        .where(
            Site.tenant_id == tenant_id,
            col(Printer.removed_at).is_(None),
            col(Printer.monitored),
            col(SupplyStateRow.days_to_empty).is_not(None),
        )
    )
    if site_id:
        forecast = forecast.where(Printer.site_id == site_id)
    if scope is not None:
        forecast = forecast.where(in_scope(scope, Printer.site_id, Printer.id))
    settings: dict[str, SiteAlertSettings | None] = {}
    for printer, supply in session.exec(forecast).all():
        key = (printer.id, supply.supply_index)
        if key in on_order or key in best or supply.days_to_empty is None:
            continue
        if printer.site_id not in settings:
            settings[printer.site_id] = session.get(SiteAlertSettings, printer.site_id)
        lead = lead_time_for(settings[printer.site_id], printer.id, supply.kind, lead_time_days)
        if supply.days_to_empty < lead:  # the alerter's test (engine: days_to_empty < lead)
            best[key] = _need(printer, supply, "forecast", None)
    return list(best.values())


def suggestions(
    session: Session,
    tenant_id: str,
    site_id: str | None = None,
    scope: Scope | None = None,
    lead_time_days: float = DEFAULT_LEAD_TIME_DAYS,
) -> list[SuggestionOut]:
    """Return what to order now, one line per site and part number, most urgent first.

    lead_time_days: the lead time where no site, kind or printer setting says otherwise
    (TONERWATCH_LEAD_TIME_DAYS, the alerter's default too).
    """
    if site_id:
        site = session.get(Site, site_id)
        if site is None or site.tenant_id != tenant_id:
            raise NotFound(f"site {site_id!r} not found")
    lines: dict[str, list[_Need]] = {}
    for need in _needs(session, tenant_id, site_id, scope, lead_time_days):
        key = line_key(need.site_id, need.part_number, need.printer.id, need.supply.supply_index)
        lines.setdefault(key, []).append(need)
    out = []
    for key, needs in lines.items():
        needs.sort(key=lambda n: (_URGENCY[n.rule], n.printer.id, n.supply.supply_index))
        days = [n.days_to_empty for n in needs if n.days_to_empty is not None]
        first = needs[0]
        out.append(
            SuggestionOut(
                key=key,
                site_id=first.site_id,
                part_number=first.part_number,
                page_yield=first.page_yield,
                from_catalogue=first.from_catalogue,
                quantity=len(needs),
                most_urgent=first.rule,
                days_to_empty=min(days) if days else None,
                supplies=[
                    SuggestedSupply(
                        printer_id=n.printer.id,
                        printer_name=n.printer.name,
                        supply_index=n.supply.supply_index,
                        supply_description=n.supply.description,
                        colour=n.supply.colour,
                        percent=n.supply.percent,
                        rule=n.rule,
                        alert_id=n.alert_id,
                        days_to_empty=n.days_to_empty,
                    )
                    for n in needs
                ],
            )
        )
    out.sort(
        key=lambda s: (
            _URGENCY[s.most_urgent],
            s.days_to_empty if s.days_to_empty is not None else float("inf"),
            s.key,
        )
    )
    return out


def order_suggestion(
    session: Session,
    who: Principal,
    key: str,
    source: str,
    idempotency_key: str | None = None,
    scope: Scope | None = None,
    lead_time_days: float = DEFAULT_LEAD_TIME_DAYS,
) -> list[Order]:
    """Place the orders of one suggestion line (one per supply, one batch); return them.

    Raise NotFound when no such line is suggested now (ordered meanwhile, or resolved). With an
    idempotency_key, a retry answers the orders the first call placed.
    """
    site_id = key.split("/", 1)[0]
    if idempotency_key is not None:
        earlier = session.exec(
            select(Order)
            .join(Site, col(Site.id) == col(Order.site_id))
            .where(
                Site.tenant_id == who.tenant_id,
                col(Order.idempotency_key).startswith(idempotency_key + "#"),
            )
            .order_by(col(Order.idempotency_key))
        ).all()
        if earlier:
            return list(earlier)
    line = next(
        (
            s
            for s in suggestions(session, who.tenant_id, site_id or None, scope, lead_time_days)
            if s.key == key
        ),
        None,
    )
    if line is None:
        raise NotFound(f"no suggestion {key!r} now (ordered already, or nothing runs low)")
    batch = "b-" + secrets.token_hex(6)
    placed: list[Order] = []
    for i, s in enumerate(line.supplies):
        body = OrderIn(
            printer_id=s.printer_id,
            supply_index=s.supply_index,
            part_number=line.part_number,
            alert_id=s.alert_id,
            notes=_batch_note(line, len(line.supplies)),
        )
        order, _ = place_order(
            session,
            who,
            body,
            source,
            f"{idempotency_key}#{i:03d}" if idempotency_key is not None else None,
            batch_id=batch,
        )
        placed.append(order)
    return placed


def _batch_note(line: SuggestionOut, count: int) -> str | None:
    if count < 2:
        return None
    return (
        f"One of {count} {line.part_number or 'supplies'} ordered together for site {line.site_id}"
    )


__all__: Sequence[str] = ("ORDER_NOW_RULES", "line_key", "order_suggestion", "suggestions")
