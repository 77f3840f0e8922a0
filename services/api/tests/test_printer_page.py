"""The printer page and its API: interval in seconds, write-only SNMP access, poll now, trays,
thresholds in force and where they come from, and a chart resolution that fits the history."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import Printer
from tonerwatch_api.db.tx import ensure_admin
from tonerwatch_api.domain.history import history_start
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import (
    Counters,
    PollRequested,
    PrinterConfigured,
    SnmpCredentials,
    SupplyReading,
)
from tonerwatch_shared.printer.model import Tray
from tonerwatch_shared.sealing import Sealer, is_sealed

from .conftest import hp_supplies
from .test_rest import ADMIN_PW, bearer

V3_AUTH = "auth-passphrase-7731"
V3_PRIV = "priv-passphrase-9214"


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(session_secret="page-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(pg, bus, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


async def log_in(c: httpx.AsyncClient) -> None:
    page = await c.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token
    r = await c.post(
        "/login",
        data={"username": "admin", "password": ADMIN_PW, "login_csrf": token.group(1), "next": "/"},
    )
    assert r.status_code == 303


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


async def test_poll_interval_is_edited_in_seconds_and_30_s_survives_other_changes(
    client: httpx.AsyncClient, pg: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    apply_now(pg, configured(interval_s=30.0))
    await log_in(client)
    page = (await client.get("/printers/p-hp479")).text
    # 30 s shows as 30 (it showed as 0 minutes and then blocked saving anything).
    assert re.search(r'name="interval_s"[^>]*value="30"', page)
    r = await client.post(
        "/printers/p-hp479/settings",
        data={"csrf": csrf_of(page), "name": "Finance HP 2", "interval_s": "30", "monitored": "on"},
    )
    assert r.status_code == 303
    with Session(pg) as s:
        p = s.get(Printer, "p-hp479")
        assert p is not None and p.interval_s == 30.0 and p.name == "Finance HP 2"
    r = await client.post(
        "/printers/p-hp479/settings",
        data={"csrf": csrf_of(page), "interval_s": "45", "monitored": "on"},
    )
    with Session(pg) as s:
        p = s.get(Printer, "p-hp479")
        assert p is not None and p.interval_s == 45.0
    bad = await client.post(
        "/printers/p-hp479/settings",
        data={"csrf": csrf_of(page), "interval_s": "5", "monitored": "on"},
    )
    assert bad.status_code == 422


async def test_snmp_access_is_write_only_v3_from_the_form_and_v2c_by_patch(
    client: httpx.AsyncClient, pg: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    apply_now(pg, configured())
    h = await bearer(client)
    got = (await client.get("/api/v1/printers/p-hp479", headers=h)).json()
    assert got["snmp_access"]["security"] == "community" and got["snmp_access"]["version"] == "2c"
    assert "s3cret-community" not in str(got)

    await log_in(client)
    page = (await client.get("/printers/p-hp479")).text
    assert "s3cret-community" not in page and "a community of your own" in page
    r = await client.post(
        "/printers/p-hp479/snmp",
        data={
            "csrf": csrf_of(page),
            "version": "3",
            "community": "ignored-for-v3",
            "user": "tonerwatch",
            "auth_protocol": "SHA256",
            "auth_key": V3_AUTH,
            "priv_protocol": "AES",
            "priv_key": V3_PRIV,
        },
    )
    assert r.status_code == 303
    with Session(pg) as s:
        p = s.get(Printer, "p-hp479")
        assert p is not None and p.credentials is not None
        assert p.credentials["auth_key"] == V3_AUTH and p.credentials["priv_key"] == V3_PRIV
    got = (await client.get("/api/v1/printers/p-hp479", headers=h)).json()
    assert got["snmp_access"] == {
        "version": "3",
        "security": "authPriv",
        "user": "tonerwatch",
        "auth_protocol": "SHA256",
        "priv_protocol": "AES",
        "from_discovery": False,
    }
    page = (await client.get("/printers/p-hp479")).text
    assert V3_AUTH not in page and V3_PRIV not in page
    assert "v3 authPriv, user tonerwatch, SHA256/AES (keys set)" in page

    r = await client.patch(
        "/api/v1/printers/p-hp479",
        headers=h,
        json={"snmp": {"version": "2c", "community": "fleet-ro"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["snmp_access"]["security"] == "community"
    assert "fleet-ro" not in r.text
    audit = (await client.get("/api/v1/audit", headers=h)).text
    assert "fleet-ro" not in audit and V3_AUTH not in audit


async def test_poll_now_publishes_poll_requested_and_refuses_an_unmonitored_printer(
    client: httpx.AsyncClient,
    pg: Engine,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
) -> None:
    apply_now(pg, configured())
    h = await bearer(client)
    r = await client.post("/api/v1/printers/p-hp479/poll", headers=h)
    assert r.status_code == 202, r.text
    body = r.json()
    event = await wait_for_event(
        bus,
        bus.subjects.filter(sj.POLL_REQUESTED),
        lambda e: isinstance(e, PollRequested) and str(e.event_id) == body["event_id"],
        timeout_s=10,
    )
    assert isinstance(event, PollRequested)
    assert event.printer_id == "p-hp479" and event.requested_by == "admin"
    assert (await client.post("/api/v1/printers/p-nobody/poll", headers=h)).status_code == 404
    await client.patch("/api/v1/printers/p-hp479", headers=h, json={"monitored": False})
    refused = await client.post("/api/v1/printers/p-hp479/poll", headers=h)
    assert refused.status_code == 409


async def test_trays_and_paper_levels_are_in_the_api_and_on_the_page(
    client: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured())
    trays = (
        Tray(index="1", name="Tray 1 (bypass)", level=-3, max_capacity=100, media="Plain"),
        Tray(index="2", name="Tray 2", level=120, max_capacity=250, percent=48.0, media="A4"),
        Tray(index="3", name="Tray 3", level=0, max_capacity=550, percent=0.0),
    )
    apply_now(pg, reading(trays=trays))
    h = await bearer(client)
    got = (await client.get("/api/v1/printers/p-hp479", headers=h)).json()
    assert [t["name"] for t in got["trays"]] == ["Tray 1 (bypass)", "Tray 2", "Tray 3"]
    assert got["trays"][1]["percent"] == 48.0 and got["trays"][1]["media"] == "A4"
    await log_in(client)
    page = (await client.get("/printers/p-hp479")).text
    assert "Paper trays" in page
    assert "Tray 2" in page and "48% <small" in page and "(120/250 sheets)" in page
    assert "some paper" in page  # -3: the printer says "some", never a made-up figure


async def test_thresholds_in_force_name_their_layer(
    client: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured())
    apply_now(pg, reading())
    await log_in(client)
    page = (await client.get("/printers/p-hp479")).text
    # Nothing saved: the alerter's defaults, said to be defaults.
    assert re.search(r"Black Cartridge[^<]*</td>\s*<td>20% <small[^>]*>default", page)
    h = await bearer(client)
    r = await client.put(
        "/api/v1/sites/default/alert-settings",
        headers=h,
        json={
            "low_percent": 25,
            "kinds": {"waste_toner": {"low_percent": 10}},
            "printers": {
                "p-hp479": {"critical_percent": 3, "kinds": {"toner": {"lead_time_days": 21}}}
            },
        },
    )
    assert r.status_code == 200, r.text
    page = (await client.get("/printers/p-hp479")).text
    black = re.search(r"<tr><td>Black Cartridge.*?</tr>", page, re.S)
    assert black, page
    row = black.group(0)
    assert "25% <small" in row and ">site<" in row
    assert "3% <small" in row and ">this printer<" in row
    assert "21 days <small" in row and ">this printer, this kind<" in row
    waste = re.search(r"<tr><td>Toner Collection Unit.*?</tr>", page, re.S)
    assert waste and "10% <small" in waste.group(0) and ">site, this kind<" in waste.group(0)


async def test_a_new_printers_first_hour_is_charted_from_its_readings_not_one_bucket(
    client: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured())
    now = datetime.now(UTC)
    for minutes in (50, 40, 30, 20, 10):
        apply_now(pg, reading(occurred_at=now - timedelta(minutes=minutes)))
    with Session(pg) as s:
        start = history_start(s, "p-hp479", now - timedelta(days=14))
    assert start is not None and abs((start - (now - timedelta(minutes=50))).total_seconds()) < 1
    await log_in(client)
    page = (await client.get("/printers/p-hp479")).text
    assert 'id="chart-resolution">every reading<' in page
    first = re.search(r'<polyline points="([^"]+)"', page)
    assert first and len(first.group(1).split()) >= 5  # five readings, five points


SEAL_KEY = "printer-page-sealing-key-0123456789abcdef"


@pytest.fixture
async def sealed_client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    """The api with TONERWATCH_SECRET_KEY set, as `up` runs it."""
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(
        session_secret="page-secret",
        admin_password=ADMIN_PW,
        cookie_secure=False,
        secret_key=SEAL_KEY,
    )
    app = create_app(pg, bus, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


async def test_a_sealed_public_community_reads_as_the_default_and_v3_keys_are_stored_sealed(
    sealed_client: httpx.AsyncClient, pg: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    sealer = Sealer(SEAL_KEY)
    # A writer that sealed everything (a collector, an older discovery) sent "public" sealed.
    apply_now(pg, configured(credentials=SnmpCredentials(community=sealer.seal("public"))))
    with Session(pg) as s:
        p = s.get(Printer, "p-hp479")
        assert p is not None and p.credentials is not None
        assert p.credentials["community"] == "public"  # stored readable, like every "public"
    h = await bearer(sealed_client)
    got = (await sealed_client.get("/api/v1/printers/p-hp479", headers=h)).json()
    assert got["snmp_access"]["security"] == "default_community"

    # A community of the user's own, sealed: still "a community of your own", never shown.
    apply_now(pg, configured(credentials=SnmpCredentials(community=sealer.seal("fleet-ro"))))
    got = (await sealed_client.get("/api/v1/printers/p-hp479", headers=h)).json()
    assert got["snmp_access"]["security"] == "community"

    # v3 from the form, with a leftover v2c community: keys sealed at rest, no community kept.
    await log_in(sealed_client)
    page = (await sealed_client.get("/printers/p-hp479")).text
    r = await sealed_client.post(
        "/printers/p-hp479/snmp",
        data={
            "csrf": csrf_of(page),
            "version": "3",
            "community": "leftover-v2c",
            "user": "tonerwatch",
            "auth_protocol": "SHA256",
            "auth_key": V3_AUTH,
            "priv_protocol": "AES",
            "priv_key": V3_PRIV,
        },
    )
    assert r.status_code == 303
    with Session(pg) as s:
        p = s.get(Printer, "p-hp479")
        assert p is not None and p.credentials is not None
        stored = p.credentials
    assert V3_AUTH not in str(stored) and V3_PRIV not in str(stored)
    assert is_sealed(stored["auth_key"]) and is_sealed(stored["priv_key"])
    assert sealer.open(stored["auth_key"]) == V3_AUTH and sealer.open(stored["priv_key"]) == V3_PRIV
    assert stored["community"] == "public"
    page = (await sealed_client.get("/printers/p-hp479")).text
    assert "v3 authPriv, user tonerwatch, SHA256/AES (keys set)" in page
    assert V3_AUTH not in page and "tw-sealed" not in page

    # A "secret" that looks sealed would stay in the clear and never open: refused, naming the field.
    bad = await sealed_client.patch(
        "/api/v1/printers/p-hp479",
        headers=h,
        json={"snmp": {"version": "3", "user": "u", "auth_key": "tw-sealed:1:not-really"}},
    )
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "snmp"
    assert "not-really" not in bad.text


async def test_every_supply_carries_days_to_empty_and_its_band_in_the_api_and_on_the_page(
    client: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured())
    now = datetime.now(UTC)
    # Four days of an office's black toner: about 4 points a day in uneven jobs; cyan idle.
    black_level = 42.0
    for step, hours in enumerate(range(96, -1, -6)):
        if step:
            black_level -= (0.3, 1.9, 0.6, 1.2)[step % 4]
        apply_now(
            pg,
            reading(
                occurred_at=now - timedelta(hours=hours), supplies=hp_supplies(black=black_level)
            ),
        )
    h = await bearer(client)
    supplies = {
        s["index"]: s
        for s in (await client.get("/api/v1/printers/p-hp479", headers=h)).json()["supplies"]
    }
    black = supplies["1"]
    assert black["use_per_day"] == pytest.approx(4.0, abs=0.5)
    assert black["percent"] == pytest.approx(26.0)
    assert black["days_to_empty"] == pytest.approx(26 / 4.0, abs=1.0)  # 26 % left at 4 a day
    assert black["days_to_empty_low"] <= black["days_to_empty"] <= black["days_to_empty_high"]
    # Cyan has not moved: no rate, so no date it runs out (never a made-up one).
    assert supplies["2"]["days_to_empty"] is None
    listed = (await client.get("/api/v1/printers", headers=h)).json()["items"][0]["supplies"]
    assert listed[0]["days_to_empty"] == black["days_to_empty"]

    await log_in(client)
    page = (await client.get("/printers/p-hp479")).text
    row = re.search(
        r"<tr><td><span class=\"swatch\"[^>]*></span>Black Cartridge.*?</tr>", page, re.S
    )
    assert row, page
    cell = re.search(r'<td class="days-left"[^>]*>([^<]+)</td>', row.group(0))
    assert cell and re.fullmatch(r"about \d+ days \(\d+–\d+\)", cell.group(1)), cell
    cyan = re.search(
        r"<tr><td><span class=\"swatch\"[^>]*></span>Cyan Cartridge.*?</tr>", page, re.S
    )
    assert cyan and 'title="A forecast needs three drops over two days">—<' in cyan.group(0)


async def test_a_new_cartridge_starts_its_own_forecast(
    client: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured())
    now = datetime.now(UTC)
    for hours, black in ((72, 30.0), (48, 20.0), (24, 10.0), (12, 5.0)):
        apply_now(
            pg, reading(occurred_at=now - timedelta(hours=hours), supplies=hp_supplies(black))
        )
    h = await bearer(client)
    got = (await client.get("/api/v1/printers/p-hp479", headers=h)).json()["supplies"][0]
    assert got["days_to_empty"] is not None
    apply_now(pg, reading(occurred_at=now, supplies=hp_supplies(black=100.0)))
    got = (await client.get("/api/v1/printers/p-hp479", headers=h)).json()["supplies"][0]
    assert got["percent"] == 100.0 and got["days_to_empty"] is None  # one point: no rate yet


async def test_pages_in_this_period_count_the_first_hour_when_the_chart_is_hourly(
    client: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured())
    now = datetime.now(UTC) - timedelta(minutes=1)
    first = now - timedelta(days=3)
    # 40 pages in the first hour, then 10 an hour: three days is an hourly chart.
    times = [first, first + timedelta(minutes=10)] + [
        first + timedelta(hours=h) for h in range(1, 73)
    ]
    totals = [12345, 12385] + [12385 + 10 * h for h in range(1, 73)]
    for at, total in zip(times, totals, strict=True):
        apply_now(
            pg,
            reading(
                occurred_at=at,
                counters=Counters(lifetime_pages=total, mono_pages=total - 2345, colour_pages=2345),
            ),
        )
    await log_in(client)
    page = (await client.get("/printers/p-hp479")).text
    assert 'id="chart-resolution">hourly<' in page
    printed = totals[-1] - totals[0]
    caption = re.search(r"<span>([^<]*) pages in this period</span>", page)
    assert caption and caption.group(1) == f"{printed:,}", caption
