"""The alerter on a real NATS JetStream: one event per crossing across polls, restarts and replicas."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tonerwatch_alerter.channels import ledger as ld
from tonerwatch_alerter.channels.mail import MailConfig, MailSender
from tonerwatch_alerter.engine import Context
from tonerwatch_alerter.process import Processor
from tonerwatch_alerter.service import (
    Settings,
    channel_handler,
    channel_specs,
    consumer_specs,
    run,
)
from tonerwatch_alerter.store import BUCKET, StateConflict, StateStore
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    PrinterConfigured,
    PrinterReachable,
    PrinterUnreachable,
    SupplyReading,
    SupplyReplaced,
    ThresholdCrossed,
    parse_event,
)
from tonerwatch_shared.printer.model import PrinterIdentity, PrinterStatus, Supply, SupplyKind
from tonerwatch_shared.settings import load_settings
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually

from ._smtp import Inbox, free_port, smtp_server

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PID = "brother-hl-l2350dw-03"


def reading(
    percent: float | None, minute: int, printer_id: str = PID, errors: Sequence[str] = ()
) -> SupplyReading:
    """A Brother HL-L2350DW (mono) poll with its TN-2420 cartridge at percent."""
    return SupplyReading(
        source="poller-test",
        site_id="hq",
        printer_id=printer_id,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="Brother", model="HL-L2350DW series"),
        supplies=(
            Supply(
                index="1.1",
                description="Toner Cartridge",
                part_number="TN-2420",
                kind=SupplyKind.TONER,
                colour="black",
                percent=percent,
            ),
        ),
        status=PrinterStatus(errors=tuple(errors)),
        occurred_at=T0 + timedelta(minutes=minute),
    )


def settings_for(
    nats_url: str, subjects: Subjects, instance: str = "a1", **overrides: Any
) -> Settings:
    return load_settings(
        Settings,
        nats_url=nats_url,
        subject_root=subjects.root,
        stream_prefix=subjects.stream_prefix,
        instance=instance,
        nats_connect_attempts=3,
        **overrides,
    )


@contextlib.asynccontextmanager
async def alerter(
    nats_url: str, subjects: Subjects, instance: str = "a1", **overrides: Any
) -> AsyncIterator[None]:
    """Run one alerter replica for the duration of the block; fail if it dies or never gets ready."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        run(settings_for(nats_url, subjects, instance, **overrides), stop=stop, ready=ready)
    )
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what killed it
    assert waiter in done, "alerter not ready within 20 s"
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def published(bus: Bus) -> list[Event]:
    """Return every event in the test's stream, in order."""
    sub = await bus.js.pull_subscribe(
        bus.subjects.all,
        stream=bus.subjects.events_stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=bus.subjects.all,
            inactive_threshold=30.0,
        ),
    )
    out: list[Event] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(256, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                return out
            out += [parse_event(m.data) for m in msgs]
    finally:
        await sub.unsubscribe()


def alerts(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, ThresholdCrossed | AlertResolved | SupplyReplaced)]


async def settled(bus: Bus, printer_id: str, last: SupplyReading | Event) -> None:
    """Wait until the alerter has applied `last` to printer_id and sent its outbox."""
    store = StateStore(await bus.key_value(BUCKET))

    async def check() -> bool:
        st = (await store.load(printer_id)).state
        return st is not None and st.watermark == last.occurred_at and not st.outbox

    await eventually(check, timeout_s=15)


async def feed(bus: Bus, readings: Sequence[Event]) -> None:
    for r in readings:
        assert await bus.publish(r)


