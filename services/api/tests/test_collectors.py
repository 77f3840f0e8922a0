"""Site collectors over REST: statuses projected (newest wins), offline marked, tenant-scoped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_admin, ensure_site, in_tx
from tonerwatch_api.projections.activity import activity_consumers
from tonerwatch_api.projections.collectors import apply_collector_event
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import CollectorStatus, Event, SiteOffline, SiteOnline

from .test_discovery_jobs import ADMIN_PW, bearer
from .test_ui import browser, log_in

__all__ = ["browser"]  # the UI test's fixture, used here


@pytest.fixture
async def client(db: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(db, ADMIN_PW)
    settings = Settings(
        session_secret="test-secret",
        admin_password=ADMIN_PW,
        cookie_secure=False,
        collector_offline_after_s=200.0,
    )
    app = create_app(db, bus, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        yield c


def status(collector: str, site: str, at: datetime, printers: int = 3) -> CollectorStatus:
    return CollectorStatus(
        source=f"collector/{collector}",
        site_id=site,
        collector_id=collector,
        version="0.1.0",
        printers=printers,
        queue_depth=1,
        started_at=at - timedelta(hours=1),
        occurred_at=at,
    )


def apply(engine: Engine, event: Event) -> str:
    return in_tx(engine, lambda s: apply_collector_event(s, event))


def test_the_api_consumes_the_whole_site_area() -> None:
    from tonerwatch_shared.subjects import Subjects

    filters = {spec.durable: spec.filter_subject for spec, _ in activity_consumers(Subjects())}
    assert filters["api-collectors"] == "tw.*.site.>"


async def test_collectors_listed_with_newest_status_stale_and_offline_marked(
    client: httpx.AsyncClient, db: Engine
) -> None:
    now = datetime.now(UTC)
    in_tx(db, lambda s: ensure_site(s, "elsewhere", "other-tenant"))
    assert apply(db, status("collector-north", "default", now, printers=5)) == "applied"
    # Made during a cut, delivered after the newer one: history, not the state.
    assert apply(db, status("collector-north", "default", now - timedelta(minutes=1))) == "ignored"
    assert apply(db, status("collector-south", "default", now - timedelta(minutes=10))) == "applied"
    assert apply(db, status("collector-far", "elsewhere", now)) == "applied"
    h = await bearer(client)
    r = await client.get("/api/v1/collectors?sort=id", headers=h)
    assert r.status_code == 200, r.text
    items = {c["id"]: c for c in r.json()["items"]}
    assert set(items) == {"collector-north", "collector-south"}  # not another tenant's
    north, south = items["collector-north"], items["collector-south"]
    assert (north["site_id"], north["printers"], north["queue_depth"]) == ("default", 5, 1)
    assert north["stale"] is False and north["offline_since"] is None
    assert south["stale"] is True  # silent for 10 minutes, limit 200 s

    offline = SiteOffline(
        source="alerter/a1",
        site_id="default",
        collector_id="collector-north",
        last_seen=now,
        offline_after_s=200.0,
    )
    assert apply(db, offline) == "applied"
    north = (await client.get("/api/v1/collectors?site=default&sort=id", headers=h)).json()
    assert north["items"][0]["stale"] is True and north["items"][0]["offline_since"]
    online = SiteOnline(
        source="alerter/a1",
        site_id="default",
        collector_id="collector-north",
        offline_event_id=offline.event_id,
        last_seen=now,
    )
    assert apply(db, online) == "applied"
    page = (await client.get("/api/v1/collectors?limit=1&sort=id", headers=h)).json()
    assert [c["id"] for c in page["items"]] == ["collector-north"]
    assert page["items"][0]["offline_since"] is None and page["next_cursor"]
    rest = (
        await client.get(
            f"/api/v1/collectors?limit=1&sort=id&cursor={page['next_cursor']}", headers=h
        )
    ).json()
    assert [c["id"] for c in rest["items"]] == ["collector-south"]


async def test_settings_page_shows_each_collector_with_stale_ones_marked(
    browser: httpx.AsyncClient, pg: Engine
) -> None:
    now = datetime.now(UTC)
    apply(pg, status("collector-north", "default", now, printers=7))
    apply(pg, status("collector-south", "default", now - timedelta(hours=2)))
    await log_in(browser)
    html = (await browser.get("/settings")).text
    section = html[
        html.index('id="collectors"') : html.index("</section>", html.index('id="collectors"'))
    ]
    north = section[section.index('data-collector="collector-north"') :].split("</tr>")[0]
    south = section[section.index('data-collector="collector-south"') :].split("</tr>")[0]
    assert "<td>7</td>" in north and "stale" not in north and "0.1.0" in north
    assert 'class="stale"' in south and "pill warning" in south and "ago" in south


def offline_of(collector: str, site: str, last_seen: datetime) -> SiteOffline:
    return SiteOffline(
        source="alerter/a1",
        site_id=site,
        collector_id=collector,
        last_seen=last_seen,
        offline_after_s=200.0,
        occurred_at=last_seen + timedelta(seconds=200),
    )


async def test_a_silent_collector_is_one_site_alert_in_the_list_resolved_when_it_returns(
    client: httpx.AsyncClient, db: Engine
) -> None:
    now = datetime.now(UTC)
    in_tx(db, lambda s: ensure_site(s, "elsewhere", "other-tenant"))
    apply(db, status("collector-north", "default", now - timedelta(minutes=5), printers=40))
    offline = offline_of("collector-north", "default", now - timedelta(minutes=5))
    assert apply(db, offline) == "applied"
    assert apply(db, offline) == "applied"  # redelivered: the row again, never a second alert
    # Another tenant's site going silent is that tenant's alert, not ours.
    assert apply(db, offline_of("collector-far", "elsewhere", now)) == "applied"
    h = await bearer(client)
    items = (await client.get("/api/v1/alerts", headers=h)).json()["items"]
    assert len(items) == 1, items  # one alert for the site, not one per printer (40)
    alert = items[0]
    assert (alert["rule"], alert["severity"], alert["site_id"]) == (
        "site_offline",
        "critical",
        "default",
    )
    assert alert["printer_id"] is None and alert["alert_id"] == str(offline.event_id)
    assert "collector-north" in alert["message"] and alert["resolved_at"] is None
    # Filters: by site, by kind `site`; `printer` (printer-wide) does not take it.
    by_site = (await client.get("/api/v1/alerts?site=default", headers=h)).json()["items"]
    assert [a["id"] for a in by_site] == [alert["id"]]
    assert (await client.get("/api/v1/alerts?site=elsewhere", headers=h)).json()["items"] == []
    by_kind = (await client.get("/api/v1/alerts?kind=site", headers=h)).json()["items"]
    assert [a["id"] for a in by_kind] == [alert["id"]]
    assert (await client.get("/api/v1/alerts?kind=printer", headers=h)).json()["items"] == []
    r = await client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=h)
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "admin", r.text

    online = SiteOnline(
        source="alerter/a1",
        site_id="default",
        collector_id="collector-north",
        offline_event_id=offline.event_id,
        last_seen=now,
        occurred_at=now,
    )
    assert apply(db, online) == "applied"
    assert (await client.get("/api/v1/alerts", headers=h)).json()["items"] == []
    every = (await client.get("/api/v1/alerts?open=false", headers=h)).json()["items"]
    assert [(a["id"], a["resolved_at"] is not None) for a in every] == [(alert["id"], True)]


async def test_the_alerts_page_names_the_silent_site_and_links_its_collectors(
    browser: httpx.AsyncClient, pg: Engine
) -> None:
    now = datetime.now(UTC)
    apply(pg, status("collector-north", "default", now - timedelta(minutes=5)))
    apply(pg, offline_of("collector-north", "default", now - timedelta(minutes=5)))
    await log_in(browser)
    html = (await browser.get("/alerts")).text
    row = html[html.index('class="sev-critical') :].split("</tr>")[0]
    assert 'href="/settings#collectors"' in row and "site default" in row
    assert "collector-north" in row and "Acknowledge" in row
