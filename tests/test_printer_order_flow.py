"""Per-printer order end to end through an outage (issue 16): api projections, alerter mail, syncer.

The api, the alerter and the syncer never import each other; this test runs all three in one
process on one NATS stream, with PostgreSQL, a real SMTP server (aiosmtpd) and a real HTTP portal
on loopback. The mail server and the portal are down while a printer's readings come in; one
reading is held back (a site link down) and published after newer ones, stamped by a replica whose
clock runs ahead, so only its seq says it is old. Every receiver must end at the printer's true
final state, nothing stale may be mailed or forwarded, and the counts must add up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_alerter.service import Settings as AlerterSettings
from tonerwatch_alerter.service import run as run_alerter
from tonerwatch_alerter.store import BUCKET, StateStore
from tonerwatch_api.db.models import Alert, Printer, ProcessedEvent, Reading, SupplyStateRow
from tonerwatch_api.db.tx import ensure_default_site, upgrade
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.outbox import Outbox
from tonerwatch_api.projections.printers import ProjectionOptions
from tonerwatch_api.projections.projector import Projector
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    PrinterConfigured,
    PrinterUnreachable,
    SupplyReading,
    SupplyReplaced,
    ThresholdCrossed,
    parse_event,
)
from tonerwatch_shared.kv import ModelKv
from tonerwatch_shared.printer.model import PrinterIdentity, Supply, SupplyKind
from tonerwatch_shared.settings import load_settings
from tonerwatch_shared.subjects import token
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_syncer.fleet import FLEET_BUCKET, KnownPrinter
from tonerwatch_syncer.service import Settings as SyncerSettings
from tonerwatch_syncer.service import run as run_syncer

PID = "p-brother-l8360"
# The api retries (rather than drops) a reading of a printer it does not know yet (any age).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
SEQ0 = 1_800_000_000_000_000  # the poller's seqs are microseconds since the epoch


class Inbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 Message accepted"


class Portal:
    """The upstream portal on loopback: answers 503 while down, keeps every event it took."""

    def __init__(self) -> None:
        self.down = True
        self.events: list[Event] = []

    async def handle_events(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.down:
            return web.Response(status=503)
        self.events.append(parse_event(body))
        return web.Response(status=202)

    async def handle_other(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503 if self.down else 202)


@contextlib.asynccontextmanager
async def portal_running() -> AsyncIterator[tuple[Portal, str]]:
    portal = Portal()
    app = web.Application()
    app.router.add_post("/tw/v1/events", portal.handle_events)
    app.router.add_post("/tw/v1/{doc}", portal.handle_other)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield portal, f"http://127.0.0.1:{port}/tw"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def service(run: Any, settings: Any, name: str) -> AsyncIterator[None]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert waiter in done, f"{name} not ready within 20 s"
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@contextlib.asynccontextmanager
async def projections(bus: Bus, engine: Engine) -> AsyncIterator[None]:
    projector = Projector(engine, bus, Outbox(engine, bus), Metrics(), ProjectionOptions())
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def reading(n: int, percent: float, minute: float | None = None) -> SupplyReading:
    """The printer's n-th poll (seq SEQ0 + n), its TN-3480 toner at percent."""
    return SupplyReading(
        source="poller/a",
        site_id="default",
        printer_id=PID,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="Brother", model="HL-L8360CDW"),
        supplies=(
            Supply(
                index="1.1",
                description="Black Toner TN-3480",
                part_number="TN-3480",
                kind=SupplyKind.TONER,
                colour="black",
                percent=percent,
            ),
        ),
        occurred_at=T0 + timedelta(minutes=n if minute is None else minute),
        seq=SEQ0 + n,
    )