async def test_falling_through_twenty_percent_publishes_exactly_one_crossing(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    readings = [reading(p, i) for i, p in enumerate([40, 30, 25, 21, 19, 18, 17])]
    async with alerter(nats_url, subjects):
        await feed(bus, readings)
        await settled(bus, PID, readings[-1])
    [low] = alerts(await published(bus))
    assert isinstance(low, ThresholdCrossed)
    assert (low.rule, low.alert_id, low.percent) == ("low", f"{PID}:1.1:low", 19)
    assert low.subject(subjects) == f"{subjects.root}.hq.alert.crossed.{PID}"


async def test_flapping_level_publishes_one(bus: Bus, nats_url: str, subjects: Subjects) -> None:
    readings = [reading(p, i) for i, p in enumerate([25, 19, 21, 19, 21])]
    async with alerter(nats_url, subjects):
        await feed(bus, readings)
        await settled(bus, PID, readings[-1])
    assert [type(e).__name__ for e in alerts(await published(bus))] == ["ThresholdCrossed"]


async def test_replacement_publishes_replaced_and_resolves(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    readings = [reading(p, i) for i, p in enumerate([25, 19, 5, 100, 99])]
    async with alerter(nats_url, subjects):
        await feed(bus, readings)
        await settled(bus, PID, readings[-1])
    got = alerts(await published(bus))
    assert [(type(e).__name__, getattr(e, "rule", None)) for e in got] == [
        ("ThresholdCrossed", "low"),
        ("ThresholdCrossed", "critical"),
        ("AlertResolved", "low"),
        ("SupplyReplaced", None),
        ("AlertResolved", "critical"),
    ]
    superseded = got[2]
    assert isinstance(superseded, AlertResolved)
    assert superseded.superseded_by == f"{PID}:1.1:critical"
    swap = got[3]
    assert isinstance(swap, SupplyReplaced)
    assert (swap.previous_percent, swap.percent, swap.part_number) == (5, 100, "TN-2420")


async def test_restart_with_replayed_readings_sends_nothing_twice(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    first = [reading(p, i) for i, p in enumerate([30, 19, 4])]
    async with alerter(nats_url, subjects):
        await feed(bus, first)
        await settled(bus, PID, first[-1])
    before = alerts(await published(bus))
    assert [getattr(e, "rule", None) for e in before] == ["low", "critical", "low"]
    assert [type(e).__name__ for e in before][-1] == "AlertResolved"
    # Lose the consumers' positions too: the restarted alerter re-reads every reading from the
    # start of the stream, and only the state tells it what it already announced.
    for spec in consumer_specs(subjects):
        await bus.js.delete_consumer(subjects.events_stream, spec.durable)
    later = [reading(p, 10 + i) for i, p in enumerate([3, 2])]
    async with alerter(nats_url, subjects):
        await feed(bus, later)
        await settled(bus, PID, later[-1])
    after = alerts(await published(bus))
    assert after == before


async def test_two_replicas_on_one_consumer_send_each_crossing_once(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    printers = [f"hp-m404-{n:02d}" for n in range(6)]
    levels = [30, 25, 21, 19, 18, 15, 12, 9, 6, 4]
    async with alerter(nats_url, subjects, "a1"), alerter(nats_url, subjects, "a2"):
        # Interleaved and fast, so both replicas hold readings of the same printer at once.
        batch = [reading(p, i, printer_id=pid) for i, p in enumerate(levels) for pid in printers]
        await feed(bus, batch)
        for pid in printers:
            await settled(bus, pid, batch[-1])
    got = [e for e in alerts(await published(bus)) if isinstance(e, ThresholdCrossed)]
    for pid in printers:
        rules = sorted(e.rule for e in got if e.printer_id == pid)
        assert rules == ["critical", "low"], pid
    assert len({e.event_id for e in got}) == len(got)


async def test_unreachable_and_back(bus: Bus, nats_url: str, subjects: Subjects) -> None:
    down = PrinterUnreachable(
        source="poller-test",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        consecutive_failures=3,
        reason="no SNMP answer in 3 polls",
        occurred_at=T0 + timedelta(minutes=1),
    )
    up = PrinterReachable(
        source="poller-test",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        occurred_at=T0 + timedelta(minutes=2),
    )
    async with alerter(nats_url, subjects):
        await feed(bus, [reading(80, 0), down])
        await settled(bus, PID, down)
        await feed(bus, [up])
        await settled(bus, PID, up)
    got = alerts(await published(bus))
    assert [(type(e).__name__, getattr(e, "rule", None)) for e in got] == [
        ("ThresholdCrossed", "unreachable"),
        ("AlertResolved", "unreachable"),
    ]
    assert isinstance(got[0], ThresholdCrossed) and "no SNMP answer" in got[0].message


class _CrashingBus(Bus):
    """A bus whose first publish dies, as if the process was killed after committing state."""

    crashed = False

    async def publish(self, event: Event, *, timeout_s: float = 5.0) -> bool:
        if not self.crashed:
            self.crashed = True
            raise ConnectionError("killed between commit and publish")
        return await super().publish(event, timeout_s=timeout_s)


async def test_crash_after_commit_publishes_outbox_once(bus: Bus) -> None:
    crashing = _CrashingBus(bus.nc, bus.subjects, max_age_s=bus.max_age_s, source="a1")
    store = StateStore(await bus.key_value(BUCKET))
    proc = Processor(crashing, store, Context(source="a1"))
    await proc.handle(reading(30, 0))
    with pytest.raises(ConnectionError):
        await proc.handle(reading(19, 1))
    loaded = await store.load(PID)
    assert loaded.state is not None and len(loaded.state.outbox) == 1
    # Redelivery of the same reading: stale for evaluation, but the outbox goes out.
    await proc.handle(reading(19, 1))
    # And once more, as a second replica would after a lost ack.
    await Processor(bus, store, Context(source="a2")).handle(reading(19, 1))
    assert [getattr(e, "rule", None) for e in alerts(await published(bus))] == ["low"]
    assert (await store.load(PID)).state.outbox == []  # type: ignore[union-attr]


async def test_state_store_refuses_stale_revision(bus: Bus) -> None:
    store = StateStore(await bus.key_value(BUCKET))
    proc = Processor(bus, store, Context(source="a1"))
    await proc.handle(reading(50, 0))
    loaded = await store.load(PID)
    assert loaded.state is not None and loaded.revision > 0
    await store.save(PID, loaded.state, loaded.revision)
    with pytest.raises(StateConflict):
        await store.save(PID, loaded.state, loaded.revision)
    with pytest.raises(StateConflict):
        await store.save("never-seen", loaded.state, 5)


async def test_printer_id_with_unsafe_characters_gets_a_key(bus: Bus) -> None:
    store = StateStore(await bus.key_value(BUCKET))
    proc = Processor(bus, store, Context(source="a1"))
    odd = "ipp://127.0.0.7:631/printers/Front Desk"
    await proc.handle(reading(19, 0, printer_id=odd))
    st = (await store.load(odd)).state
    assert st is not None and st.printer_id == odd and f"{odd}:1.1:low" in st.alerts


def test_settings_read_rules_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONERWATCH_LOW_PERCENT", "25")
    monkeypatch.setenv(
        "TONERWATCH_ALERT_RULES",
        '{"sites": {"warehouse": {"lead_time_days": 21, "kinds": {"ink": {"low_percent": 30}}}}}',
    )
    s = load_settings(Settings)
    ctx = s.context()
    assert ctx.base.low_percent == 25
    r = ctx.rules.resolve(ctx.base, "warehouse", "x", SupplyKind.INK)
    assert (r.low_percent, r.lead_time_days, r.critical_percent) == (30, 21, 5)
    assert ctx.rules.resolve(ctx.base, "hq", "x", SupplyKind.INK).low_percent == 25


def mail_route(port: int) -> dict[str, object]:
    return {
        "name": "it",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "tonerwatch@example.org",
        "recipients": ["it@example.org"],
        "site_recipients": {"hq": ["hq-it@example.org"]},
        "attempts": 1,
        "timeout_s": 2,
        "max_backoff_s": 0,
        "replaced": True,
    }


async def test_smtp_down_then_up_delivers_the_named_alert_exactly_once(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    port = free_port()  # nobody listens yet: the SMTP server is down
    setup = PrinterConfigured(
        source="api-test",
        site_id="hq",
        printer_id=PID,
        address="127.0.0.1",
        name="Brother HL-L2350DW",
        location="Finance, 2nd floor",
        occurred_at=T0 - timedelta(days=1),
    )
    readings = [reading(p, i) for i, p in enumerate([30, 19])]
    inbox = Inbox()
    async with alerter(
        nats_url, subjects, mail=[mail_route(port)], public_url="https://tw.example.org"
    ):
        # The printer's name comes from its configuration, consumed apart from readings: let it
        # land first, or a loaded machine names the printer from its sysDescr instead.
        await feed(bus, [setup])
        store = StateStore(await bus.key_value(BUCKET))

        async def named() -> bool:
            st = (await store.load(PID)).state
            return st is not None and st.name == setup.name

        await eventually(named, timeout_s=15)
        await feed(bus, readings)
        await settled(bus, PID, readings[-1])
        # Let the channel fail at least once (connection refused, nak with back-off).
        await asyncio.sleep(1.5)
        assert inbox.messages == []
        with smtp_server(inbox, port=port):
            await eventually(lambda: len(inbox.messages) >= 1, timeout_s=20)
            # Redeliveries still in flight must not turn into a second mail.
            await asyncio.sleep(2.5)
    [msg] = inbox.messages
    assert msg["Subject"] == "Low toner: Brother HL-L2350DW (Finance, 2nd floor) — Black 19%"
    assert msg["To"] == "hq-it@example.org"
    [low] = [e for e in alerts(await published(bus)) if isinstance(e, ThresholdCrossed)]
    assert msg["Message-ID"] == f"<{low.event_id}@tonerwatch>"
    body = msg.get_body(("plain",))
    assert body is not None
    assert f"https://tw.example.org/printers/{PID}" in body.get_content()
    assert "Part number: TN-2420" in body.get_content()


async def test_replacement_mail_and_redelivery_is_not_sent_twice(bus: Bus) -> None:
    ledger = await ld.open_ledger(bus, 7 * 86400.0)
    inbox = Inbox()
    swap = SupplyReplaced(
        source="alerter-test",
        site_id="hq",
        printer_id=PID,
        supply_index="1.1",
        description="Toner Cartridge",
        part_number="TN-2420",
        previous_percent=3,
        percent=100,
    )
    with smtp_server(inbox) as port:
        sender = MailSender(MailConfig.model_validate(mail_route(port)))
        handle = channel_handler(sender, channel="mail_it", ledger=ledger)
        for _ in range(3):  # JetStream redelivers after a lost ack
            await handle(swap, None)  # type: ignore[arg-type]
    [msg] = inbox.messages
    assert msg["Subject"] == f"Replaced: {PID} — Toner Cartridge 3% → 100%"
    assert await ledger.delivered("mail_it", str(swap.event_id))
    assert not await ledger.delivered("webhook_ops", str(swap.event_id))


async def test_a_mail_sent_as_nats_goes_down_is_not_sent_again_on_redelivery(bus: Bus) -> None:
    """The SMTP server took the mail, then NATS went away before the ledger's record was written:
    the handler fails (the event comes again), and each redelivery to this replica finds the send
    kept in memory and is acked without a mail, even while the record still cannot be written
    (tests/test_faults.py kills nats-server in this window). The next write that succeeds writes
    the kept record and position, and an older event of the alert is stale meanwhile."""

    class Unreachable(ld.Ledger):
        down = True

        async def record(self, channel: str, event_id: str) -> None:
            if self.down:
                # JetStream's 503 just after a restart: not an OSError, so not "retry later".
                raise nats.js.errors.ServiceUnavailableError
            await super().record(channel, event_id)

    ledger = Unreachable((await ld.open_ledger(bus, 7 * 86400.0)).kv)
    inbox = Inbox()
    crossed, older, other = low_alert(7), low_alert(5), low_alert(9, rule="critical")
    with smtp_server(inbox) as port:
        sender = MailSender(MailConfig.model_validate(mail_route(port)))
        handle = channel_handler(sender, channel="mail_it", ledger=ledger)
        with pytest.raises(nats.js.errors.ServiceUnavailableError):
            await handle(crossed, None)  # type: ignore[arg-type]
        assert len(inbox.messages) == 1
        for _ in range(3):  # JetStream redelivers the unacked event; KV still refuses
            await handle(crossed, None)  # type: ignore[arg-type]
        await handle(older, None)  # type: ignore[arg-type]  # older than the kept position
        assert len(inbox.messages) == 1
        fresh = ld.Ledger(ledger.kv)
        assert not await fresh.delivered("mail_it", str(crossed.event_id))
        ledger.down = False
        await handle(other, None)  # type: ignore[arg-type]  # its write writes the kept one too
    assert len(inbox.messages) == 2
    # Written to KV now: another replica (or this one restarted) knows it too.
    assert await fresh.delivered("mail_it", str(crossed.event_id))
    last = await fresh.last_position("mail_it", crossed.alert_id)
    assert last is not None and last.seq == 7
    assert not ledger._unrecorded


def test_replacement_channels_get_their_own_consumer(subjects: Subjects) -> None:
    plain = MailConfig.model_validate(mail_route(25) | {"replaced": False})
    assert [s.filter_subject for s in channel_specs(subjects, "mail", plain)] == [
        f"{subjects.root}.*.alert.>",
        f"{subjects.root}.*.site.*.*",  # site offline/online (test_site_offline_channels.py)
    ]
    both = channel_specs(subjects, "mail", MailConfig.model_validate(mail_route(25)))
    assert [s.filter_subject for s in both] == [
        f"{subjects.root}.*.alert.>",
        f"{subjects.root}.*.supply.replaced.*",
        f"{subjects.root}.*.site.*.*",
    ]
    assert len({s.durable for s in both}) == 3


def low_alert(seq: int, rule: str = "low") -> ThresholdCrossed:
    return ThresholdCrossed(
        source="alerter-test",
        site_id="hq",
        printer_id=PID,
        alert_id=f"{PID}:1.1:{rule}",
        rule=rule,
        severity="warning",
        message=f"Low toner: {PID} — Black (seq {seq})",
        occurred_at=T0 + timedelta(minutes=seq),
        seq=seq,
    )


async def test_a_stale_alert_event_is_not_mailed_after_a_newer_one(bus: Bus) -> None:
    """A "crossed" older than the "resolved" already mailed (a late redelivery, a replayed dead
    letter) is not mailed: nobody is told "low" after "cleared"."""
    ledger = await ld.open_ledger(bus, 7 * 86400.0)
    inbox = Inbox()
    crossed, cleared = low_alert(2), None
    cleared = AlertResolved(
        source="alerter-test",
        site_id="hq",
        printer_id=PID,
        alert_id=crossed.alert_id,
        rule="low",
        message="Low toner cleared",
        occurred_at=T0 + timedelta(minutes=4),
        seq=4,
    )
    late = low_alert(3)  # a crossing between the two, arriving after the resolve
    other = low_alert(1, rule="critical")  # another alert of the printer: its own order
    with smtp_server(inbox) as port:
        sender = MailSender(MailConfig.model_validate(mail_route(port)))
        handle = channel_handler(sender, channel="mail_it", ledger=ledger)
        for event in (crossed, cleared, late, other):
            await handle(event, None)  # type: ignore[arg-type]
    subjects_sent = [m["Subject"] for m in inbox.messages]
    assert len(subjects_sent) == 3, subjects_sent
    assert not any("(seq 3)" in s for s in subjects_sent)
    assert not await ledger.delivered("mail_it", str(late.event_id))
    last = await ledger.last_position("mail_it", crossed.alert_id)
    assert last is not None and last.seq == 4


async def test_readings_held_back_in_an_outage_and_delivered_late_alert_nothing_stale(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    """Through an outage (SMTP down), readings of a printer arrive out of order: two are held
    back (a site link down) and published after newer ones. The alerter applies each reading at
    most once, drops the late ones (seq older than what it applied), and the mail channel sends
    exactly the alert events published: the low, its clearing by the new cartridge, nothing from
    the stale readings."""
    port = free_port()  # the SMTP server is down
    levels = {1: 30.0, 2: 19.0, 3: 15.0, 4: 95.0, 5: 90.0}  # by seq: low at 2, new cartridge at 4
    by_seq = {s: reading(p, s).model_copy(update={"seq": 1_000 + s}) for s, p in levels.items()}
    on_time, held_back = [by_seq[s] for s in (1, 2, 4, 5)], [by_seq[3], by_seq[2]]
    # held back: 3 (would say "still low" after the swap) and 2 again under a new event id
    # (the collector's copy of it: a second publish of the same reading), in reverse order.
    held_back[1] = held_back[1].model_copy(update={"event_id": uuid.uuid4()})
    # 3 was stamped by a replica whose clock runs 10 minutes ahead: only its seq says it is old.
    held_back[0] = held_back[0].model_copy(update={"occurred_at": T0 + timedelta(minutes=13)})
    inbox = Inbox()
    async with alerter(nats_url, subjects, mail=[mail_route(port)]):
        await feed(bus, on_time)
        await settled(bus, PID, on_time[-1])
        await feed(bus, held_back)
        store = StateStore(await bus.key_value(BUCKET))

        async def consumed() -> bool:
            info = await bus.js.consumer_info(
                subjects.events_stream, consumer_specs(subjects)[0].durable
            )
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(consumed, timeout_s=15)
        st = (await store.load(PID)).state
        assert st is not None and st.watermark_seq == 1_005 and not st.outbox
        events = alerts(await published(bus))
        with smtp_server(inbox, port=port):
            await eventually(lambda: len(inbox.messages) >= len(events), timeout_s=30)
            await asyncio.sleep(1.5)  # anything more (a stale alert, a repeat) would arrive now
    kinds = [(type(e).__name__, e.seq) for e in events]  # type: ignore[attr-defined]
    assert kinds == [
        ("ThresholdCrossed", 1_002),
        ("SupplyReplaced", 1_004),
        ("AlertResolved", 1_004),
    ], kinds
    # In = out: every alert event the alerter published was mailed once, nothing else.
    assert len(inbox.messages) == len(events) == 3
    assert {m["Message-ID"] for m in inbox.messages} == {
        f"<{e.event_id}@tonerwatch>" for e in events
    }


async def test_steady_readings_are_kept_in_memory_and_written_within_the_touch_interval(
    bus: Bus,
) -> None:
    store = StateStore(await bus.key_value(BUCKET))
    await store.start()
    try:
        proc = Processor(bus, store, Context(source="a1"))
        await proc.handle(reading(50, 0))
        written = await StateStore(await bus.key_value(BUCKET)).load(PID)
        # The same level again and again: only when the printer was read moves.
        for minute in (1, 2, 3):
            await proc.handle(reading(50, minute))
        assert store.deferred == 3
        stored = await StateStore(await bus.key_value(BUCKET)).load(PID)
        assert stored.revision == written.revision  # nothing written for them
        kept = await store.load(PID)
        assert kept.state is not None and kept.state.readings_at == T0 + timedelta(minutes=3)
        # A moved level is written at once, with the times kept so far.
        await proc.handle(reading(49, 4))
        stored = await StateStore(await bus.key_value(BUCKET)).load(PID)
        assert stored.state is not None and stored.state.supplies["1.1"].last_percent == 49
        assert stored.state.readings_at == T0 + timedelta(minutes=4)
        # Past the touch interval a steady reading is written too.
        store.mirror.touch_s = 0.0
        await proc.handle(reading(49, 5))
        stored = await StateStore(await bus.key_value(BUCKET)).load(PID)
        assert stored.state is not None and stored.state.readings_at == T0 + timedelta(minutes=5)
    finally:
        await store.stop()


async def test_a_steady_reading_kept_in_memory_is_written_at_stop(bus: Bus) -> None:
    store = StateStore(await bus.key_value(BUCKET))
    await store.start()
    proc = Processor(bus, store, Context(source="a1"))
    await proc.handle(reading(50, 0))
    await proc.handle(reading(50, 1))
    assert store.deferred == 1
    await store.stop()
    stored = await StateStore(await bus.key_value(BUCKET)).load(PID)
    assert stored.state is not None and stored.state.readings_at == T0 + timedelta(minutes=1)


async def test_a_crossing_after_steady_readings_is_published_once(bus: Bus) -> None:
    store = StateStore(await bus.key_value(BUCKET))
    await store.start()
    try:
        proc = Processor(bus, store, Context(source="a1"))
        for minute, percent in enumerate([30, 30, 30, 19, 19, 19]):
            await proc.handle(reading(percent, minute))
        assert [getattr(e, "rule", None) for e in alerts(await published(bus))] == ["low"]
        stored = await StateStore(await bus.key_value(BUCKET)).load(PID)
        assert stored.state is not None and f"{PID}:1.1:low" in stored.state.alerts
    finally:
        await store.stop()


async def test_another_replicas_write_replaces_a_steady_state_kept_in_memory(bus: Bus) -> None:
    """Replica a1 keeps a steady reading in memory; a2 raises an alert meanwhile; a1 sees it."""
    a1 = StateStore(await bus.key_value(BUCKET))
    await a1.start()
    try:
        p1 = Processor(bus, a1, Context(source="a1"))
        await p1.handle(reading(30, 0))
        await p1.handle(reading(30, 1))
        assert a1.deferred == 1
        a2 = StateStore(await bus.key_value(BUCKET))
        await Processor(bus, a2, Context(source="a2")).handle(reading(19, 2))

        async def a1_sees_the_alert() -> bool:
            st = (await a1.load(PID)).state
            return st is not None and f"{PID}:1.1:low" in st.alerts

        await eventually(a1_sees_the_alert, timeout_s=10)
        # Back up (a new level): a1 resolves the alert a2 raised, on a2's state.
        await p1.handle(reading(25, 3))
        rules = [(type(e).__name__, getattr(e, "rule", None)) for e in alerts(await published(bus))]
        assert rules == [("ThresholdCrossed", "low"), ("AlertResolved", "low")]
    finally:
        await a1.stop()
