"""Printers, supplies, readings and alerts from the poller's, discovery's and alerter's events."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import (
    Alert,
    AuditEntry,
    CounterReading,
    Printer,
    ProcessedEvent,
    Reading,
    Site,
    SupplyStateRow,
)
from tonerwatch_api.db.tx import DEFAULT_TENANT, ensure_site
from tonerwatch_api.projections import order as od
from tonerwatch_api.projections.credentials import (
    FROM_DISCOVERY,
    discovered_credentials,
    same_credentials,
)
from tonerwatch_api.projections.forecasts import forecast_columns
from tonerwatch_api.projections.monitoring import monitoring_run
from tonerwatch_api.projections.orders import apply_upstream_update, deliver_on_replacement
from tonerwatch_api.projections.outbox import add_to_outbox, follow_up_id
from tonerwatch_api.projections.status import refresh_status
from tonerwatch_api.projections.unknown import (
    PrinterNotYetKnown as PrinterNotYetKnown,  # where callers look
)
from tonerwatch_api.projections.unknown import UnknownPrinterWaits
from tonerwatch_shared.coverage import CoverageRule
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    PrinterConfigured,
    PrinterFound,
    PrinterReachable,
    PrinterRemoved,
    PrinterUnreachable,
    SnmpCredentials,
    SupplyReading,
    SupplyReplaced,
    ThresholdCrossed,
    UpstreamOrderUpdate,
    printer_of,
)
from tonerwatch_shared.ordering import Position, is_stale, position_of
from tonerwatch_shared.printer.clamp import (
    clamp_identity,
    clamp_snapshot,
    clamp_supplies,
    fit_int,
)
from tonerwatch_shared.printer.model import PrinterIdentity, PrinterSnapshot, Supply
from tonerwatch_shared.sealing import Sealer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectionOptions:
    """How the projections behave."""

    source: str = "api"
    # Sites that chose nothing (sites.monitor_found NULL): found printers wait for a person.
    auto_monitor_discovered: bool = False
    default_interval_s: float = 300.0
    # Readings applied in parallel on PostgreSQL (one printer's are serialised by a row lock);
    # SQLite has a single writer, so one.
    reading_workers: int = 4
    # Readings fetched and applied per transaction at most (a failing batch is re-applied one by
    # one). A fetch brings what is there: a few at a steady rate, whole batches from a backlog,
    # where a transaction's fixed cost is spread over more readings.
    reading_batch: int = 250
    # Opens sealed credentials to compare what a sweep found with what is stored.
    sealer: Sealer = field(default_factory=lambda: Sealer(None))
    # Service coverage rules per vendor: their max_gap_days says when monitoring is continuous.
    coverage_rules: Mapping[str, CoverageRule] = field(default_factory=dict)
    # Events waiting for their printer: one memory per projector, shared by its consumers.
    unknown: UnknownPrinterWaits = field(default_factory=UnknownPrinterWaits)


def new_printer_id() -> str:
    """Return a fresh printer id (a safe NATS subject token)."""
    return "p-" + secrets.token_hex(5)


def apply_event(
    session: Session, event: Event, consumer: str, options: ProjectionOptions, now: datetime
) -> str:
    """Apply event to the read models; return "applied", "duplicate", "ignored" or "stale"."""
    key = str(event.event_id)
    if session.get(ProcessedEvent, key) is not None:
        return "duplicate"
    # Flushed first: a replica applying the same event at the same time fails on the primary key.
    session.add(ProcessedEvent(event_id=key, consumer=consumer, processed_at=now))
    session.flush()
    handler = _HANDLERS.get(type(event))
    if handler is None:
        return "ignored"
    return handler(session, event, options, now)


def _printer_for(
    session: Session, event: Event, options: ProjectionOptions, now: datetime, lock: bool = False
) -> Printer | None:
    """Return the live printer an event names, None if it was removed; raise if not yet known.

    lock takes the row (FOR UPDATE): parallel appliers of one printer's events then read what
    the other wrote instead of overwriting it with a stale view.
    """
    printer_id = printer_of(event)
    printer = session.get(Printer, printer_id, with_for_update=lock) if printer_id else None
    if printer is None:
        if options.unknown.may_wait(event, now):
            raise PrinterNotYetKnown(
                f"printer {printer_id!r} not known yet", waiting=[event.event_id]
            )
        log.warning("dropped %s for unknown printer %s", type(event).__name__, printer_id)
        return None
    return None if printer.removed_at is not None else printer


def normalise_mac(mac: str | None) -> str | None:
    """Return a MAC address as 12 lower-case hex digits, or None when it is not one."""
    if not mac:
        return None
    digits = "".join(ch for ch in mac.lower() if ch in "0123456789abcdef")
    return digits if len(digits) == 12 and digits != "0" * 12 else None


def propose_address(printer: Printer, address: str, port: int, at: datetime, now: datetime) -> None:
    """Record where a device claiming to be printer was found (the newest claim wins)."""
    if printer.proposed_at is not None and at < printer.proposed_at:
        return  # an older sweep's claim, delivered late
    printer.proposed_address, printer.proposed_port, printer.proposed_at = address, port, at
    printer.updated_at = now


def _set_identity(printer: Printer, ident: PrinterIdentity) -> None:
    printer.vendor = ident.vendor or printer.vendor
    printer.model = ident.model or printer.model
    printer.serial = ident.serial or printer.serial
    printer.sys_object_id = ident.sys_object_id or printer.sys_object_id
    printer.mac_address = ident.mac_address or printer.mac_address
    printer.firmware = ident.firmware or printer.firmware
    if not printer.location and ident.sys_location:
        printer.location = ident.sys_location
    if not printer.name:
        printer.name = found_name(ident, printer.location, printer.address)


def found_name(ident: PrinterIdentity, location: str | None, address: str) -> str:
    """Return a name for a printer nobody named: its sysName, else model and location (or
    address), else its address."""
    sys_name = (ident.sys_name or "").strip()
    if sys_name and sys_name != address:
        return sys_name[:200]
    model = (ident.model or ident.vendor or "").strip()
    where = (location or "").strip()
    if model and where:
        return f"{model} · {where}"[:200]
    if model:
        return f"{model} · {address}"[:200]
    return address[:200]


def _store_supplies(
    session: Session, printer_id: str, supplies: Sequence[Supply], position: Position
) -> list[str]:
    """Store the supplies' current states and history; return every supply state of the printer."""
    # One query for all of the printer's supplies rather than one per supply.
    current = {
        r.supply_index: r
        for r in session.exec(
            select(SupplyStateRow).where(SupplyStateRow.printer_id == printer_id)
        ).all()
    }
    for supply in supplies:
        row = current.get(supply.index)
        if row is None:
            row = SupplyStateRow(printer_id=printer_id, supply_index=supply.index, description="")
        elif is_stale(Position(row.seq, row.updated_at), position):
            # A late, older reading (seq, else time): history gets it, the current state stays newer.
            session.add(_reading(printer_id, supply, position.at))
            continue
        row.description = supply.description
        row.part_number = supply.part_number
        row.kind = supply.kind.value
        row.supply_class = supply.supply_class.value
        row.colour = supply.colour
        row.colour_hex = supply.colour_hex
        row.level = supply.level
        row.max_capacity = supply.max_capacity
        _forecast(row, supply.percent, position.at)
        row.percent = supply.percent
        row.state = supply.state.value
        row.updated_at = position.at
        row.seq = position.seq if position.seq is not None else row.seq
        session.add(row)
        session.add(_reading(printer_id, supply, position.at))
        current[supply.index] = row
    return [row.state for row in current.values()]