def count(engine: Engine, model: type, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


async def test_a_reading_held_back_through_an_outage_changes_no_receiver(
    bus: Bus, nats_url: str, pg_engine: Engine
) -> None:
    upgrade(pg_engine)
    ensure_default_site(pg_engine, "default")
    common = {
        "nats_url": nats_url,
        "subject_root": bus.subjects.root,
        "stream_prefix": bus.subjects.stream_prefix,
        # Paused consumers look again within a second once the outage ends.
        "retry_base_s": 0.2,
        "retry_cap_s": 1.0,
    }
    smtp_port = free_tcp_port()  # nothing listens yet: the mail server is down
    alerter_settings = load_settings(
        AlerterSettings,
        **common,
        instance="order",
        mail=[
            {
                "name": "it",
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "sender": "tonerwatch@example.org",
                "recipients": ["it@example.org"],
                "attempts": 1,
                "timeout_s": 2,
                "max_backoff_s": 0,
                "replaced": True,
            }
        ],
    )
    # seq 1 ok, 2 low, 3 still low (held back), 4 a new cartridge, 5 ok, 6 unreachable.
    on_time = [reading(1, 30), reading(2, 15), reading(4, 97), reading(5, 96)]
    down = PrinterUnreachable(
        source="poller/a",
        site_id="default",
        printer_id=PID,
        address="127.0.0.1",
        consecutive_failures=3,
        reason="no answer to 3 polls",
        occurred_at=T0 + timedelta(minutes=6),
        seq=SEQ0 + 6,
    )
    # Held back behind a site link and stamped by a replica whose clock runs 10 minutes ahead:
    # its time says "newest", only its seq says it is old.
    held_back = reading(3, 12, minute=16)
    inbox = Inbox()
    async with portal_running() as (portal, url):
        syncer_settings = load_settings(
            SyncerSettings,
            **common,
            instance="order",
            sync_url=url,
            sync_allow_http=True,
            sync_secret="order-secret",
            sync_timeout_s=2,
        )
        async with (
            projections(bus, pg_engine),
            service(run_alerter, alerter_settings, "alerter"),
            service(run_syncer, syncer_settings, "syncer"),
        ):
            await bus.publish(
                PrinterConfigured(
                    source="api",
                    site_id="default",
                    printer_id=PID,
                    address="127.0.0.1",
                    name="Brother L8360",
                    occurred_at=T0,
                )
            )

            def configured() -> bool:
                return count(pg_engine, Printer, Printer.id == PID) == 1

            await eventually(configured, timeout_s=30)
            for event in [*on_time, down]:
                assert await bus.publish(event)
            states = StateStore(await bus.key_value(BUCKET))

            async def alerter_at(seq: int) -> bool:
                st = (await states.load(PID)).state
                return st is not None and st.watermark_seq == seq and not st.outbox

            await eventually(lambda: alerter_at(SEQ0 + 6), timeout_s=30)
            assert await bus.publish(held_back)

            def api_took(n: int) -> bool:
                return (
                    count(
                        pg_engine,
                        ProcessedEvent,
                        col(ProcessedEvent.event_id).in_(
                            [str(e.event_id) for e in [*on_time, down, held_back]]
                        ),
                    )
                    >= n
                )

            await eventually(lambda: api_took(6), timeout_s=30)
            # The alerter took the held-back reading too (its consumer is empty) and kept seq 6.
            consumer = f"{bus.subjects.stream_prefix}_alerter"

            async def alerter_drained() -> bool:
                info = await bus.js.consumer_info(bus.subjects.events_stream, consumer)
                return info.num_pending == 0 and info.num_ack_pending == 0

            await eventually(alerter_drained, timeout_s=30)
            assert await alerter_at(SEQ0 + 6)
            assert inbox.messages == [] and portal.events == []  # both still down
            # The outage ends.
            smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
            smtp.start()
            portal.down = False
            try:

                def delivered() -> tuple[int, int] | None:
                    got = (len(inbox.messages), len(portal.events))
                    return None if min(got) < 4 else got

                try:
                    await eventually(delivered, timeout_s=60)
                except AssertionError:
                    raise AssertionError(
                        f"mails {[m['Subject'] for m in inbox.messages]}, portal "
                        f"{[(type(e).__name__, getattr(e, 'rule', None)) for e in portal.events]}"
                    ) from None
                await asyncio.sleep(2.0)  # a repeat or a stale one would show up now
            finally:
                smtp.stop()
    # What the alerter published: one crossing (seq 2), the swap and the clearing (seq 4), the
    # printer unreachable (seq 6); nothing from the held-back reading.
    alert_events = [e for e in portal.events if isinstance(e, ThresholdCrossed | AlertResolved)]
    swaps = [e for e in portal.events if isinstance(e, SupplyReplaced)]
    assert sorted((type(e).__name__, e.rule, e.seq) for e in alert_events) == [
        ("AlertResolved", "low", SEQ0 + 4),
        ("ThresholdCrossed", "low", SEQ0 + 2),
        ("ThresholdCrossed", "unreachable", SEQ0 + 6),
    ]
    assert [s.seq for s in swaps] == [SEQ0 + 4]
    # In = out: 4 alert events published, 4 mailed once, 4 forwarded once.
    assert len(inbox.messages) == 4
    assert len({m["Message-ID"] for m in inbox.messages}) == 4
    assert len({e.event_id for e in portal.events}) == len(portal.events) == 4
    # The portal's last word on each alert is the true final state.
    last = {e.alert_id: type(e).__name__ for e in alert_events}
    assert last == {
        f"{PID}:1.1:low": "AlertResolved",
        f"{PID}:printer:unreachable": "ThresholdCrossed",
    }
    # The api: every reading in the history (5 in, 5 rows), the current level and status those
    # of the newest seq, the low alert resolved, unreachable open.
    assert count(pg_engine, Reading, Reading.printer_id == PID) == 5
    with Session(pg_engine) as s:
        black = s.get(SupplyStateRow, (PID, "1.1"))
        printer = s.get(Printer, PID)
        alerts = {a.rule: a.resolved_at is not None for a in s.exec(select(Alert)).all()}
    assert black is not None and (black.percent, black.seq) == (96, SEQ0 + 5)
    assert printer is not None and printer.reachable is False and printer.status_seq == SEQ0 + 6
    assert alerts == {"low": True, "unreachable": False}
    # The syncer's fleet (what the daily snapshot and meter reads are made of): the same.
    fleet = ModelKv(await bus.key_value(FLEET_BUCKET), KnownPrinter)
    known = (await fleet.read(token(PID))).value
    assert known is not None
    assert [s.percent for s in known.entry.supplies] == [96]
    assert known.entry.reachable is False
    assert (known.read_seq, known.status_seq) == (SEQ0 + 5, SEQ0 + 6)
