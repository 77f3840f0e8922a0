"""Page counter history: the counters endpoint, the printer page chart and the meter readings CSV."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_site, in_tx
from tonerwatch_api.domain.retention import RetentionPolicy, maintain
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_api.ui.views import counter_chart
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured, SupplyReading
from tonerwatch_shared.printer.model import Counters

PW = "counter-admin-password"
BOB_PW = "bob-password-123"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY1 = TODAY - timedelta(days=2)
DAY2 = TODAY - timedelta(days=1)


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, PW)
    app = create_app(pg, bus, Settings(session_secret="counters", cookie_secure=False))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


async def bearer(c: httpx.AsyncClient, username: str = "admin", pw: str = PW) -> dict[str, str]:
    r = await c.post("/api/v1/auth/token", data={"username": username, "password": pw})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def pages(lifetime: int, colour: int) -> Counters:
    return Counters(lifetime_pages=lifetime, mono_pages=lifetime - colour, colour_pages=colour)


@pytest.fixture
async def fleet(
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    """An HP M479fdw of the default tenant polled over two days, and one of tenant acme."""

    def setup(s: Session) -> None:
        ensure_site(s, "acme-hq", "acme")
        create_user(s, "bob@acme", BOB_PW, "viewer", "acme")

    in_tx(pg, setup)
    apply_now(pg, configured(occurred_at=DAY1 - timedelta(hours=1), name="=cmd|' /C calc'!A0"))
    apply_now(pg, reading(occurred_at=DAY1 + timedelta(hours=10), counters=pages(12000, 2000)))
    apply_now(pg, reading(occurred_at=DAY1 + timedelta(hours=15), counters=pages(12100, 2030)))
    await maintain(pg, RetentionPolicy())  # day 1 rolled up into hourly and daily buckets
    # Day 2 stays raw (not rolled up yet): the daily answers must still include it.
    apply_now(pg, reading(occurred_at=DAY2 + timedelta(hours=9), counters=pages(12250, 2080)))
    apply_now(
        pg,
        configured(
            printer_id="p-acme", site_id="acme-hq", name="Acme Brother", address="127.0.0.2"
        ),
    )
    apply_now(
        pg,
        reading(
            printer_id="p-acme",
            site_id="acme-hq",
            occurred_at=DAY2 + timedelta(hours=11),
            counters=pages(500, 0),
        ),
    )


@pytest.mark.usefixtures("fleet")
async def test_counters_endpoint_returns_raw_readings_and_daily_buckets(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    url = "/api/v1/printers/p-hp479/counters"
    since = (DAY1 - timedelta(hours=2)).isoformat()
    raw = await client.get(url, headers=h, params={"since": since, "resolution": "raw"})
    assert raw.status_code == 200, raw.text
    assert set(raw.json()) == {"items", "next_cursor"} and raw.json()["next_cursor"] is None
    assert [(c["lifetime_pages"], c["colour_pages"]) for c in raw.json()["items"]] == [
        (12000, 2000),
        (12100, 2030),
        (12250, 2080),
    ]
    first = raw.json()["items"][0]
    assert first["mono_pages"] == 10000 and first["resolution"] == "raw"
    daily = (
        await client.get(url, headers=h, params={"since": since, "resolution": "daily"})
    ).json()["items"]
    assert [(c["occurred_at"][:10], c["lifetime_pages"], c["count"]) for c in daily] == [
        (DAY1.date().isoformat(), 12100, 2),
        (DAY2.date().isoformat(), 12250, 1),
    ]
    auto = (await client.get(url, headers=h, params={"since": since})).json()["items"]  # hourly
    assert {c["resolution"] for c in auto} == {"hourly"} and len(auto) == 3
    # A page at a time, newest first when asked: the next_cursor continues where it ended.
    newest = {"since": since, "resolution": "raw", "sort": "-occurred_at", "limit": 2}
    page1 = (await client.get(url, headers=h, params=newest)).json()
    assert [c["lifetime_pages"] for c in page1["items"]] == [12250, 12100]
    assert page1["next_cursor"]
    page2 = (
        await client.get(url, headers=h, params={**newest, "cursor": page1["next_cursor"]})
    ).json()
    assert [c["lifetime_pages"] for c in page2["items"]] == [12000]
    assert page2["next_cursor"] is None
    # A cursor is bound to its sort.
    wrong = await client.get(
        url, headers=h, params={**newest, "sort": "occurred_at", "cursor": page1["next_cursor"]}
    )
    assert wrong.status_code == 422 and "cursor" in wrong.text
    bob = await bearer(client, "bob@acme", BOB_PW)
    assert (await client.get(url, headers=bob)).status_code == 404
    bad = await client.get(url, headers=h, params={"since": TODAY.isoformat(), "until": since})
    assert bad.status_code == 422 and "since" in bad.json()["error"]


async def ui_login(c: httpx.AsyncClient) -> None:
    page = await c.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token
    r = await c.post(
        "/login",
        data={"username": "admin", "password": PW, "login_csrf": token.group(1), "next": "/"},
    )
    assert r.status_code == 303 and "tw_session" in r.headers["set-cookie"]


@pytest.mark.usefixtures("fleet")
async def test_printer_page_draws_the_page_counter_chart(client: httpx.AsyncClient) -> None:
    await ui_login(client)
    html = (await client.get("/printers/p-hp479")).text
    section = html.split('id="counters"', 1)[1].split("</section>", 1)[0]
    assert 'aria-label="Page counter over time"' in section
    lines = re.findall(r'<polyline points="([^"]+)"[^>]*><title>([^<]+)</title>', section)
    assert [t for _, t in lines] == ["Total pages", "Mono pages", "Colour pages"]
    total = [tuple(map(float, xy.split(","))) for xy in lines[0][0].split()]
    assert len(total) == 3 and total[0][1] > total[1][1] > total[2][1]  # rising: y goes up
    assert "12,250" in section and "250 pages in this period" in section
    dashboard = (await client.get("/")).text
    assert 'href="/api/v1/export/meters.csv"' in dashboard


def test_counter_chart_without_data_is_none_and_flat_counter_is_a_flat_line() -> None:
    assert counter_chart({}, DAY1, TODAY) is None
    flat = counter_chart({"lifetime_pages": [(DAY1, 500), (DAY2, 500)]}, DAY1, TODAY)
    assert flat is not None and flat.printed == 0
    assert flat.series[0].points == "0.0,100.0 300.0,100.0"


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.usefixtures("fleet")
async def test_meter_csv_one_row_per_printer_per_day_tenant_scoped_and_formula_safe(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    since = (DAY1 - timedelta(days=1)).isoformat()
    r = await client.get("/api/v1/export/meters.csv", headers=h, params={"since": since})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "tonerwatch-meters-" in r.headers["content-disposition"]
    rows = rows_of(r.text)
    assert [
        (x["printer_id"], x["date"], x["lifetime_pages"], x["mono_pages"], x["colour_pages"])
        for x in rows
    ] == [
        ("p-hp479", DAY1.date().isoformat(), "12100", "10070", "2030"),
        ("p-hp479", DAY2.date().isoformat(), "12250", "10170", "2080"),
    ]
    first = rows[0]
    assert first["name"] == "'=cmd|' /C calc'!A0"  # a spreadsheet shows it, never runs it
    assert (first["site_id"], first["serial"], first["model"]) == (
        "default",
        "CNB1M2N3P4",
        "HP Color LaserJet Pro MFP M479fdw",
    )
    raw = await client.get(
        "/api/v1/export/meters.csv", headers=h, params={"since": since, "resolution": "raw"}
    )
    assert [x["lifetime_pages"] for x in rows_of(raw.text)] == ["12000", "12100", "12250"]
    assert "read_at" in raw.text.splitlines()[0]
    month_end = await client.get(
        "/api/v1/export/meters.csv", headers=h, params={"since": since, "resolution": "month_end"}
    )
    billed = rows_of(month_end.text)
    months = sorted({f"{DAY1:%Y-%m}", f"{DAY2:%Y-%m}"})
    assert [x["period"] for x in billed] == months  # one row per month, at its last reading
    assert (billed[-1]["read_on"], billed[-1]["lifetime_pages"]) == (
        DAY2.date().isoformat(),
        "12250",
    )

    bob = await bearer(client, "bob@acme", BOB_PW)
    theirs = rows_of((await client.get("/api/v1/export/meters.csv", headers=bob)).text)
    assert [(x["printer_id"], x["site_id"], x["lifetime_pages"]) for x in theirs] == [
        ("p-acme", "acme-hq", "500")
    ]
    other_site = await client.get(
        "/api/v1/export/meters.csv", headers=h, params={"site": "acme-hq"}
    )
    assert other_site.status_code == 404
    too_long = await client.get(
        "/api/v1/export/meters.csv",
        headers=h,
        params={"since": (TODAY - timedelta(days=30)).isoformat(), "resolution": "raw"},
    )
    assert too_long.status_code == 422 and "7 days" in too_long.json()["error"]


def test_pages_printed_is_the_total_counters_rise_never_across_counters() -> None:
    one_poll = {
        "lifetime_pages": [(DAY1, 12_345)],
        "mono_pages": [(DAY1, 10_000)],
        "colour_pages": [(DAY1, 2_345)],
    }
    chart = counter_chart(one_poll, DAY1, TODAY)
    assert chart is not None and chart.printed == 0  # one poll: nothing printed yet
    two_days = {
        "lifetime_pages": [(DAY1, 12_345), (DAY2, 12_845)],
        "mono_pages": [(DAY1, 10_000), (DAY2, 10_300)],
    }
    chart = counter_chart(two_days, DAY1, TODAY)
    assert chart is not None and chart.printed == 500
    no_total = {"mono_pages": [(DAY1, 100), (DAY2, 130)], "colour_pages": [(DAY1, 50), (DAY2, 70)]}
    chart = counter_chart(no_total, DAY1, TODAY)
    assert chart is not None and chart.printed == 50
