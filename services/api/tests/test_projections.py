"""Projections: events become read-model rows exactly once, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import nats.errors
import pytest
from sqlalchemy import Text, func
from sqlalchemy import cast as sql_cast
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import (
    Alert,
    CounterReading,
    OutboxEvent,
    Printer,
    ProcessedEvent,
    Reading,
    SupplyStateRow,
)
from tonerwatch_api.db.tx import in_tx
from tonerwatch_api.db.usage import NetworkUsageDay
from tonerwatch_api.domain.access import Principal
from tonerwatch_api.domain.printers import delete_printer
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.outbox import Outbox, add_to_outbox, dead_outbox_events
from tonerwatch_api.projections.printers import (
    PrinterNotYetKnown,
    ProjectionOptions,
    UnknownPrinterWaits,
    apply_event,
)
from tonerwatch_api.projections.projector import Projector, apply_now
from tonerwatch_api.projections.readings import apply_readings
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import (
    AlertResolved,
    AlertSettingsConfigured,
    Event,
    PrinterConfigured,
    PrinterFound,
    PrinterRemoved,
    PrinterUnreachable,
    SnmpCredentials,
    SupplyReading,
    ThresholdCrossed,
)
from tonerwatch_shared.testing.infra import eventually

from .conftest import HP_M479, hp_supplies


def count(engine: Engine, model: type, **where: object) -> int:
    with Session(engine) as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return int(s.exec(q).one())


def test_hp_m479_reading_stores_supplies_history_and_counters(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    assert apply_now(db, configured()) == "applied"
    assert apply_now(db, reading()) == "applied"
    with Session(db) as s:
        black = s.get(SupplyStateRow, ("p-hp479", "1"))
        assert black is not None
        assert (black.colour, black.percent, black.part_number) == ("black", 42.0, "W2030A")
        waste = s.get(SupplyStateRow, ("p-hp479", "5"))
        assert waste is not None and waste.supply_class == "receptacle"
        printer = s.get(Printer, "p-hp479")
        assert printer is not None
        assert printer.serial == "CNB1M2N3P4" and printer.reachable is True
        assert printer.last_bytes_received == 2950 and printer.lifetime_pages == 12345
        assert printer.last_seen_at is not None and printer.last_seen_at.tzinfo is not None
    assert count(db, Reading, printer_id="p-hp479") == 5
    assert count(db, CounterReading, printer_id="p-hp479") == 1


def test_redelivered_reading_changes_nothing(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    apply_now(db, configured())
    event = reading()
    assert apply_now(db, event) == "applied"
    before = (count(db, Reading), count(db, CounterReading), count(db, ProcessedEvent))
    assert apply_now(db, event) == "duplicate"
    assert (count(db, Reading), count(db, CounterReading), count(db, ProcessedEvent)) == before


def test_older_reading_arriving_late_keeps_newer_state(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    apply_now(db, configured())
    now = datetime.now(UTC)
    apply_now(db, reading(occurred_at=now, supplies=hp_supplies(black=30.0)))
    apply_now(db, reading(occurred_at=now - timedelta(minutes=5), supplies=hp_supplies(black=31.0)))
    with Session(db) as s:
        black = s.get(SupplyStateRow, ("p-hp479", "1"))
        assert black is not None and black.percent == 30.0
    assert count(db, Reading, supply_index="1") == 2


def test_reading_for_unknown_printer_is_retried_for_five_minutes_from_its_first_try_then_dropped(
    db: Engine, reading: Callable[..., SupplyReading]
) -> None:
    options, now = ProjectionOptions(), datetime.now(UTC)
    ghost = reading(printer_id="p-ghost", occurred_at=now - timedelta(hours=1))  # backdated

    def apply(at: datetime) -> list[str]:
        return in_tx(db, lambda s: apply_readings(s, [ghost], "test", options, at))

    with pytest.raises(PrinterNotYetKnown):
        apply(now)
    assert count(db, ProcessedEvent) == 0  # rolled back: the redelivery gets another go
    with pytest.raises(PrinterNotYetKnown):
        apply(now + timedelta(minutes=4, seconds=59))
    assert apply(now + timedelta(minutes=5)) == ["ignored"]
    # Through the one-event path (reachability, alerts) the same.
    gone = PrinterUnreachable(
        source="poller",
        site_id="default",
        printer_id="p-ghost",
        address="127.0.0.1",
        reason="x",
        consecutive_failures=3,
        occurred_at=now - timedelta(days=2),
    )
    with pytest.raises(PrinterNotYetKnown):
        in_tx(db, lambda s: apply_event(s, gone, "test", options, now))
    assert (
        in_tx(db, lambda s: apply_event(s, gone, "test", options, now + timedelta(minutes=6)))
        == "ignored"
    )


def test_a_batch_of_readings_names_every_reading_that_waits_for_its_printer(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    """Not only the first: the bus then applies the fetch's other messages again at once."""
    options, now = ProjectionOptions(), datetime.now(UTC)
    apply_now(db, configured())
    ghosts = [reading(printer_id=f"p-ghost-{n}", occurred_at=now) for n in range(2)]
    batch = [ghosts[0], reading(occurred_at=now), ghosts[1]]
    with pytest.raises(PrinterNotYetKnown) as raised:
        in_tx(db, lambda s: apply_readings(s, batch, "t-readings", options, now))
    assert raised.value.waiting == {str(g.event_id) for g in ghosts}
    assert count(db, ProcessedEvent, consumer="t-readings") == 0  # rolled back whole