def _forecast(row: SupplyStateRow, percent: float | None, at: datetime) -> None:
    """Add a reading to the supply's envelope of lows and forecast from it (as the alerter does)."""
    if percent is None:
        return  # asleep or unknown: the forecast so far stands
    columns = forecast_columns(
        row.envelope, row.percent, percent, at, supply=(row.printer_id, row.supply_index)
    )
    for name, value in columns.items():
        setattr(row, name, value)


def _reading(printer_id: str, supply: Supply, at: datetime) -> Reading:
    return Reading(
        printer_id=printer_id,
        supply_index=supply.index,
        occurred_at=at,
        percent=supply.percent,
        level=supply.level,
    )


def fitted_snapshot(event: SupplyReading) -> PrinterSnapshot:
    """Return the reading's snapshot fitted to our columns (clamped, anomalies noted)."""
    # Readings from any producer (an older poller too) fit the columns: one absurd value must
    # not fail every reading of the printer for ever. Its parts were validated with the event:
    # constructed, not validated again (a validation per reading was ~15% of a batch's CPU).
    return clamp_snapshot(
        PrinterSnapshot.model_construct(
            printer=event.printer,
            supplies=event.supplies,
            trays=event.trays,
            counters=event.counters,
            status=event.status,
        )
    )


def _apply_reading(
    session: Session, event: Event, options: ProjectionOptions, now: datetime
) -> str:
    assert isinstance(event, SupplyReading)
    printer = _printer_for(session, event, options, now, lock=True)
    if printer is None:
        return "ignored"
    at = event.occurred_at
    position = position_of(event)
    fitted = fitted_snapshot(event)
    _set_identity(printer, fitted.printer)
    printer.monitoring_since = monitoring_run(printer, at, options.coverage_rules)
    answered, newest = od.reading_status(printer, position), od.reading_applied(printer, position)
    for name, value in {**answered, **(newest or {})}.items():
        setattr(printer, name, value)
    if newest is not None:
        printer.device_status = fitted.status.device_status
        printer.printer_status = fitted.status.printer_status
        printer.status_errors = list(fitted.status.errors)
        printer.status_text = fitted.status.status_text
        printer.trays = [t.model_dump() for t in fitted.trays]
        printer.lifetime_pages = fitted.counters.lifetime_pages or printer.lifetime_pages
        printer.last_bytes_sent = fit_int(event.bytes_sent)[0]
        printer.last_bytes_received = fit_int(event.bytes_received)[0]
    printer.updated_at = now
    session.add(printer)
    states = _store_supplies(session, printer.id, fitted.supplies, position)
    c = fitted.counters
    if any(v is not None for v in (c.lifetime_pages, c.mono_pages, c.colour_pages)):
        session.add(
            CounterReading(
                printer_id=printer.id,
                occurred_at=at,
                lifetime_pages=c.lifetime_pages,
                mono_pages=c.mono_pages,
                colour_pages=c.colour_pages,
                duplex_pages=c.duplex_pages,
            )
        )
    refresh_status(session, printer, states)
    return "applied"


