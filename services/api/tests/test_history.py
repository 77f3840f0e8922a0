"""Attention-first fleet page from the stored status; readings API at each resolution."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_admin, in_tx
from tonerwatch_api.domain.history import level_history
from tonerwatch_api.domain.printers import fleet_page, get_printer, printers_out
from tonerwatch_api.domain.retention import RetentionPolicy, maintain
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    AlertResolved,
    PrinterConfigured,
    PrinterUnreachable,
    SupplyReading,
    ThresholdCrossed,
)

from .conftest import hp_supplies

ADMIN_PW = "correct horse battery staple"


def small_fleet(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    """Four printers, one per status: offline, attention (yellow 8%), pending, paused."""
    for pid, name in (("p-a", "Accounts"), ("p-b", "Boardroom"), ("p-c", "Canteen")):
        apply_now(db, configured(printer_id=pid, name=name, port=16100 + ord(pid[-1])))
    apply_now(db, configured(printer_id="p-d", name="Depot", port=16200, monitored=False))
    apply_now(db, reading(printer_id="p-b"))  # HP M479 with yellow at 8%: low
    apply_now(db, reading(printer_id="p-c"))
    apply_now(
        db,
        PrinterUnreachable(
            source="poller",
            site_id="default",
            printer_id="p-c",
            address="127.0.0.1",
            consecutive_failures=3,
            reason="timeout after 3 retries",
        ),
    )


def test_fleet_page_puts_offline_then_attention_first_and_counts_the_whole_fleet(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    small_fleet(db, configured, reading)
    page = in_tx(db, lambda s: fleet_page(s, "default", limit=2))
    assert [(p.id, p.status) for p in page.printers] == [("p-c", "offline"), ("p-b", "attention")]
    assert page.total == 4
    assert page.counts == {"offline": 1, "attention": 1, "pending": 1, "paused": 1}
    rest = in_tx(db, lambda s: fleet_page(s, "default", offset=2, limit=2))
    assert [(p.id, p.status) for p in rest.printers] == [("p-a", "pending"), ("p-d", "paused")]
    found = in_tx(db, lambda s: fleet_page(s, "default", search="board"))
    assert [p.id for p in found.printers] == ["p-b"] and found.counts == {"attention": 1}


def test_stored_status_follows_alerts_raised_and_resolved(
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(db, configured())
    full = hp_supplies()[:3]  # black, cyan, magenta all well above any threshold
    apply_now(db, reading(supplies=full))
    assert in_tx(db, lambda s: fleet_page(s, "default")).counts == {"ok": 1}
    crossed = ThresholdCrossed(
        source="alerter",
        site_id="default",
        printer_id="p-hp479",
        alert_id="p-hp479:toner:1",
        rule="toner_low",
        severity="critical",
        message="Black toner empty soon",
        supply_index="1",
    )
    apply_now(db, crossed)
    assert in_tx(db, lambda s: fleet_page(s, "default")).counts == {"critical": 1}
    apply_now(
        db,
        AlertResolved(
            source="alerter",
            site_id="default",
            printer_id="p-hp479",
            alert_id="p-hp479:toner:1",
            rule="toner_low",
        ),
    )
    assert in_tx(db, lambda s: fleet_page(s, "default")).counts == {"ok": 1}


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(pg, bus, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        r = await c.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PW})
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield c


async def test_readings_api_answers_raw_hourly_and_auto_resolution(
    pg: Engine,
    client: httpx.AsyncClient,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    apply_now(pg, configured(occurred_at=hour - timedelta(hours=1)))
    for minute, black in ((5, 50.0), (25, 48.0), (45, 46.0)):
        at = hour + timedelta(minutes=minute)
        apply_now(pg, reading(occurred_at=at, supplies=hp_supplies(black=black)))
    await maintain(pg, RetentionPolicy())
    url = "/api/v1/printers/p-hp479/readings"
    since = (hour - timedelta(hours=1)).isoformat()
    raw = await client.get(url, params={"since": since, "resolution": "raw"})
    assert raw.status_code == 200, raw.text
    items = raw.json()["items"]
    assert raw.json()["next_cursor"] is None
    assert [r["percent"] for r in items if r["supply_index"] == "1"] == [50.0, 48.0, 46.0]
    # Pages of 7 points end between readings (5 supplies each): 5, 5, 5; never amid one.
    pages: list[list[dict[str, object]]] = []
    cursor = None
    for _ in range(5):
        params = {"since": since, "resolution": "raw", "limit": 7, "sort": "-occurred_at"}
        got = (
            await client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        ).json()
        pages.append(got["items"])
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [5, 5, 5]
    blacks = [r["percent"] for p in pages for r in p if r["supply_index"] == "1"]
    assert blacks == [46.0, 48.0, 50.0]  # newest first
    assert sorted((r["occurred_at"], r["supply_index"]) for p in pages for r in p) == sorted(
        (r["occurred_at"], r["supply_index"]) for r in items
    )
    # One reading alone is more than the page: it comes whole, not cut.
    one = (await client.get(url, params={"since": since, "resolution": "raw", "limit": 2})).json()
    assert len(one["items"]) == 5 and one["next_cursor"]
    hourly = await client.get(url, params={"since": since, "resolution": "hourly"})
    (black,) = [r for r in hourly.json()["items"] if r["supply_index"] == "1"]
    assert black["resolution"] == "hourly" and black["count"] == 3
    assert (black["percent"], black["min_percent"], black["max_percent"]) == (48.0, 46.0, 50.0)
    assert (black["last_percent"], black["level"]) == (46.0, 46)
    year = await client.get(url, params={"since": (hour - timedelta(days=365)).isoformat()})
    assert {r["resolution"] for r in year.json()["items"]} == {"daily"}
    day = await client.get(url, params={"since": since})  # auto, four hours: raw
    assert {r["resolution"] for r in day.json()["items"]} == {"raw"}
    bad = await client.get(url, params={"resolution": "minutely"})
    assert bad.status_code == 422 and "resolution" in bad.text


def test_parallel_readings_of_one_printer_keep_the_newest_state(
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured())
    base = datetime.now(UTC) - timedelta(hours=1)
    events = [
        reading(occurred_at=base + timedelta(minutes=k), supplies=hp_supplies(black=90.0 - k))
        for k in range(24)
    ]
    random.Random(7).shuffle(events)
    # As the api-readings workers do: one transaction per event, four at a time.
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda e: apply_now(pg, e), events)) == {"applied"}
    printer = in_tx(pg, lambda s: get_printer(s, "default", "p-hp479"))
    assert printer.last_seen_at == base + timedelta(minutes=23)
    out = in_tx(pg, lambda s: printers_out(s, [printer])[0])
    assert {s.index: s.percent for s in out.supplies}["1"] == 67.0
    points = in_tx(
        pg,
        lambda s: level_history(s, "p-hp479", base, base + timedelta(hours=1), "raw", 1000),
    )
    assert len(points) == 24 * 5
