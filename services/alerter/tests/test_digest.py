"""Daily digest on a real JetStream KV and a real SMTP server; the clock is moved, nothing waits a day."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from tonerwatch_alerter.channels import digest as dg
from tonerwatch_alerter.channels.digest import Digest, due_day
from tonerwatch_alerter.channels.mail import MailConfig, MailSender
from tonerwatch_alerter.state import PrinterLabel
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import AlertResolved, ThresholdCrossed

from ._smtp import Inbox, free_port, smtp_server

DAY1 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 07:00 in Berlin


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def route(port: int, **kw: object) -> MailConfig:
    return MailConfig.model_validate(
        {
            "name": "facilities",
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "sender": "tonerwatch@example.org",
            "recipients": ["facilities@example.org"],
            "site_recipients": {"branch-ost": ["ost@example.org"]},
            "digest_at": "07:30",
            "digest_timezone": "Europe/Berlin",
            "attempts": 1,
            "timeout_s": 5,
            **kw,
        }
    )


def low(printer: str, site: str, colour: str, percent: float, at: datetime) -> ThresholdCrossed:
    return ThresholdCrossed(
        source="alerter-test",
        site_id=site,
        printer_id=printer,
        alert_id=f"{printer}:1.{len(colour)}:low",
        rule="low",
        severity="warning",
        supply_index=f"1.{len(colour)}",
        supply_description=f"{colour} Toner",
        part_number=f"TN-423{colour[0]}",
        percent=percent,
        threshold=20,
        days_to_empty=6,
        message=f"Low toner: {printer} — {colour} {percent:g}%, about 6 days left",
        occurred_at=at,
    )


async def no_label(printer_id: str) -> PrinterLabel | None:
    return None


def digest_for(
    bus: Bus, kv: Any, port: int, clock: Clock, instance: str = "a1", **kw: object
) -> Digest:
    labels: Callable[[str], Awaitable[PrinterLabel | None]] = no_label
    sender = MailSender(route(port, **kw), labels=labels)
    return Digest(sender, kv, instance=instance, clock=clock)


def test_due_day_respects_the_route_time_zone() -> None:
    sender = MailSender(route(25))
    night = DAY1 - timedelta(hours=5)
    assert due_day(DAY1, sender, night, None) is None  # 07:00 Berlin, digest at 07:30
    at = DAY1 + timedelta(minutes=31)
    assert due_day(at, sender, night, None) == at.date()
    assert due_day(at, sender, night, at.date()) is None  # already sent today
    # Collected after today's digest time: tomorrow's digest.
    assert due_day(at + timedelta(hours=5), sender, at, None) is None
    assert due_day(at + timedelta(days=1), sender, at, None) == (at + timedelta(days=1)).date()
    assert due_day(at, sender, None, None) is None  # nothing collected
    assert MailSender(route(25, digest_at=None)).config.digest_at is None
    assert route(25).digest_at == time(7, 30)


async def test_one_digest_per_site_at_the_set_hour_with_every_alert(bus: Bus) -> None:
    kv = await bus.key_value(dg.BUCKET)
    clock = Clock(DAY1 - timedelta(hours=20))
    inbox = Inbox()
    with smtp_server(inbox) as port:
        digest = digest_for(bus, kv, port, clock)
        for event in (
            low("brother-mfc-l8900cdw-02", "hq", "Cyan", 12, clock.now),
            low("brother-mfc-l8900cdw-02", "hq", "Yellow", 18, clock.now + timedelta(hours=2)),
            low("ricoh-sp-c261-01", "branch-ost", "Black", 9, clock.now + timedelta(hours=3)),
        ):
            await digest.collect(event)
            await digest.collect(event)  # redelivered: collected once
        resolved = AlertResolved(
            source="t",
            site_id="hq",
            printer_id="brother-mfc-l8900cdw-02",
            alert_id="brother-mfc-l8900cdw-02:1.6:low",
            rule="low",
            message="Toner replaced: brother-mfc-l8900cdw-02 — Yellow 18% → 100%",
            occurred_at=clock.now + timedelta(hours=4),
        )
        await digest.collect(resolved)
        # Evening, night, 07:29 Berlin: nothing goes out.
        for hours in (4, 12, 20.4):
            clock.now = DAY1 - timedelta(hours=20) + timedelta(hours=hours)
            assert await digest.flush() == 0
        assert inbox.messages == []
        clock.now = DAY1 + timedelta(minutes=30)
        assert await digest.flush() == 2
        # Later that day, and on a second replica: nothing twice.
        clock.now += timedelta(hours=3)
        assert await digest.flush() == 0
        assert await digest_for(bus, kv, port, clock, instance="a2").flush() == 0
    by_to = {m["To"]: m for m in inbox.messages}
    assert set(by_to) == {"facilities@example.org", "ost@example.org"}
    hq = by_to["facilities@example.org"]
    assert hq["Subject"] == "TonerWatch daily digest, site hq, 2026-03-02: 2 alerts, 1 resolved"
    assert hq["Message-ID"] == "<digest.facilities.hq.2026-03-02@tonerwatch>"
    text = hq.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "Low toner: brother-mfc-l8900cdw-02 — Cyan 12%, about 6 days left" in body
    assert "part number TN-423C" in body
    assert "Resolved: Toner replaced" in body
    assert "http://127.0.0.1:8080/printers/brother-mfc-l8900cdw-02" in body
    ost = by_to["ost@example.org"]
    assert ost["Subject"].endswith("site branch-ost, 2026-03-02: 1 alert")


async def test_digest_with_smtp_down_is_sent_later_exactly_once(bus: Bus) -> None:
    kv = await bus.key_value(dg.BUCKET)
    clock = Clock(DAY1 - timedelta(hours=2))
    port = free_port()
    digest = digest_for(bus, kv, port, clock)
    await digest.collect(low("kyocera-ecosys-p2135dn-04", "hq", "Black", 7, clock.now))
    clock.now = DAY1 + timedelta(minutes=45)
    assert await digest.flush() == 0  # nobody listening on the port: kept, claimed
    # Collected while the digest was being sent: kept for tomorrow, not lost.
    await digest.collect(low("kyocera-ecosys-p2135dn-04", "hq", "Black", 3, clock.now))
    # Another replica leaves a fresh claim alone.
    assert await digest_for(bus, kv, port, clock, instance="a2").flush() == 0
    inbox = Inbox()
    with smtp_server(inbox, port=port):
        clock.now += timedelta(minutes=1)
        assert await digest.flush() == 1
        assert await digest.flush() == 0
        [today] = inbox.messages
        body = today.get_body(("plain",))
        assert body is not None and "Black 7%" in body.get_content()
        assert "Black 3%" not in body.get_content()
        clock.now += timedelta(days=1)
        assert await digest.flush() == 1
    tomorrow = inbox.messages[1].get_body(("plain",))
    assert tomorrow is not None and "Black 3%" in tomorrow.get_content()
    assert len(inbox.messages) == 2


async def test_stale_claim_of_a_dead_replica_is_taken_over(bus: Bus) -> None:
    kv = await bus.key_value(dg.BUCKET)
    clock = Clock(DAY1 - timedelta(hours=1))
    dead_port = free_port()
    dead = digest_for(bus, kv, dead_port, clock, instance="a1")
    await dead.collect(low("hp-m404dn-07", "hq", "Black", 11, clock.now))
    clock.now = DAY1 + timedelta(minutes=40)
    assert await dead.flush() == 0  # a1 claimed it, then "died"
    inbox = Inbox()
    with smtp_server(inbox) as port:
        other = digest_for(bus, kv, port, clock, instance="a2")
        assert await other.flush() == 0  # claim still fresh
        clock.now += timedelta(minutes=10)
        assert await other.flush() == 1
    [msg] = inbox.messages
    assert msg["Message-ID"] == "<digest.facilities.hq.2026-03-02@tonerwatch>"


async def test_a_printers_own_recipients_get_a_digest_of_its_alerts_only(bus: Bus) -> None:
    kv = await bus.key_value(dg.BUCKET)
    clock = Clock(DAY1 - timedelta(hours=2))
    extra = {
        "brother-mfc-l8900cdw-02": ("finance@example.org", "Facilities@example.org"),
        "ricoh-sp-c261-01": ("finance@example.org",),
        "hp-m404dn-07": ("reception@example.org",),
    }

    async def printer_lookup(site: str, printer_id: str) -> tuple[str, ...]:
        return extra.get(printer_id, ()) if site == "hq" else ()

    inbox = Inbox()
    with smtp_server(inbox) as port:
        sender = MailSender(route(port), labels=no_label, printer_recipients=printer_lookup)
        digest = Digest(sender, kv, instance="a1", clock=clock)
        for event in (
            low("brother-mfc-l8900cdw-02", "hq", "Cyan", 12, clock.now),
            low("ricoh-sp-c261-01", "hq", "Black", 9, clock.now),
            low("hp-m404dn-07", "hq", "Black", 8, clock.now),
            low("canon-c3226-03", "hq", "Magenta", 15, clock.now),
        ):
            await digest.collect(event)
        clock.now = DAY1 + timedelta(minutes=31)
        assert await digest.flush() == 1
    by_to = {m["To"]: m for m in inbox.messages}
    # The site's list gets every alert; facilities@ is on it, so gets no second digest.
    assert set(by_to) == {
        "facilities@example.org",
        "finance@example.org",
        "reception@example.org",
    }
    whole = by_to["facilities@example.org"]
    assert whole["Message-ID"] == "<digest.facilities.hq.2026-03-02@tonerwatch>"
    finance = by_to["finance@example.org"]
    assert finance["Subject"] == "TonerWatch daily digest, site hq, 2026-03-02: 2 alerts"
    body = finance.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "brother-mfc-l8900cdw-02" in text and "ricoh-sp-c261-01" in text
    assert "hp-m404dn-07" not in text and "canon-c3226-03" not in text
    reception = by_to["reception@example.org"].get_body(("plain",))
    assert reception is not None and "hp-m404dn-07" in reception.get_content()
    assert "brother" not in reception.get_content()
    ids = {m["Message-ID"] for m in inbox.messages}
    assert len(ids) == 3  # each its own message