def configured_event(printer: Printer, *, source: str, site_id: str) -> PrinterConfigured:
    """Return the PrinterConfigured that tells the poller how to poll printer now."""
    creds = SnmpCredentials.model_validate(printer.credentials or {})
    return PrinterConfigured(
        source=source,
        site_id=site_id,
        printer_id=printer.id,
        address=printer.address,
        port=printer.port,
        protocol=printer.protocol,
        credentials=creds,
        monitored=printer.monitored,
        interval_s=printer.interval_s,
        name=printer.name,
        location=printer.location,
    )


def _apply_found(session: Session, event: Event, options: ProjectionOptions, now: datetime) -> str:
    assert isinstance(event, PrinterFound)
    if not event.identity.is_printer:
        return "ignored"
    site = ensure_site(session, event.site_id, DEFAULT_TENANT)
    live = select(Printer).where(
        Printer.site_id == event.site_id, col(Printer.removed_at).is_(None)
    )
    printer = None
    if event.identity.serial:
        printer = session.exec(live.where(Printer.serial == event.identity.serial)).first()
    mac = normalise_mac(event.identity.mac_address)
    if printer is None and mac:
        # No serial: the MAC address still follows a printer that DHCP moved.
        with_mac = session.exec(live.where(col(Printer.mac_address).is_not(None))).all()
        printer = next((p for p in with_mac if normalise_mac(p.mac_address) == mac), None)
    if printer is None:
        printer = session.exec(
            live.where(Printer.address == event.address, Printer.port == event.port)
        ).first()
    found_creds = discovered_credentials(event.credentials or SnmpCredentials())
    moved = False
    if printer is None:
        printer = Printer(
            id=new_printer_id(),
            site_id=event.site_id,
            address=event.address,
            port=event.port,
            origin="discovered",
            monitored=(
                options.auto_monitor_discovered
                if site.monitor_found is None
                else site.monitor_found
            ),
            credentials=found_creds,
            interval_s=options.default_interval_s,
            config_at=event.occurred_at,
        )
        moved = True
    else:
        if (printer.address, printer.port) != (event.address, event.port):
            if printer.person_edited or printer.origin != "discovered":
                # A device elsewhere claims a printer a person set up: serials and MACs can be
                # cloned. Nothing it says is believed and no credentials go to it until a
                # person confirms the move (or dismisses it).
                propose_address(printer, event.address, event.port, event.occurred_at, now)
                session.add(printer)
                log.warning(
                    "printer %s: a device at %s:%s claims its identity; proposed, not moved",
                    printer.id,
                    event.address,
                    event.port,
                )
                return "applied"
            # Same serial or MAC at a new address (DHCP) of a printer discovery added and no
            # person edited: follow it.
            printer.address, printer.port = event.address, event.port
            printer.config_at = event.occurred_at
            moved = True
        stored = printer.credentials or {}
        if (
            event.credentials is not None
            and stored.get(FROM_DISCOVERY)
            and not same_credentials(options.sealer, stored, found_creds)
        ):
            # The set that answers changed (say a site's community was rotated); a user's own
            # credentials (no FROM_DISCOVERY mark) are never overwritten by a sweep.
            printer.credentials = found_creds
            printer.config_at = event.occurred_at
            moved = True
    _set_identity(printer, clamp_identity(event.identity))
    # It answered the sweep, unless the poller said it is unreachable after that.
    printer.reachable = True if od.mark_status(printer, position_of(event)) else printer.reachable
    printer.last_seen_at = max(printer.last_seen_at or event.occurred_at, event.occurred_at)
    printer.updated_at = now
    session.add(printer)
    session.flush()
    _store_supplies(session, printer.id, clamp_supplies(event.supplies), position_of(event))
    refresh_status(session, printer)
    if moved and printer.monitored:
        follow = configured_event(printer, source=options.source, site_id=printer.site_id)
        add_to_outbox(
            session, follow.model_copy(update={"event_id": follow_up_id(event, "configured")})
        )
    return "applied"


