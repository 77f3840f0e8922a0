"""Alert settings from the web UI (AlertSettingsConfigured) on a real NATS: kept per site, applied."""

from __future__ import annotations

from datetime import timedelta

from tonerwatch_alerter import site_settings as ss
from tonerwatch_alerter.engine import Context
from tonerwatch_alerter.rules import AlertRules, Layer, Resolved
from tonerwatch_alerter.site_settings import SiteSettings, rules_of
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    AlertLimits,
    AlertSettingsConfigured,
    ScopedAlertLimits,
    ThresholdCrossed,
)
from tonerwatch_shared.printer.model import SupplyKind
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually

from ._smtp import Inbox, free_port, smtp_server
from .test_service import PID, T0, alerter, alerts, feed, published, reading, settled


def configured(revision: int, **kw: object) -> AlertSettingsConfigured:
    return AlertSettingsConfigured.model_validate(
        {"source": "api-test", "site_id": "hq", "revision": revision, **kw}
    )


def test_configured_site_wins_over_environment_and_printer_over_site() -> None:
    env = AlertRules(sites={"hq": Layer(low_percent=25)})
    ev = configured(
        1,
        low_percent=30,
        lead_time_days=10,
        kinds={"ink": AlertLimits(low_percent=40)},
        printers={PID: ScopedAlertLimits(critical_percent=8, kinds={"toner": {"low_percent": 12}})},
    )
    ctx = Context(base=Resolved(), rules=env, configured=rules_of(ev))
    other = ctx.limits("hq", "canon-ir-c3226-01", SupplyKind.TONER)
    assert (other.low_percent, other.critical_percent, other.lead_time_days) == (30, 5, 10)
    assert ctx.limits("hq", "canon-ir-c3226-01", SupplyKind.INK).low_percent == 40
    mine = ctx.limits("hq", PID, SupplyKind.TONER)
    assert (mine.low_percent, mine.critical_percent, mine.lead_time_days) == (12, 8, 10)
    # Unset fields keep what the environment says; another site is untouched.
    assert ctx.limits("warehouse", "x", SupplyKind.TONER).low_percent == 20
    assert Context(rules=env).limits("hq", PID, SupplyKind.TONER).low_percent == 25


async def test_newest_revision_is_kept_and_redeliveries_change_nothing(bus: Bus) -> None:
    store = SiteSettings(await bus.key_value(ss.BUCKET))
    assert await store.load("hq") is None
    second = configured(2, low_percent=30, recipients=["hq-lead@example.org"])
    assert await store.store(second)
    assert not await store.store(configured(1, low_percent=10))  # late, older revision
    assert not await store.store(second)  # redelivered
    assert await store.recipients("hq") == ("hq-lead@example.org",)
    assert (await store.rules("hq")).sites["hq"].low_percent == 30
    assert await store.store(configured(3))
    assert await store.recipients("hq") == ()
    assert await store.store(configured(4, printer_recipients={PID: ["fiona@example.org"]}))
    assert await store.printer_recipients("hq", PID) == ("fiona@example.org",)
    assert await store.printer_recipients("hq", "other-printer") == ()
    assert await store.printer_recipients("warehouse", PID) == ()


async def test_low_at_thirty_from_the_web_ui_raises_at_28_and_mails_the_site_list(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    port = free_port()
    route = {
        "name": "it",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "tonerwatch@example.org",
        "recipients": ["it@example.org"],
        "attempts": 2,
        "timeout_s": 2,
    }
    inbox = Inbox()
    with smtp_server(inbox, port=port):
        async with alerter(nats_url, subjects, mail=[route]):
            first = reading(35, 0)
            await feed(bus, [first])
            await settled(bus, PID, first)
            settings = configured(
                1, low_percent=30, recipients=["hq-lead@example.org", "IT@example.org"]
            )
            await feed(bus, [settings])
            kv = SiteSettings(await bus.key_value(ss.BUCKET))

            async def kept() -> bool:
                got = await kv.load("hq")
                return got is not None and got.revision == 1

            await eventually(kept, timeout_s=15)
            second = reading(28, 1)
            await feed(bus, [second])
            await settled(bus, PID, second)
            await eventually(lambda: len(inbox.messages) >= 1, timeout_s=15)
    [low] = [e for e in alerts(await published(bus)) if isinstance(e, ThresholdCrossed)]
    assert (low.rule, low.percent, low.threshold) == ("low", 28, 30)
    [msg] = inbox.messages
    # The route's own address and the web UI's; it@ named twice is mailed once.
    assert msg["To"] == "it@example.org, hq-lead@example.org"
    assert sorted(inbox.envelopes[0][1]) == ["hq-lead@example.org", "it@example.org"]


async def test_settings_survive_a_restart_of_the_alerter(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    async with alerter(nats_url, subjects):
        await feed(bus, [configured(1, low_percent=30)])
        kv = SiteSettings(await bus.key_value(ss.BUCKET))

        async def kept() -> bool:
            return await kv.load("hq") is not None

        await eventually(kept, timeout_s=15)
    later = reading(29, 5)
    async with alerter(nats_url, subjects, instance="a2"):
        await feed(bus, [later])
        await settled(bus, PID, later)
    [low] = [e for e in alerts(await published(bus)) if isinstance(e, ThresholdCrossed)]
    assert low.threshold == 30
    assert low.occurred_at == T0 + timedelta(minutes=5)


async def test_a_group_responsible_user_is_mailed_about_the_groups_printer_only(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    """fiona answers for a group holding PID: its low toner reaches her; another printer's of the
    same site does not, while the site's list gets both."""
    other = "canon-ir-c3226-01"
    port = free_port()
    route = {
        "name": "it",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "tonerwatch@example.org",
        "recipients": ["it@example.org"],
        "attempts": 2,
        "timeout_s": 2,
    }
    inbox = Inbox()
    with smtp_server(inbox, port=port):
        async with alerter(nats_url, subjects, mail=[route]):
            settings = configured(1, printer_recipients={PID: ["fiona@example.org"]})
            await feed(bus, [settings])
            kv = SiteSettings(await bus.key_value(ss.BUCKET))

            async def kept() -> bool:
                return await kv.load("hq") is not None

            await eventually(kept, timeout_s=15)
            full = [reading(60, 0), reading(60, 0, printer_id=other)]
            await feed(bus, full)
            for event in full:
                await settled(bus, event.printer_id, event)
            low = [reading(12, 5), reading(12, 5, printer_id=other)]
            await feed(bus, low)
            for event in low:
                await settled(bus, event.printer_id, event)
            await eventually(lambda: len(inbox.messages) >= 2, timeout_s=15)
    lows = [e for e in alerts(await published(bus)) if isinstance(e, ThresholdCrossed)]
    assert sorted(e.printer_id for e in lows) == sorted([PID, other])
    by_printer = {m["X-TonerWatch-Alert-Id"].split(":")[0]: m for m in inbox.messages}
    assert set(by_printer) == {PID, other}
    assert by_printer[PID]["To"] == "it@example.org, fiona@example.org"
    assert by_printer[other]["To"] == "it@example.org"
    envelopes = {tuple(sorted(rcpt)) for _, rcpt in inbox.envelopes}
    assert envelopes == {("fiona@example.org", "it@example.org"), ("it@example.org",)}
