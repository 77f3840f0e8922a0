"""Network impact of upstream sync: UpstreamSynced projected once per delivery, shown per site, printer and day."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_site, in_tx
from tonerwatch_api.db.usage import NetworkUsageDay
from tonerwatch_api.domain.network_usage import usage
from tonerwatch_api.projections.activity import run_activity
from tonerwatch_api.projections.network_usage import apply_usage
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    PrinterConfigured,
    SupplyReading,
    SupplyReadingBatch,
    UpstreamSynced,
)
from tonerwatch_shared.testing.infra import eventually

ADMIN_PW = "admin-password-123"


def synced(
    printer_id: str | None = "p-hp479", site_id: str = "default", **kw: Any
) -> UpstreamSynced:
    fields: dict[str, Any] = {
        "source": "syncer/test",
        "site_id": site_id,
        "printer_id": printer_id,
        "forwarded_event_id": uuid.uuid4(),
        "forwarded_type": "tonerwatch.threshold_crossed.v1",
        "status_code": 202,
        "attempts": 1,
        "bytes_sent": 1234,
        "bytes_received": 567,
    }
    fields.update(kw)
    return UpstreamSynced(**fields)


def test_sync_bytes_count_once_per_delivery_beside_polling(
    db: Engine,
    reading: Callable[..., SupplyReading],
    configured: Callable[..., PrinterConfigured],
) -> None:
    apply_now(db, configured())
    day = datetime(2026, 11, 20, 10, tzinfo=UTC)
    in_tx(db, lambda s: apply_usage(s, reading(occurred_at=day)))
    delivered = synced(occurred_at=day + timedelta(hours=1), attempts=3)
    assert in_tx(db, lambda s: apply_usage(s, delivered)) == "applied"

    def report() -> Any:
        return in_tx(db, lambda s: usage(s, "default", 2, today=day.date() + timedelta(days=1)))

    before = report()
    # A redelivery (the syncer re-forwarded after a lost ack) carries the same event id.
    assert in_tx(db, lambda s: apply_usage(s, delivered)) == "duplicate"
    assert report() == before
    # An event without a printer is the site's sync; another printer's sync lists that printer.
    in_tx(
        db,
        lambda s: apply_usage(s, synced(None, occurred_at=day, bytes_sent=800, bytes_received=200)),
    )
    in_tx(db, lambda s: apply_usage(s, synced("p-other", occurred_at=day + timedelta(days=1))))
    out = report()
    days = {d.day: d for d in out.days}
    assert days[day.date()].kinds["sync"].total == 1801 + 1000
    assert days[day.date()].kinds["sync"].operations == 2
    assert days[day.date() + timedelta(days=1)].kinds["sync"].total == 1801
    assert out.totals["sync"].bytes_sent == 1234 + 800 + 1234
    assert out.totals["sync"].bytes_received == 567 + 200 + 567
    assert out.totals["sync"].operations == 3
    assert out.totals["polling"].total == 410 + 2950  # the reading, untouched
    [site] = out.sites
    assert site.kinds["sync"].total == 1801 + 1000 + 1801
    hp, other = out.printers  # by bytes: the HP polled and synced, then the sync-only one
    assert hp.printer_id == "p-hp479" and hp.name == "Finance HP"
    assert (hp.polling.total, hp.sync.total, hp.sync.operations) == (3360, 1801, 1)
    assert other.printer_id == "p-other" and other.polling.operations == 0
    assert (other.sync.total, other.bytes_per_poll) == (1801, 0.0)
    foreign = in_tx(db, lambda s: usage(s, "other-tenant", 2, today=day.date()))
    assert foreign.printers == [] and foreign.totals["sync"].total == 0


def test_a_batch_of_usage_equals_applying_it_event_by_event(
    db: Engine, reading: Callable[..., SupplyReading]
) -> None:
    """apply_usage_batch (two statements) leaves the rows and outcomes apply_usage leaves one by one.

    Two sites, "a" applied event by event, "b" in one batch: readings of two printers over two
    days, a sync with and one without a printer, a sweep, a redelivery inside the batch, one
    event already applied before the batch and an event that counts nowhere.
    """
    from sqlmodel import select

    from tonerwatch_api.db.usage import NetworkUsageDay
    from tonerwatch_api.projections.network_usage import apply_usage_batch
    from tonerwatch_shared.events import DiscoveryFinished, PrinterRemoved

    day = datetime(2026, 11, 20, 23, 50, tzinfo=UTC)
    outcomes: dict[str, list[str]] = {}
    for site in ("a", "b"):
        in_tx(db, lambda s, site=site: ensure_site(s, site))
        before = reading(printer_id="p-hp", site_id=site, occurred_at=day)
        in_tx(db, lambda s, e=before: apply_usage(s, e))
        again = synced("p-hp", site_id=site, occurred_at=day)
        events = [
            before,  # applied before the batch
            reading(printer_id="p-hp", site_id=site, occurred_at=day + timedelta(minutes=5)),
            reading(printer_id="p-hp", site_id=site, occurred_at=day + timedelta(minutes=15)),
            reading(printer_id="p-ricoh", site_id=site, occurred_at=day, bytes_sent=77),
            again,
            synced(None, site_id=site, occurred_at=day, bytes_sent=800),
            again,  # redelivered inside the batch
            DiscoveryFinished(
                source="discovery",
                site_id=site,
                job_id=f"job-{site}",
                end_condition="completed",
                probed=254,
                total=254,
                live=4,
                printers=3,
                non_printers=1,
                elapsed_s=12.5,
                bytes_sent=5000,
                bytes_received=4000,
                occurred_at=day + timedelta(hours=1),
            ),
            PrinterRemoved(source="api", site_id=site, printer_id="p-hp"),
        ]
        if site == "a":
            outcomes[site] = [in_tx(db, lambda s, e=e: apply_usage(s, e)) for e in events]
        else:
            outcomes[site] = in_tx(db, lambda s, ev=events: apply_usage_batch(s, ev))

    def rows(site: str) -> list[tuple[object, ...]]:
        with Session(db) as s:
            found = s.exec(select(NetworkUsageDay).where(NetworkUsageDay.site_id == site)).all()
            return sorted(
                (r.day, r.printer_id, r.kind, r.bytes_sent, r.bytes_received, r.operations)
                for r in found
            )

    assert outcomes["b"] == outcomes["a"]
    assert outcomes["a"].count("applied") == 6
    assert rows("b") == rows("a")
    assert len(rows("a")) == 6  # two days for p-hp's polling, p-ricoh, two syncs, the sweep


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)

    def other_tenant(s: Session) -> None:
        ensure_site(s, "other-hq", "other")
        create_user(s, "bob", "bob-password-123", "admin", "other")

    in_tx(pg, other_tenant)
    app = create_app(pg, bus, Settings(session_secret="test-secret", cookie_secure=False))
    stop = asyncio.Event()
    # The api service runs these consumers beside the app; here the test does.
    consumers = asyncio.create_task(run_activity(pg, bus, stop))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
        ) as c:
            yield c
    finally:
        stop.set()
        await asyncio.wait_for(consumers, 20)


async def bearer(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_network_api_and_page_show_sync_from_the_bus(
    client: httpx.AsyncClient, bus: Bus, pg: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    apply_now(pg, configured())
    for event in (
        synced(),
        synced(None, bytes_sent=800, bytes_received=200),
        synced("p-bob", site_id="other-hq", bytes_sent=90_000, bytes_received=9_999),
    ):
        await bus.publish(event)
    admin = await bearer(client, "admin", ADMIN_PW)

    async def both_projected() -> bool:
        r = await client.get("/api/v1/network/usage?days=7", headers=admin)
        assert r.status_code == 200, r.text
        return bool(r.json()["totals"]["sync"]["operations"] == 2)

    await eventually(both_projected, timeout_s=15)
    body = (await client.get("/api/v1/network/usage?days=7", headers=admin)).json()
    assert body["totals"]["sync"] == {
        "kind": "sync",
        "bytes_sent": 2034,
        "bytes_received": 767,
        "operations": 2,
        "total": 2801,
    }
    assert body["days"][-1]["kinds"]["sync"]["total"] == 2801
    assert [s["kinds"]["sync"]["total"] for s in body["sites"]] == [2801]
    [printer] = body["printers"]
    assert printer["printer_id"] == "p-hp479" and printer["sync"]["total"] == 1801
    # Bob's tenant sees its own site's sync only.
    bob = await bearer(client, "bob", "bob-password-123")
    theirs = (await client.get("/api/v1/network/usage?days=7", headers=bob)).json()
    assert theirs["totals"]["sync"]["total"] == 99_999
    assert [p["printer_id"] for p in theirs["printers"]] == ["p-bob"]

    login = await client.get("/login?next=/network")
    token = re.search(r'name="login_csrf" value="([^"]+)"', login.text)
    assert token
    await client.post(
        "/login",
        data={
            "username": "admin",
            "password": ADMIN_PW,
            "login_csrf": token.group(1),
            "next": "/network",
        },
    )
    page = await client.get("/network?days=7")
    assert page.status_code == 200
    card = re.search(
        r"Upstream sync</h2>\s*<p class=\"big\">([^<]+)</p>\s*<p class=\"meta\">([^<]+)", page.text
    )
    assert card, page.text
    assert card.group(1) == "2.8 kB" and "2 deliveries" in card.group(2)
    row = re.search(r'<td class="sync">([^<]+)<div class="meta">([^<]+)</div>', page.text)
    assert row and row.group(1) == "1.8 kB" and row.group(2) == "1 delivery"
    assert "99.9 kB" not in page.text  # the other tenant's sync
    # Per site, each kind also per day: 2.8 kB of sync over the 7 days is 400 B a day.
    assert "over its 7 days" in page.text
    assert re.search(r'<div class="meta per-day">400 B/day</div>', page.text), page.text


async def test_the_retired_usage_consumer_is_drained_then_deleted_at_start(
    bus: Bus, db: Engine, reading: Callable[..., SupplyReading]
) -> None:
    """api-usage-polling (an installation from before has it) is drained, then deleted, at start.

    The old durable holds eight readings it has not applied: four pending and two more in one
    message, two delivered to an old api that stopped before acking them; one of them was already
    counted by api-readings (new code). After the start their bytes count exactly once each, the durable and its replay
    consumer are gone and its dead letter is api-readings's now; a second start changes nothing.
    """
    from nats.js.errors import NotFoundError

    from tonerwatch_api.projections.activity import (
        RETIRED,
        activity_consumers,
        retire_durables,
    )
    from tonerwatch_api.projections.projector import projections
    from tonerwatch_shared.bus import ConsumerSpec, dead_stream
    from tonerwatch_shared.nats_users import API_DURABLES, API_RETIRED_DURABLES

    stream, old = bus.subjects.events_stream, "api-usage-polling"
    # ack_wait 1 s: the old api's unacked deliveries come back within the drain.
    spec = ConsumerSpec(old, SupplyReading.subject_filter(bus.subjects), ack_wait_s=1.0)
    await bus.ensure_consumer(spec)
    await bus.ensure_dead_stream()
    readings = [
        reading(printer_id=f"p-{i % 2}", bytes_sent=100 + i, bytes_received=1000 + i)
        for i in range(6)
    ]
    for r in readings:
        assert await bus.publish(r)
    # Two more, published together (a poller of this release): both counted.
    together = [reading(printer_id=f"p-{i}", bytes_sent=i, bytes_received=i) for i in (7, 8)]
    assert await bus.publish(
        SupplyReadingBatch(site_id="default", source="poller-test", readings=tuple(together))
    )
    sub = await bus.js.pull_subscribe_bind(old, stream=stream)
    taken = await sub.fetch(2, timeout=5.0)  # the old api stops before acking them
    assert len(taken) == 2
    await bus.dead_letter(taken[0], old, "boom", 3, readings[0])  # set aside by the old api
    await sub.unsubscribe()
    info = await bus.js.consumer_info(stream, old)
    assert info.num_pending + info.num_ack_pending == 7
    in_tx(db, lambda s: apply_usage(s, readings[3]))  # counted by api-readings already

    def totals() -> tuple[int, int, int]:
        with Session(db) as s:
            rows = s.exec(select(NetworkUsageDay)).all()
        return (
            sum(r.bytes_sent for r in rows),
            sum(r.bytes_received for r in rows),
            sum(r.operations for r in rows),
        )

    stop = asyncio.Event()
    await retire_durables(bus, db, stop)
    everyone = [*readings, *together]
    expected = (
        sum(r.bytes_sent for r in everyone),
        sum(r.bytes_received for r in everyone),
        len(everyone),
    )
    assert totals() == expected
    with pytest.raises(NotFoundError):
        await bus.js.consumer_info(stream, old)
    with pytest.raises(NotFoundError):
        await bus.js.consumer_info(dead_stream(bus.subjects), f"{old}_replay")
    assert await bus.dead_letter_counts() == {"api-readings": 1}
    [moved] = await bus.dead_letters()
    assert (moved.consumer, moved.event_id) == ("api-readings", str(readings[0].event_id))
    assert moved.error == "boom" and moved.data == readings[0].to_bytes()
    raw = await bus.js.get_msg(dead_stream(bus.subjects), moved.seq)
    assert (raw.headers or {})["Tw-Moved-From"] == old

    await retire_durables(bus, db, stop)  # nothing left: nothing to do, no error
    assert totals() == expected
    assert await bus.dead_letter_counts() == {"api-readings": 1}
    # What the NATS permissions allow the api user is what it runs and what it retires.
    running = {spec.durable for spec, _ in activity_consumers(bus.subjects)}
    running |= {p.durable for p in projections()}
    assert running == set(API_DURABLES)
    assert set(RETIRED) == set(API_RETIRED_DURABLES) == {old}


async def test_a_retired_consumer_left_undrained_is_kept_for_the_next_start(
    bus: Bus, db: Engine, reading: Callable[..., SupplyReading]
) -> None:
    """A drain cut short (its bound) keeps the durable: nothing it holds is lost."""
    from tonerwatch_api.projections.activity import retire_durables
    from tonerwatch_shared.bus import ConsumerSpec

    stream, old = bus.subjects.events_stream, "api-usage-polling"
    await bus.ensure_consumer(ConsumerSpec(old, SupplyReading.subject_filter(bus.subjects)))
    assert await bus.publish(reading())
    await retire_durables(bus, db, asyncio.Event(), drain_s=0.0)
    info = await bus.js.consumer_info(stream, old)
    assert info.num_pending == 1
    await retire_durables(bus, db, asyncio.Event())
    with Session(db) as s:
        assert [r.operations for r in s.exec(select(NetworkUsageDay)).all()] == [1]


async def test_a_retired_consumer_is_drained_and_deleted_while_readings_keep_coming(
    bus: Bus, db: Engine, reading: Callable[..., SupplyReading]
) -> None:
    """Readings arriving all through the drain (a poller polling) never keep it from ending.

    Each fetch then brings something, so "drained" is decided from how far the acks reached, not
    only after an empty fetch; before, such a drain ran to its bound at every start and the
    durable stayed.
    """
    from nats.js.errors import NotFoundError

    from tonerwatch_api.projections.activity import retire_durables
    from tonerwatch_shared.bus import ConsumerSpec

    stream, old = bus.subjects.events_stream, "api-usage-polling"
    await bus.ensure_consumer(ConsumerSpec(old, SupplyReading.subject_filter(bus.subjects)))
    for _ in range(3):
        assert await bus.publish(reading())
    done = asyncio.Event()
    published = 0
    most = 3000  # bounded: at 50 a second, a minute of readings at the most

    async def keep_polling() -> None:
        nonlocal published
        while not done.is_set() and published < most:
            assert await bus.publish(reading())
            published += 1
            await asyncio.sleep(0.02)

    poller = asyncio.create_task(keep_polling())
    try:
        await retire_durables(bus, db, asyncio.Event(), drain_s=120.0)
        still_coming = not poller.done()
    finally:
        done.set()
        await poller
    assert still_coming, "the drain ended only after the readings stopped"
    with pytest.raises(NotFoundError):
        await bus.js.consumer_info(stream, old)


def test_the_usage_key_is_the_uuid5_it_always_was() -> None:
    """usage_key, built without a UUID object, stays str(uuid5(namespace, event id)): keys
    recorded by earlier versions (the retired api-usage-polling consumer) still match."""
    from tonerwatch_api.projections.network_usage import _USAGE_NS, usage_key

    for _ in range(200):
        event = synced()
        assert usage_key(event) == str(uuid.uuid5(_USAGE_NS, str(event.event_id)))
    fixed = synced(event_id=uuid.UUID("00000000-0000-0000-0000-000000000001"))
    assert usage_key(fixed) == "df6b2630-652f-5196-9b87-e69e8fd3594a"