def _apply_configured(
    session: Session, event: Event, options: ProjectionOptions, now: datetime
) -> str:
    assert isinstance(event, PrinterConfigured)
    printer = session.get(Printer, event.printer_id)
    if printer is not None and printer.config_at and event.occurred_at < printer.config_at:
        return "ignored"  # older than what we have (e.g. our own write, already applied)
    ensure_site(session, event.site_id, DEFAULT_TENANT)
    if printer is None:
        printer = Printer(id=event.printer_id, site_id=event.site_id, address=event.address)
    printer.site_id = event.site_id
    printer.address = event.address
    printer.port = event.port
    printer.protocol = event.protocol
    printer.credentials = event.credentials.model_dump()
    printer.monitored = event.monitored
    printer.interval_s = event.interval_s
    printer.name = event.name if event.name is not None else printer.name
    printer.location = event.location if event.location is not None else printer.location
    printer.removed_at = None
    printer.config_at = event.occurred_at
    printer.updated_at = now
    session.add(printer)
    session.flush()
    refresh_status(session, printer)
    return "applied"


def _apply_removed(
    session: Session, event: Event, options: ProjectionOptions, now: datetime
) -> str:
    assert isinstance(event, PrinterRemoved)
    printer = session.get(Printer, event.printer_id)
    if printer is None or (printer.config_at and event.occurred_at < printer.config_at):
        return "ignored"
    # "No longer monitored", not "deleted": the printer and its history stay visible.
    printer.monitored = False
    printer.config_at = event.occurred_at
    printer.updated_at = now
    refresh_status(session, printer)
    return "applied"