def test_a_backdated_reading_that_arrives_before_its_printer_is_applied_once_it_is_known(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    # The readings consumer ran ahead of the printers consumer (a backlog after an outage, the
    # demo's three weeks of history): the reading waits for the printer instead of being dropped.
    options, now = ProjectionOptions(), datetime.now(UTC)
    old = reading(occurred_at=now - timedelta(days=21))
    with pytest.raises(PrinterNotYetKnown):
        in_tx(db, lambda s: apply_readings(s, [old], "test", options, now))
    assert apply_now(db, configured()) == "applied"
    later = now + timedelta(minutes=2)
    assert in_tx(db, lambda s: apply_readings(s, [old], "test", options, later)) == ["applied"]
    assert count(db, Reading, printer_id="p-hp479") == 5
    assert count(db, CounterReading, printer_id="p-hp479") == 1


def test_reading_after_removal_does_not_resurrect_printer(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    apply_now(db, configured())
    who = Principal(1, "admin", "admin", "default", frozenset({"read", "write"}), "bearer", "x")
    in_tx(db, lambda s: delete_printer(s, who, "p-hp479", "api"))
    assert apply_now(db, reading()) == "ignored"
    assert count(db, Reading) == 0


def test_printer_removed_event_stops_monitoring_but_keeps_the_printer(
    db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    apply_now(db, configured())
    apply_now(db, PrinterRemoved(source="cli", site_id="default", printer_id="p-hp479"))
    with Session(db) as s:
        printer = s.get(Printer, "p-hp479")
        assert printer is not None and printer.monitored is False and printer.removed_at is None


def test_older_configuration_never_undoes_newer(
    db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    now = datetime.now(UTC)
    apply_now(db, configured(occurred_at=now, interval_s=60.0))
    assert (
        apply_now(db, configured(occurred_at=now - timedelta(seconds=5), interval_s=600.0))
        == "ignored"
    )
    with Session(db) as s:
        printer = s.get(Printer, "p-hp479")
        assert printer is not None and printer.interval_s == 60.0


def test_unreachable_then_alert_raised_and_resolved(
    db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    apply_now(db, configured())
    apply_now(
        db,
        PrinterUnreachable(
            source="poller",
            site_id="default",
            printer_id="p-hp479",
            address="127.0.0.1",
            consecutive_failures=3,
            reason="timeout after 3 retries",
        ),
    )
    crossed = ThresholdCrossed(
        source="alerter",
        site_id="default",
        printer_id="p-hp479",
        alert_id="p-hp479:4:low",
        rule="low",
        severity="warning",
        supply_index="4",
        colour="yellow",
        percent=8.0,
        message="Yellow Cartridge HP W2032A at 8%",
    )
    apply_now(db, crossed)
    with Session(db) as s:
        printer = s.get(Printer, "p-hp479")
        assert printer is not None and printer.reachable is False
        assert printer.last_error == "timeout after 3 retries"
        alerts = s.exec(select(Alert)).all()
        assert [(a.rule, a.severity, a.resolved_at) for a in alerts] == [("low", "warning", None)]
    apply_now(
        db,
        AlertResolved(
            source="alerter",
            site_id="default",
            printer_id="p-hp479",
            alert_id="p-hp479:4:low",
            rule="low",
        ),
    )
    with Session(db) as s:
        alert = s.exec(select(Alert)).one()
        assert alert.resolved_at is not None


def test_an_open_alert_announced_again_takes_the_new_text_and_keeps_when_it_was_raised(
    db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    apply_now(db, configured())
    raised = datetime.now(UTC) - timedelta(hours=2)
    first = ThresholdCrossed(
        source="alerter",
        site_id="default",
        printer_id="p-hp479",
        alert_id="p-hp479:printer:unreachable",
        rule="unreachable",
        severity="critical",
        message="Printer unreachable: Finance HP — no answer in 3 polls",
        occurred_at=raised,
    )
    apply_now(db, first)
    # The alerter's second word on the same open alert: the reason changed.
    apply_now(
        db,
        first.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "occurred_at": raised + timedelta(hours=1),
                "message": "SNMP access refused: Finance HP — wrong auth key or protocol",
            }
        ),
    )
    with Session(db) as s:
        [alert] = s.exec(select(Alert)).all()
        assert alert.message == "SNMP access refused: Finance HP — wrong auth key or protocol"
        assert alert.raised_at == raised and alert.resolved_at is None


async def test_an_event_nats_refuses_for_good_is_set_aside_and_the_rest_still_go_out(
    bus: Bus, pg: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    too_big = AlertSettingsConfigured(
        source="api",
        site_id="default",
        revision=1,
        # Past the server's 1 MB max_payload.
        printer_recipients={f"p-{i:098d}": ["ops@example.org"] for i in range(12_000)},
    )
    after = configured("p-after-the-big-one")
    in_tx(pg, lambda s: add_to_outbox(s, too_big))
    in_tx(pg, lambda s: s.add(OutboxEvent(event_id=str(uuid.uuid4()), payload="{not json")))
    in_tx(pg, lambda s: add_to_outbox(s, after))
    outbox = Outbox(pg, bus)
    assert await outbox.flush() == 1
    got = await wait_for_event(
        bus,
        bus.subjects.filter("printer.configured"),
        lambda e: e.event_id == after.event_id,
        timeout_s=10,
    )
    assert got is not None
    with Session(pg) as s:
        dead = s.exec(select(OutboxEvent).where(col(OutboxEvent.dead_at).is_not(None))).all()
        assert len(dead) == 2 and any("MaxPayload" in (d.error or "") for d in dead)
        assert dead_outbox_events(s) == 2
    assert await outbox.flush() == 0  # set aside for good: not retried, not blocking


class _RecordingBus:
    """Records what the outbox publishes; fails the publish numbered fail_at (from 1)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.published: list[Event] = []
        self.fail_at = fail_at

    async def publish(self, event: Event) -> bool:
        if self.fail_at is not None and len(self.published) + 1 == self.fail_at:
            raise nats.errors.TimeoutError
        self.published.append(event)
        return True


async def test_a_csv_import_of_many_printers_leaves_the_outbox_in_order_in_one_flush(
    db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    # More events than one batch: flush goes on until none is left, in the order queued.
    events = [configured(f"p-import-{i:03d}") for i in range(7)]
    in_tx(db, lambda s: [add_to_outbox(s, e) for e in events])
    bus = _RecordingBus()
    assert await Outbox(db, bus).flush(limit=3) == 7  # type: ignore[arg-type]
    assert [e.event_id for e in bus.published] == [e.event_id for e in events]
    with Session(db) as s:
        assert s.exec(select(func.count()).select_from(OutboxEvent)).one() == 0


async def test_a_publish_failing_mid_batch_keeps_the_rest_and_drops_what_went_out(
    db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    events = [configured(f"p-import-{i:03d}") for i in range(5)]
    in_tx(db, lambda s: [add_to_outbox(s, e) for e in events])
    with pytest.raises(nats.errors.TimeoutError):
        await Outbox(db, _RecordingBus(fail_at=3)).flush()  # type: ignore[arg-type]
    with Session(db) as s:
        left = s.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))).all()
        assert [r.event_id for r in left] == [str(e.event_id) for e in events[2:]]
    # The next flush sends the rest, in order, and nothing twice.
    bus = _RecordingBus()
    assert await Outbox(db, bus).flush() == 3  # type: ignore[arg-type]
    assert [e.event_id for e in bus.published] == [e.event_id for e in events[2:]]


async def test_bus_reading_lands_in_postgresql_once(
    bus: Bus,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    metrics = Metrics()
    projector = Projector(pg, bus, Outbox(pg, bus), metrics, ProjectionOptions())
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        await bus.publish(configured())
        event = reading()
        await bus.publish(event)

        def stored() -> bool:
            return count(pg, Reading, printer_id="p-hp479") == 5

        await eventually(stored, timeout_s=15)
        with Session(pg) as s:
            cyan = s.get(SupplyStateRow, ("p-hp479", "2"))
            assert cyan is not None and cyan.percent == 80.0
        # A redelivery (same event id, as after a crash before ack) is applied as a no-op.
        assert await projector.apply(event, "api-readings") == "duplicate"
        assert count(pg, Reading, printer_id="p-hp479") == 5
        assert "tonerwatch_api_events_total" in metrics.render({}, {})
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_readings_of_many_printers_land_in_batches_and_a_ghost_only_delays_itself(
    bus: Bus,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    ids = [f"p-batch{i:02d}" for i in range(12)]
    for i, pid in enumerate(ids):
        apply_now(pg, configured(pid, address=f"127.0.7.{i}"))
    # Published before the projector starts: its first fetches hold several readings each.
    for pid in reversed(ids):
        await bus.publish(reading(printer_id=pid))
    await bus.publish(reading(printer_id="p-ghost"))  # unknown yet: its batch falls back
    projector = Projector(pg, bus, Outbox(pg, bus), Metrics(), ProjectionOptions())
    sizes: list[int] = []
    whole = projector.apply_batch

    async def recording(events: list[Event], consumer: str) -> None:
        sizes.append(len(events))
        await whole(events, consumer)

    projector.apply_batch = recording  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:

        def stored() -> bool:
            return count(pg, Reading) == 5 * len(ids)

        await eventually(stored, timeout_s=20)
        assert count(pg, ProcessedEvent, consumer="api-readings") == len(ids)
        with Session(pg) as s:
            statuses = s.exec(select(Printer.status).where(col(Printer.id).in_(ids))).all()
        assert set(statuses) == {"attention"}  # yellow at 8%: status recomputed per printer
        assert max(sizes) > 1  # several readings per transaction
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    projector.apply_batch = whole  # type: ignore[method-assign]
    batch = [reading(printer_id=ids[0]), reading(printer_id=ids[1])]
    await projector.apply_batch(batch, "api-readings")
    await projector.apply_batch(batch, "api-readings")  # redelivered whole: nothing changes
    assert count(pg, Reading) == 5 * (len(ids) + 2)


async def test_discovered_printer_is_stored_and_configured_for_the_poller(
    bus: Bus, pg: Engine
) -> None:
    projector = Projector(
        pg, bus, Outbox(pg, bus), Metrics(), ProjectionOptions(auto_monitor_discovered=True)
    )
    found = PrinterFound(
        source="discovery",
        site_id="default",
        address="127.0.0.1",
        port=16101,
        identity=HP_M479,
        supplies=hp_supplies(),
    )
    assert await projector.apply(found, "api-printers") == "applied"
    with Session(pg) as s:
        printer = s.exec(select(Printer).where(col(Printer.serial) == "CNB1M2N3P4")).one()
        assert printer.origin == "discovered" and printer.monitored
    event = await wait_for_event(
        bus,
        bus.subjects.filter("printer.configured"),
        lambda e: isinstance(e, PrinterConfigured) and e.printer_id == printer.id,
        timeout_s=10,
    )
    assert isinstance(event, PrinterConfigured) and event.port == 16101
    # Found again (next sweep): same printer, nothing new for the poller.
    again = found.model_copy(update={"event_id": uuid.uuid4()})
    await projector.apply(again, "api-printers")
    assert count(pg, Printer) == 1


async def test_discovered_printer_keeps_the_credentials_that_answered(bus: Bus, pg: Engine) -> None:
    projector = Projector(
        pg, bus, Outbox(pg, bus), Metrics(), ProjectionOptions(auto_monitor_discovered=True)
    )
    private = SnmpCredentials(community="finance-ro")
    found = PrinterFound(
        source="discovery",
        site_id="default",
        address="127.0.0.1",
        port=16102,
        identity=HP_M479,
        supplies=hp_supplies(),
        credentials=private,
    )
    await projector.apply(found, "api-printers")
    configured = await wait_for_event(
        bus,
        bus.subjects.filter("printer.configured"),
        lambda e: isinstance(e, PrinterConfigured),
        timeout_s=10,
    )
    assert isinstance(configured, PrinterConfigured)
    assert (
        configured.credentials.community == "finance-ro"
    )  # the poller uses what answered, not "public"
    # The site's community is rotated: the next sweep's answer replaces the one discovery stored.
    rotated = found.model_copy(
        update={"event_id": uuid.uuid4(), "credentials": SnmpCredentials(community="finance-2027")}
    )
    await projector.apply(rotated, "api-printers")
    with Session(pg) as s:
        printer = s.exec(select(Printer)).one()
        assert printer.credentials and printer.credentials["community"] == "finance-2027"
        # A user sets their own: later sweeps never overwrite it.
        printer.credentials = SnmpCredentials(community="chosen-by-admin").model_dump()
        s.add(printer)
        s.commit()
    await projector.apply(found.model_copy(update={"event_id": uuid.uuid4()}), "api-printers")
    with Session(pg) as s:
        assert s.exec(select(Printer)).one().credentials["community"] == "chosen-by-admin"  # type: ignore[index]


async def test_printer_without_serial_followed_by_mac_after_dhcp_move(bus: Bus, pg: Engine) -> None:
    projector = Projector(pg, bus, Outbox(pg, bus), Metrics(), ProjectionOptions())
    ident = HP_M479.model_copy(update={"serial": None, "mac_address": "00:1B:A9:12:34:56"})
    first = PrinterFound(
        source="discovery", site_id="default", address="127.0.0.21", port=161, identity=ident
    )
    await projector.apply(first, "api-printers")
    moved = PrinterFound(
        source="discovery",
        site_id="default",
        address="127.0.0.35",
        port=161,
        identity=ident.model_copy(update={"mac_address": "001ba9123456"}),
    )
    await projector.apply(moved, "api-printers")
    with Session(pg) as s:
        printers = s.exec(select(Printer)).all()
    assert len(printers) == 1 and printers[0].address == "127.0.0.35"


def _rows_of(engine: Engine, prefix: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row the readings projection writes for printers whose id starts with prefix, ids cut."""

    def cut(value: object) -> object:
        return (
            value[len(prefix) :] if isinstance(value, str) and value.startswith(prefix) else value
        )

    with Session(engine) as s:
        printers = [
            tuple(
                (k, cut(v))
                for k, v in sorted(p.model_dump().items())
                # Set up separately for each copy (configured, alert raised, removed): not compared.
                if k not in ("name", "config_at", "created_at", "removed_at")
                and not (k == "updated_at" and p.removed_at is not None)
            )
            for p in s.exec(select(Printer).where(col(Printer.id).startswith(prefix))).all()
        ]
        states = [
            tuple(cut(v) for _k, v in sorted(r.model_dump().items()))
            for r in s.exec(
                select(SupplyStateRow).where(col(SupplyStateRow.printer_id).startswith(prefix))
            ).all()
        ]
        history = [
            tuple(cut(v) for k, v in sorted(r.model_dump().items()) if k != "id")
            for r in s.exec(select(Reading).where(col(Reading.printer_id).startswith(prefix))).all()
        ]
        counters = [
            tuple(cut(v) for k, v in sorted(r.model_dump().items()) if k != "id")
            for r in s.exec(
                select(CounterReading).where(col(CounterReading.printer_id).startswith(prefix))
            ).all()
        ]
        usage = [
            tuple(cut(v) for _k, v in sorted(r.model_dump().items()))
            for r in s.exec(
                select(NetworkUsageDay).where(col(NetworkUsageDay.printer_id).startswith(prefix))
            ).all()
        ]
    return {
        "printers": sorted(printers, key=repr),
        "supply_states": sorted(states, key=repr),
        "readings": sorted(history, key=repr),
        "counter_readings": sorted(counters, key=repr),
        "network_usage_daily": sorted(usage, key=repr),
    }


def test_a_batch_of_readings_equals_applying_them_one_by_one(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    """apply_readings_and_usage (set-based, one transaction) leaves exactly the rows apply_event and apply_usage leave.

    Two copies of one small fleet, "a-" applied reading by reading (apply_event, then apply_usage:
    what the retired api-usage-polling consumer did), "b-" in one batch as api-readings applies
    it: several readings per printer (out of order, one late and older), a supply that appears
    later, a redelivery inside the batch and one of an event already applied, a printer with an
    open alert, one without counters, one removed, one reading for a printer removed long ago.
    The whole batch redelivered changes nothing.
    """
    from tonerwatch_api.projections.network_usage import CONSUMER as USAGE
    from tonerwatch_api.projections.network_usage import apply_usage
    from tonerwatch_api.projections.readings import apply_readings_and_usage
    from tonerwatch_shared.printer.model import Counters, PrinterStatus, Tray

    now = datetime.now(UTC).replace(microsecond=0)
    t = [now - timedelta(minutes=m) for m in (30, 25, 20, 15, 10, 5)]
    who = Principal(1, "admin", "admin", "default", frozenset({"read", "write"}), "bearer", "x")
    copies: dict[str, list[SupplyReading]] = {}
    earlier: dict[str, SupplyReading] = {}
    for prefix in ("a-", "b-"):
        for name in ("hp", "ricoh", "gone"):
            apply_now(db, configured(printer_id=f"{prefix}{name}", name=f"{name} printer"))
        apply_now(
            db,
            ThresholdCrossed(
                source="alerter",
                site_id="default",
                printer_id=f"{prefix}ricoh",
                alert_id=f"{prefix}ricoh:1:empty",
                rule="empty",
                severity="critical",
                supply_index="1",
                percent=0.0,
                message="Black toner empty",
            ),
        )
        in_tx(db, lambda s, p=prefix: delete_printer(s, who, f"{p}gone", "api"))
        hp, ricoh = f"{prefix}hp", f"{prefix}ricoh"
        first = reading(printer_id=hp, occurred_at=t[0], supplies=hp_supplies(black=50.0))
        assert apply_now(db, first) == "applied"  # already applied before the batch
        assert in_tx(db, lambda s, e=first: apply_usage(s, e)) == "applied"
        earlier[prefix] = first
        copies[prefix] = [
            reading(printer_id=hp, occurred_at=t[3], supplies=hp_supplies(black=40.0)),
            reading(
                printer_id=hp,
                occurred_at=t[5],
                supplies=hp_supplies(black=38.0)[:4],  # the waste bin not reported this time
                trays=(Tray(index="1", name="Tray 1", level=-3, max_capacity=250),),
                status=PrinterStatus(device_status="warning", errors=("low toner",)),
                bytes_sent=388,
            ),
            # Late and older than the state: history only.
            reading(printer_id=hp, occurred_at=t[1], supplies=hp_supplies(black=49.0)),
            reading(
                printer_id=ricoh,
                occurred_at=t[2],
                supplies=hp_supplies(black=0.0)[:2],
                counters=Counters(),
            ),
            reading(printer_id=ricoh, occurred_at=t[4], supplies=hp_supplies(black=0.0)),
            reading(printer_id=f"{prefix}gone", occurred_at=t[4]),
            reading(
                printer_id=f"{prefix}ghost", occurred_at=now - timedelta(hours=1)
            ),  # unknown: dropped once its wait is over
        ]
    # Redeliveries: one inside the batch, one of the reading applied before it.
    batch = [*copies["b-"], copies["b-"][0], earlier["b-"]]
    one_by_one = [*copies["a-"], copies["a-"][0], earlier["a-"]]
    # The ghost has waited for its printer long enough: dropped at once, in both paths.
    options = ProjectionOptions(unknown=UnknownPrinterWaits(grace=timedelta(0)))
    singles = [
        in_tx(db, lambda s, e=e: apply_event(s, e, "api-readings", options, now))
        for e in sorted(one_by_one, key=lambda e: (e.printer_id, e.occurred_at))
    ]
    usage = [in_tx(db, lambda s, e=e: apply_usage(s, e)) for e in one_by_one]
    assert usage.count("applied") == 7 and usage.count("duplicate") == 2
    ordered = sorted(batch, key=lambda e: (e.printer_id, e.occurred_at))
    batched = in_tx(
        db, lambda s: apply_readings_and_usage(s, ordered, "api-readings", options, now)
    )
    assert sorted(batched) == sorted(singles)
    assert batched.count("applied") == 5 and batched.count("duplicate") == 2
    rows = _rows_of(db, "b-")
    assert rows == _rows_of(db, "a-")
    # Every reading's bytes count, also those of a removed and an unknown printer (as before).
    assert {r[5] for r in rows["network_usage_daily"]} == {"hp", "ricoh", "gone", "ghost"}
    assert count(db, ProcessedEvent, consumer="api-readings") == 2 * 7  # each reading once
    assert count(db, ProcessedEvent, consumer=USAGE) == 2 * 8  # and its bytes once
    again = in_tx(db, lambda s: apply_readings_and_usage(s, ordered, "api-readings", options, now))
    assert again == ["duplicate"] * len(ordered)
    assert _rows_of(db, "b-") == rows


def _envelope_texts(engine: Engine, prefix: str) -> dict[tuple[str, str], str]:
    """Each supply's envelope as stored (its JSON text), by (printer id cut, supply index)."""
    with Session(engine) as s:
        rows = s.execute(
            select(
                SupplyStateRow.printer_id,
                SupplyStateRow.supply_index,
                sql_cast(SupplyStateRow.envelope, Text),  # type: ignore[arg-type]
            ).where(col(SupplyStateRow.printer_id).startswith(prefix))
        ).all()
    return {(pid[len(prefix) :], index): text for pid, index, text in rows}


def test_weeks_of_readings_in_batches_store_the_envelopes_and_forecasts_applying_them_one_by_one_stores(
    db: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    """apply_readings reads the envelope as its stored text and writes it back as it is when no new low came.

    Three weeks of 4-hourly readings of a printer (black falling unevenly with noise, most
    readings no new low, a new black cartridge on day 12; cyan slow): "a-" applied one by one
    (apply_event: the envelope decoded and dumped by the ORM), "b-" in batches of 16. The
    states, envelopes and forecasts are the same, their stored texts byte for byte; a reading
    with no new low leaves every envelope's text as it was (and as dumping it again writes it).
    """
    rnd = random.Random(15)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=21)
    black, cyan, polls = 70.0, 90.0, []
    for poll in range(21 * 6):
        if poll == 12 * 6:
            black = 100.0
        black -= rnd.choice((0.0, 0.0, 0.0, 0.1, 0.4, 1.0))
        cyan -= rnd.choice((0.0, 0.0, 0.05))
        shown = round(black + rnd.gauss(0, 0.05), 2)
        polls.append((start + timedelta(hours=4 * poll), shown, round(cyan, 2)))
    for prefix in ("a-", "b-"):
        apply_now(db, configured(printer_id=f"{prefix}hp", name="hp printer"))
    options = ProjectionOptions()
    for at, b, c in polls:
        e = reading(printer_id="a-hp", occurred_at=at, supplies=hp_supplies(black=b, cyan=c))
        assert in_tx(db, lambda s, e=e: apply_event(s, e, "api-readings", options, now)) == (
            "applied"
        )
    batch = [
        reading(printer_id="b-hp", occurred_at=at, supplies=hp_supplies(black=b, cyan=c))
        for at, b, c in polls
    ]
    for i in range(0, len(batch), 16):
        part = batch[i : i + 16]
        assert in_tx(db, lambda s, p=part: apply_readings(s, p, "api-readings", options, now)) == [
            "applied"
        ] * len(part)
    assert _rows_of(db, "b-") == _rows_of(db, "a-")
    texts = _envelope_texts(db, "b-")
    assert texts == _envelope_texts(db, "a-")
    with Session(db) as s:
        state = s.get(SupplyStateRow, ("b-hp", "1"))
        assert state is not None and state.envelope is not None and state.days_to_empty is not None
        assert len(state.envelope) > 20  # the new cartridge's own, weeks of lows
    # The last levels again, an hour on: no new low anywhere.
    at, b, c = polls[-1]
    again = reading(
        printer_id="b-hp",
        occurred_at=at + timedelta(hours=1),
        supplies=hp_supplies(black=b, cyan=c),
    )
    assert in_tx(db, lambda s: apply_readings(s, [again], "api-readings", options, now)) == [
        "applied"
    ]
    assert _envelope_texts(db, "b-") == texts
    assert all(json.dumps(json.loads(t)) == t for t in texts.values())
    with Session(db) as s:
        state = s.get(SupplyStateRow, ("b-hp", "1"))
        assert state is not None and state.updated_at == at + timedelta(hours=1)


def test_on_postgresql_an_envelope_no_reading_of_a_batch_changed_is_not_sent_and_stays_as_stored(
    pg: Engine, configured: Callable[..., PrinterConfigured], reading: Callable[..., SupplyReading]
) -> None:
    """apply_readings sends a supply's envelope only if a reading of the batch changed it.

    A day of readings builds every envelope ("a-" one by one, "b-" in a batch, the waste bin not
    reported yet), then a batch of two: black's new low then its level unknown, the waste bin
    first seen, the other toners as they were. The supply states' upsert sends black's envelope
    and the waste bin's (a new row), SQL NULL for the other three (the stored one kept), and the
    rows stored are those applying the readings one by one stores, envelopes byte for byte.
    """
    # SQL NULL is then only "as stored": a JSON None is sent as the text 'null'.
    assert SupplyStateRow.__table__.c.envelope.type.none_as_null is False  # type: ignore[attr-defined]
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=1)
    first = [(start + timedelta(hours=2 * i), 60.0 - i, 80.0 - 0.5 * i) for i in range(10)]
    low = start + timedelta(hours=21)
    unknown = start + timedelta(hours=22)

    def readings(prefix: str) -> tuple[list[SupplyReading], list[SupplyReading]]:
        pid = f"{prefix}hp"
        built = [
            reading(printer_id=pid, occurred_at=at, supplies=hp_supplies(black=b, cyan=c)[:4])
            for at, b, c in first
        ]
        asleep = list(hp_supplies(black=40.0, cyan=75.5))
        asleep[0] = asleep[0].model_copy(update={"percent": None, "level": -2})
        last = [
            reading(printer_id=pid, occurred_at=low, supplies=hp_supplies(black=40.0, cyan=75.5)),
            reading(printer_id=pid, occurred_at=unknown, supplies=tuple(asleep)),
        ]
        return built, last

    options = ProjectionOptions()
    for prefix in ("a-", "b-"):
        apply_now(pg, configured(printer_id=f"{prefix}hp", name="hp printer"))
    built, last = readings("a-")
    for e in [*built, *last]:
        assert in_tx(pg, lambda s, e=e: apply_event(s, e, "api-readings", options, now)) == (
            "applied"
        )
    built, last = readings("b-")
    in_tx(pg, lambda s: apply_readings(s, built, "api-readings", options, now))
    sent: list[dict[tuple[str, str], object]] = []

    def capture(_conn: object, _cursor: object, statement: str, params: object, *_: object) -> None:
        if statement.startswith("INSERT INTO supply_states "):
            names = statement.split("(", 1)[1].split(")", 1)[0].replace('"', "").split(", ")
            assert isinstance(params, dict)
            pid, index, envelope = (
                params[f"p{names.index(n)}"] for n in ("printer_id", "supply_index", "envelope")
            )
            sent.append(dict(zip(zip(pid, index, strict=True), envelope, strict=True)))

    sa_event.listen(pg, "before_cursor_execute", capture)
    try:
        assert in_tx(pg, lambda s: apply_readings(s, last, "api-readings", options, now)) == [
            "applied",
            "applied",
        ]
    finally:
        sa_event.remove(pg, "before_cursor_execute", capture)
    texts = _envelope_texts(pg, "b-")
    assert sent == [
        {
            ("b-hp", "1"): texts[("hp", "1")],
            ("b-hp", "2"): None,
            ("b-hp", "3"): None,
            ("b-hp", "4"): None,
            ("b-hp", "5"): texts[("hp", "5")],
        }
    ]
    assert texts == _envelope_texts(pg, "a-")
    assert _rows_of(pg, "b-") == _rows_of(pg, "a-")
