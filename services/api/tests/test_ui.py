"""Web UI: login with CSRF, dashboard with level bars in colorant colours, printer page, alerts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.alerting import UserAlerting
from tonerwatch_api.db.groups import PrinterGroup
from tonerwatch_api.db.models import AuditEntry, User
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_site, in_tx
from tonerwatch_api.live import toast, without_printer
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_api.status import printer_status
from tonerwatch_api.ui.views import chart_series, colorant_hex, level_bar
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured, SupplyReading, ThresholdCrossed

from .conftest import hp_supplies

PW = "ui-admin-password"


@pytest.fixture
async def browser(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, PW)
    app = create_app(pg, bus, Settings(session_secret="ui-secret", cookie_secure=False))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


async def log_in(c: httpx.AsyncClient, password: str = PW) -> httpx.Response:
    page = await c.get("/login?next=/alerts")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token
    return await c.post(
        "/login",
        data={
            "username": "admin",
            "password": password,
            "login_csrf": token.group(1),
            "next": "/alerts",
        },
    )


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


async def test_pages_redirect_to_login_and_back(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/printers/p-x?tab=1")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/printers/p-x%3Ftab%3D1"
    bad = await log_in(browser, "wrong")
    assert bad.status_code == 303 and "error=invalid" in bad.headers["location"]
    ok = await log_in(browser)
    assert ok.status_code == 303 and ok.headers["location"] == "/alerts"
    cookie = ok.headers["set-cookie"]
    assert "tw_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http here; https (or public_url https://) sets it


async def test_login_without_the_form_token_is_refused(browser: httpx.AsyncClient) -> None:
    r = await browser.post("/login", data={"username": "admin", "password": PW, "next": "/"})
    assert r.status_code == 303 and "error=expired" in r.headers["location"]
    assert "tw_session" not in r.headers.get("set-cookie", "")


async def test_dashboard_shows_hp_m479_with_colorant_level_bars_attention_first(
    browser: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured("p-calm", name="Quiet Kyocera", address="127.0.0.20"))
    apply_now(pg, reading("p-calm", supplies=hp_supplies(black=90, cyan=90)[:2]))
    apply_now(pg, configured())
    apply_now(pg, reading())
    await log_in(browser)
    html = (await browser.get("/")).text
    assert "Finance HP" in html and "Quiet Kyocera" in html
    assert html.index("Finance HP") < html.index("Quiet Kyocera")  # yellow at 8% needs attention
    assert 'class="level-bar' in html
    assert "width: 42.0%; background: #1d1d1f" in html  # black toner, true colour
    assert "background: #00a0e3" in html and "background: #e4007c" in html
    assert "10% full" in html  # waste bin: 90% space left shown as fullness
    filtered = (await browser.get("/", params={"q": "kyocera"})).text
    assert "Quiet Kyocera" in filtered and "Finance HP" not in filtered


async def test_printer_page_chart_alerts_and_acknowledge_with_csrf(
    browser: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured())
    apply_now(pg, reading())
    apply_now(pg, reading(supplies=hp_supplies(black=40)))
    apply_now(
        pg,
        ThresholdCrossed(
            source="alerter",
            site_id="default",
            printer_id="p-hp479",
            alert_id="p-hp479:4:low",
            rule="low",
            severity="warning",
            message="Yellow Cartridge HP W2032A at 8%",
        ),
    )
    await log_in(browser)
    page = await browser.get("/printers/p-hp479")
    assert page.status_code == 200
    html = page.text
    assert "CNB1M2N3P4" in html and "W2030A" in html and "<polyline" in html
    assert "s3cret-community" not in html
    assert "Yellow Cartridge HP W2032A at 8%" in html
    alert_id = re.search(r'action="/alerts/(\d+)/ack"', html)
    assert alert_id
    forged = await browser.post(f"/alerts/{alert_id.group(1)}/ack", data={"csrf": "forged"})
    assert forged.status_code == 403
    ok = await browser.post(
        f"/alerts/{alert_id.group(1)}/ack", data={"csrf": csrf_of(html), "back": "/alerts"}
    )
    assert ok.status_code == 303
    assert "acknowledged by admin" in (await browser.get("/alerts")).text
    # Cookie-authenticated API writes need the CSRF header too.
    api = await browser.patch("/api/v1/printers/p-hp479", json={"name": "x"})
    assert api.status_code == 403


async def test_add_printer_form(browser: httpx.AsyncClient) -> None:
    await log_in(browser)
    form = (await browser.get("/printers/new")).text
    bad = await browser.post(
        "/printers/new",
        data={"csrf": csrf_of(form), "address": "no spaces allowed", "community": "hush"},
    )
    assert bad.status_code == 422 and "address" in bad.text and "hush" not in bad.text
    ok = await browser.post(
        "/printers/new",
        data={
            "csrf": csrf_of(form),
            "address": "127.0.0.30",
            "name": "Lobby",
            "interval_s": "30",  # seconds, as the form says
            "port": "161",
            "site_id": "default",
            "protocol": "snmp",
        },
    )
    assert ok.status_code == 303 and ok.headers["location"].startswith("/printers/p-")
    page = (await browser.get(ok.headers["location"])).text
    assert "Lobby" in page and re.search(r'name="interval_s"[^>]*value="30"', page)


def test_colorants_and_receptacles() -> None:
    assert colorant_hex("Light Cyan") == "#7fd3f5"
    assert colorant_hex(None, "#00FFFF") == "#00ffff"
    assert colorant_hex("chartreuse") == "#9aa0a6"
    waste = level_bar("Waste toner", 25.0, "ok", "receptacle", None)
    assert (waste.fill_percent, waste.text, waste.receptacle) == (75.0, "75% full", True)
    unknown = level_bar("Black", None, "some_remaining", "consumed", "black")
    assert unknown.fill_percent is None and unknown.text == "some left"


def test_status_offline_beats_everything_and_paused_when_unmonitored() -> None:
    common = {
        "last_seen_at": None,
        "alert_severities": [],
        "device_status": None,
        "status_errors": None,
    }
    assert (
        printer_status(monitored=True, reachable=False, supply_states=["empty"], **common)
        == "offline"
    )
    assert (
        printer_status(monitored=True, reachable=True, supply_states=["empty"], **common)
        == "critical"
    )
    assert printer_status(monitored=True, reachable=None, supply_states=[], **common) == "pending"
    assert printer_status(monitored=False, reachable=False, supply_states=[], **common) == "paused"


async def test_csv_export_links_follow_the_sites_a_user_answers_for(
    browser: httpx.AsyncClient, pg: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    def setup(s: Session) -> None:
        ensure_site(s, "hq", "default")
        ensure_site(s, "branch", "default")
        admin = s.exec(select(User).where(User.username == "admin")).one()
        assert admin.id is not None
        s.add(UserAlerting(user_id=admin.id, email="ops@example.org", sites=["hq"]))

    in_tx(pg, setup)
    apply_now(pg, configured("p-hq", site_id="hq", name="HQ Ricoh", address="127.0.0.21"))
    apply_now(
        pg, configured("p-branch", site_id="branch", name="Branch Xerox", address="127.0.0.22")
    )
    await log_in(browser)
    html = (await browser.get("/")).text
    assert "HQ Ricoh" in html and "Branch Xerox" not in html  # the dashboard shows their site
    fleet = re.search(r'id="export-fleet" href="([^"]+)"', html)
    meters = re.search(r'id="export-meters" href="([^"]+)"', html)
    assert fleet and meters and fleet.group(1).endswith("?scope=mine")
    csv_text = (await browser.get(fleet.group(1))).text
    assert "p-hq" in csv_text and "p-branch" not in csv_text
    assert "p-branch" not in (await browser.get(meters.group(1))).text
    everything = (await browser.get("/", params={"scope": "all", "q": "xerox"})).text
    fleet = re.search(r'id="export-fleet" href="([^"]+)"', everything)
    assert fleet and fleet.group(1) == "/api/v1/export/printers.csv?q=xerox"


async def test_settings_manage_users_and_show_recent_changes(
    browser: httpx.AsyncClient, pg: Engine
) -> None:
    def setup(s: Session) -> int:
        user = create_user(s, "nina", "nina-password-1", "viewer")
        s.add(
            AuditEntry(username="admin", tenant_id="default", action="user.create", target="nina")
        )
        s.add(AuditEntry(username="eve", tenant_id="acme", action="site.create", target="acme-x"))
        assert user.id is not None
        return user.id

    nina = in_tx(pg, setup)
    await log_in(browser)
    html = (await browser.get("/settings")).text
    changes = html[html.index('id="changes"') :]
    assert "user.create" in changes and "nina" in changes
    assert "acme-x" not in html  # another tenant's changes stay theirs
    assert f'data-api="PATCH /api/v1/users/{nina}" data-body=\'{{"disabled": true}}\'' in html
    assert f'data-api="DELETE /api/v1/users/{nina}"' in html
    admin = in_tx(pg, lambda s: s.exec(select(User).where(User.username == "admin")).one().id)
    assert f"DELETE /api/v1/users/{admin}" not in html  # no button to delete yourself


def test_toast_names_the_printer_once() -> None:
    alerter = "Low toner: HP M452nw (Finance, 2nd floor) — Cyan 8%, about 5 days left"
    assert without_printer(alerter) == "Low toner — Cyan 8%, about 5 days left"
    assert without_printer("Printer unreachable: Reception Ricoh") == "Printer unreachable"
    assert without_printer("Paper jam") == "Paper jam"  # another shape: whole
    crossed = ThresholdCrossed(
        source="alerter",
        site_id="default",
        printer_id="p-m452",
        alert_id="p-m452:2:low",
        rule="low",
        severity="warning",
        message=alerter,
    )
    shown = toast(crossed, "HP M452nw")
    assert shown["title"] == "HP M452nw" and "HP M452nw" not in str(shown["message"])


def test_one_reading_is_a_dot_on_the_level_chart() -> None:
    start = datetime(2026, 11, 12, tzinfo=UTC)
    end = start + timedelta(days=14)
    one = chart_series(
        {"4": [(end, 8.0)]}, {"4": ("Yellow Cartridge HP W2032A", "#ffd700")}, start, end
    )
    assert one[0].last == ("600.0", "184.0")  # right edge, 8% up from the bottom
    two = chart_series({"1": [(start, 90.0), (start + timedelta(days=7), 45.0)]}, {}, start, end)
    assert two[0].last == ("300.0", "110.0")


async def test_settings_name_audit_targets_and_say_where_thresholds_come_from(
    pg: Engine,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    ensure_admin(pg, PW)
    apply_now(pg, configured())
    apply_now(pg, reading())
    # TONERWATCH_LOW_PERCENT set for the api (and the alerter): its value is in force, named so.
    # And TONERWATCH_ALERT_RULES (the alerter's overrides) for the site and for this printer's toner.
    rules = {
        "sites": {"default": {"lead_time_days": 12, "kinds": {"ink": {"low_percent": 33}}}},
        "printers": {"p-hp479": {"kinds": {"toner": {"critical_percent": 4}}}},
    }
    app = create_app(
        pg,
        bus,
        Settings(
            session_secret="ui-secret", cookie_secure=False, low_percent=25, alert_rules=rules
        ),
    )

    def setup(s: Session) -> None:
        group = PrinterGroup(tenant_id="default", name="Finance floor 3")
        s.add(group)
        s.flush()
        entries = [
            ("printer.update", "p-hp479", None),
            ("group.create", str(group.id), None),
            ("user.alerting", "nina", {"sites": [], "groups": [group.id]}),
            ("printer.delete", "p-gone", None),
        ]
        for action, target, detail in entries:
            s.add(
                AuditEntry(
                    username="admin",
                    tenant_id="default",
                    action=action,
                    target=target,
                    detail=detail,
                )
            )

    in_tx(pg, setup)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        await log_in(c)
        html = (await c.get("/settings")).text
        printer_page = (await c.get("/printers/p-hp479")).text
    # The printer page names the environment as the source too.
    black = re.search(r"<tr><td>Black Cartridge.*?</tr>", printer_page, re.S)
    assert black and '25% <small class="muted">environment' in black.group(0)
    assert '4% <small class="muted">environment' in black.group(0)
    assert '12 days <small class="muted">environment' in black.group(0)
    changes = html[html.index('id="changes"') :]
    rows = re.findall(r"<tr>(.*?)</tr>", changes, re.S)
    text = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", r)).strip() for r in rows]
    printer = next(t for t in text if "printer.update" in t)
    assert "Finance HP" in printer  # the printer's name, its id small beside it
    assert '<a href="/printers/p-hp479">Finance HP</a>' in changes
    assert any("group.create" in t and "Finance floor 3" in t for t in text)
    assert any("user.alerting" in t and "groups: Finance floor 3" in t for t in text)
    assert any("printer.delete" in t and "p-gone" in t for t in text)  # gone: the id is all left
    defaults = re.sub(r"<[^>]+>", "", html[html.index('id="limit-defaults"') :][:800])
    assert "low at 25% (environment)" in defaults
    assert "critical at 5% (default)" in defaults
    in_force = re.search(r'data-in-force="default">(.*?)</p>', html, re.S)
    assert in_force
    shown = re.sub(r"<[^>]+>", "", in_force.group(1))
    assert "low at 25% (environment)" in shown and "critical at 5% (default)" in shown
    assert "reorder lead time 12 days (environment)" in shown
    # The per-kind form's placeholders: what an empty row gets (ink: the environment's 33%).
    ink = re.search(r'name="kinds\.ink\.low_percent"[^>]*placeholder="([^"]*)"', html)
    toner = re.search(r'name="kinds\.toner\.low_percent"[^>]*placeholder="([^"]*)"', html)
    assert ink and ink.group(1) == "33" and toner and toner.group(1) == "25"


async def test_fleet_json_is_gzipped_for_a_browser_that_takes_it(
    browser: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    for n in range(20):
        pid = f"p-{n:03d}"
        apply_now(pg, configured(printer_id=pid, address=f"127.0.0.{n + 1}", name=f"HP {n}"))
        apply_now(pg, reading(printer_id=pid))
    await log_in(browser)
    zipped = await browser.get("/fleet.json", headers={"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200
    assert (
        zipped.headers["content-encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["vary"]
    )
    assert len(zipped.json()["rows"]) == 20
    assert zipped.num_bytes_downloaded * 4 < len(zipped.content)  # what went over the wire
    plain = await browser.get("/fleet.json", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.json() == zipped.json()