def _apply_reachability(
    session: Session, event: Event, options: ProjectionOptions, now: datetime
) -> str:
    assert isinstance(event, PrinterUnreachable | PrinterReachable)
    printer = _printer_for(session, event, options, now)
    if printer is None:
        return "ignored"
    if not od.mark_status(printer, position_of(event)):
        return "stale"  # a reading or reachability after this already told the status
    if isinstance(event, PrinterUnreachable):
        printer.reachable = False
        printer.last_error = event.reason
        printer.poll_failure = event.failure
    else:
        printer.reachable = True
        printer.last_error = None
        printer.poll_failure = None
    printer.updated_at = now
    refresh_status(session, printer)
    return "applied"


def _open_alerts(session: Session, alert_id: str) -> list[Alert]:
    q = select(Alert).where(Alert.alert_id == alert_id, col(Alert.resolved_at).is_(None))
    return list(session.exec(q).all())


def _apply_crossed(
    session: Session, event: Event, options: ProjectionOptions, now: datetime
) -> str:
    assert isinstance(event, ThresholdCrossed)
    printer = _printer_for(session, event, options, now)
    if printer is None:
        return "ignored"
    if od.stale_alert_event(session, event):
        return "stale"
    open_ = _open_alerts(session, event.alert_id)
    alert = (
        open_[0]
        if open_
        else Alert(
            alert_id=event.alert_id,
            printer_id=printer.id,
            rule="",
            severity="",
            message="",
            raised_at=event.occurred_at,
        )
    )
    alert.rule = event.rule
    alert.severity = event.severity
    alert.message = event.message
    alert.supply_index = event.supply_index
    alert.supply_description = event.supply_description
    alert.part_number = event.part_number
    alert.colour = event.colour
    alert.percent = event.percent
    alert.days_to_empty = event.days_to_empty
    alert.kind = event.kind if event.supply_index is not None else None
    session.add(alert)
    session.flush()
    refresh_status(session, printer)
    return "applied"


def _apply_resolved(
    session: Session, event: Event, options: ProjectionOptions, now: datetime
) -> str:
    assert isinstance(event, AlertResolved)
    if od.stale_alert_event(session, event):
        return "stale"
    open_ = _open_alerts(session, event.alert_id)
    for alert in open_:
        alert.resolved_at = event.occurred_at
        alert.superseded_by = event.superseded_by
        session.add(alert)
    session.flush()
    for printer_id in {a.printer_id for a in open_}:
        printer = session.get(Printer, printer_id)
        if printer is not None:
            refresh_status(session, printer)
    return "applied" if open_ else "ignored"


def _apply_replaced(
    session: Session, event: Event, options: ProjectionOptions, now: datetime
) -> str:
    assert isinstance(event, SupplyReplaced)
    printer = _printer_for(session, event, options, now)
    if printer is None:
        return "ignored"
    session.add(
        AuditEntry(
            at=event.occurred_at,
            username=None,
            tenant_id=_tenant_of_site(session, printer.site_id),
            action="supply.replaced",
            target=printer.id,
            detail={
                "supply_index": event.supply_index,
                "description": event.description,
                "part_number": event.part_number,
                "previous_percent": event.previous_percent,
                "percent": event.percent,
            },
        )
    )

    deliver_on_replacement(session, event, options.source)
    return "applied"


def _apply_upstream(
    session: Session, event: Event, options: ProjectionOptions, now: datetime
) -> str:
    assert isinstance(event, UpstreamOrderUpdate)
    return apply_upstream_update(session, event, options.source)


def _tenant_of_site(session: Session, site_id: str | None) -> str | None:
    site = session.get(Site, site_id) if site_id else None
    return site.tenant_id if site else None


_HANDLERS = {
    SupplyReading: _apply_reading,
    PrinterFound: _apply_found,
    PrinterConfigured: _apply_configured,
    PrinterRemoved: _apply_removed,
    PrinterUnreachable: _apply_reachability,
    PrinterReachable: _apply_reachability,
    ThresholdCrossed: _apply_crossed,
    AlertResolved: _apply_resolved,
    SupplyReplaced: _apply_replaced,
    UpstreamOrderUpdate: _apply_upstream,
}
