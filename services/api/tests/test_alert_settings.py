"""Alert settings per site and users' responsibility: saved, validated, announced as events."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import OutboxEvent
from tonerwatch_api.db.tx import ensure_admin, ensure_site, in_tx
from tonerwatch_api.domain.alert_settings import reannounce_all
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import (
    AlertSettingsConfigured,
    Event,
    PrinterConfigured,
    ThresholdCrossed,
    parse_event,
)
from tonerwatch_shared.printer.model import SupplyKind

from .test_rest import ADMIN_PW, bearer


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    with Session(pg) as s:
        ensure_site(s, "hq")
        ensure_site(s, "branch")
        s.commit()
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(pg, bus, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        yield c


async def announced(bus: Bus, site: str, revision: int) -> AlertSettingsConfigured:
    """Return the AlertSettingsConfigured of site at revision, once it is on the bus."""

    def match(e: Event) -> bool:
        return isinstance(e, AlertSettingsConfigured) and (e.site_id, e.revision) == (
            site,
            revision,
        )

    event = await wait_for_event(
        bus, bus.subjects.filter(sj.ALERT_SETTINGS_CONFIGURED, keyed=False), match, timeout_s=10
    )
    assert isinstance(event, AlertSettingsConfigured)
    return event


async def add_printer(client: httpx.AsyncClient, h: dict[str, str], site: str, port: int) -> str:
    r = await client.post(
        "/api/v1/printers",
        headers=h,
        json={"address": "127.0.0.1", "port": port, "site_id": site, "name": "Finance HP"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_put_saves_and_announces_the_whole_site_settings(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    fresh = await client.get("/api/v1/sites/hq/alert-settings", headers=h)
    assert fresh.status_code == 200
    assert fresh.json()["revision"] == 0 and fresh.json()["low_percent"] is None
    pid = await add_printer(client, h, "hq", 16101)
    body = {
        "low_percent": 30,
        "critical_percent": 8,
        "lead_time_days": 10,
        "kinds": {"ink": {"low_percent": 35}},
        "printers": {pid: {"low_percent": 40, "kinds": {"toner": {"critical_percent": 10}}}},
        "recipients": ["Facilities@example.org", "facilities@example.org", "it@example.org"],
    }
    r = await client.put("/api/v1/sites/hq/alert-settings", headers=h, json=body)
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved["revision"] == 1 and saved["recipients"] == [
        "Facilities@example.org",
        "it@example.org",
    ]
    event = await announced(bus, "hq", 1)
    assert (event.low_percent, event.critical_percent, event.lead_time_days) == (30, 8, 10)
    assert event.kinds[SupplyKind.INK].low_percent == 35
    assert event.printers[pid].low_percent == 40
    assert event.printers[pid].kinds[SupplyKind.TONER].critical_percent == 10
    assert event.recipients == ("Facilities@example.org", "it@example.org")
    again = await client.get("/api/v1/sites/hq/alert-settings", headers=h)
    assert again.json()["low_percent"] == 30 and again.json()["printers"][pid]["low_percent"] == 40
    # Back to the defaults: a PUT is the whole settings, what is left out is cleared.
    r = await client.put("/api/v1/sites/hq/alert-settings", headers=h, json={})
    assert r.status_code == 200 and r.json()["low_percent"] is None
    cleared = await announced(bus, "hq", 2)
    assert cleared.low_percent is None and cleared.recipients == () and not cleared.printers


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"low_percent": 120}, "low_percent"),
        ({"low_percent": 10, "critical_percent": 15}, "critical_percent"),
        ({"lead_time_days": 0}, "lead_time_days"),
        ({"recipients": ["it@example.org", "not an address"]}, "recipients.1"),
        ({"kinds": {"plutonium": {"low_percent": 10}}}, "kinds.plutonium.[key]"),
        ({"printers": {"p-elsewhere": {"low_percent": 10}}}, "printers.p-elsewhere"),
        ({"threshold": 10}, "threshold"),
    ],
)
async def test_invalid_settings_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    h = await bearer(client)
    r = await client.put("/api/v1/sites/hq/alert-settings", headers=h, json=body)
    assert r.status_code == 422, r.text
    assert field in [f["field"] for f in r.json()["fields"]], r.json()


async def test_printer_of_another_site_is_refused(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    pid = await add_printer(client, h, "branch", 16102)
    body = {"printers": {pid: {"low_percent": 10}}}
    r = await client.put("/api/v1/sites/hq/alert-settings", headers=h, json=body)
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == f"printers.{pid}"


async def test_only_admins_configure_alerting(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    made = await client.post(
        "/api/v1/users",
        headers=h,
        json={"username": "olga", "password": "operator-pass-1", "role": "operator"},
    )
    assert made.status_code == 201, made.text
    oh = await bearer(client, "olga", "operator-pass-1")
    assert (await client.get("/api/v1/sites/hq/alert-settings", headers=oh)).status_code == 403
    put = await client.put("/api/v1/sites/hq/alert-settings", headers=oh, json={})
    assert put.status_code == 403
    assert (await client.get("/api/v1/sites/nowhere/alert-settings", headers=h)).status_code == 404
    uid = made.json()["id"]
    own = await client.get(f"/api/v1/users/{uid}/alerting", headers=oh)
    assert own.status_code == 200 and own.json()["responsible_sites"] == []
    put = await client.put(f"/api/v1/users/{uid}/alerting", headers=oh, json={})
    assert put.status_code == 403


async def test_responsible_users_addresses_join_their_sites_recipients(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    await client.put(
        "/api/v1/sites/hq/alert-settings", headers=h, json={"recipients": ["it@example.org"]}
    )
    await announced(bus, "hq", 1)
    made = await client.post(
        "/api/v1/users",
        headers=h,
        json={
            "username": "hanna",
            "password": "hq-admin-pass-1",
            "role": "admin",
            "email": "hanna@example.org",
            "responsible_sites": ["hq"],
        },
    )
    assert made.status_code == 201, made.text
    hq = await announced(bus, "hq", 2)
    assert hq.recipients == ("it@example.org", "hanna@example.org")
    got = await client.get("/api/v1/sites/hq/alert-settings", headers=h)
    assert got.json()["responsible"] == ["hanna@example.org"]
    assert got.json()["announced_recipients"] == ["it@example.org", "hanna@example.org"]
    # Moving hanna to the branch re-announces both sites.
    uid = made.json()["id"]
    r = await client.put(
        f"/api/v1/users/{uid}/alerting",
        headers=h,
        json={"email": "hanna@example.org", "responsible_sites": ["branch"]},
    )
    assert r.status_code == 200, r.text
    assert (await announced(bus, "hq", 3)).recipients == ("it@example.org",)
    assert (await announced(bus, "branch", 1)).recipients == ("hanna@example.org",)
    # An empty scope is every site of the tenant.
    await client.put(
        f"/api/v1/users/{uid}/alerting", headers=h, json={"email": "hanna@example.org"}
    )
    assert "hanna@example.org" in (await announced(bus, "hq", 4)).recipients
    # A new site is announced at once: hanna answers for every site, this one too.
    made_site = await client.post("/api/v1/sites", headers=h, json={"id": "annex"})
    assert made_site.status_code == 201, made_site.text
    assert (await announced(bus, "annex", 1)).recipients == ("hanna@example.org",)
    bad = await client.put(
        f"/api/v1/users/{uid}/alerting", headers=h, json={"responsible_sites": ["hq", "mars"]}
    )
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "responsible_sites.1"
    bad = await client.put(f"/api/v1/users/{uid}/alerting", headers=h, json={"email": "hanna"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "email"


async def ui_login(c: httpx.AsyncClient, username: str, password: str) -> None:
    page = await c.get("/login?next=/")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token
    r = await c.post(
        "/login",
        data={"username": username, "password": password, "login_csrf": token.group(1)},
    )
    assert r.status_code == 303, r.text


async def test_dashboard_and_alerts_default_to_the_users_sites_with_a_toggle(
    client: httpx.AsyncClient,
    pg: Engine,
    configured: Callable[..., PrinterConfigured],
) -> None:
    apply_now(pg, configured("p-hq-ricoh", site_id="hq", name="HQ Ricoh", address="127.0.0.31"))
    apply_now(
        pg, configured("p-branch-hp", site_id="branch", name="Branch HP", address="127.0.0.32")
    )
    for pid, site in (("p-hq-ricoh", "hq"), ("p-branch-hp", "branch")):
        apply_now(
            pg,
            ThresholdCrossed(
                source="alerter/test",
                site_id=site,
                printer_id=pid,
                alert_id=f"{pid}:1:low",
                rule="low",
                severity="warning",
                message=f"Low toner: {pid}",
            ),
        )
    h = await bearer(client)
    made = await client.post(
        "/api/v1/users",
        headers=h,
        json={
            "username": "hanna",
            "password": "hq-viewer-pass",
            "email": "hanna@example.org",
            "responsible_sites": ["hq"],
        },
    )
    assert made.status_code == 201, made.text
    client.headers.pop("Authorization", None)
    await ui_login(client, "hanna", "hq-viewer-pass")
    mine = await client.get("/")
    assert "HQ Ricoh" in mine.text and "Branch HP" not in mine.text
    assert "Showing your sites: hq" in mine.text
    everything = await client.get("/?scope=all")
    assert "HQ Ricoh" in everything.text and "Branch HP" in everything.text
    assert "Show only your sites (hq)" in everything.text
    # An explicit site filter is obeyed even outside the user's sites.
    assert "Branch HP" in (await client.get("/?site=branch")).text
    alerts = await client.get("/alerts")
    assert "Low toner: p-hq-ricoh" in alerts.text and "p-branch-hp" not in alerts.text
    assert 'id="notify-enable"' in alerts.text
    all_alerts = await client.get("/alerts?scope=all")
    assert "Low toner: p-branch-hp" in all_alerts.text


async def test_settings_page_shows_a_form_per_site_and_users_scopes(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    await client.put(
        "/api/v1/sites/hq/alert-settings",
        headers=h,
        json={"low_percent": 30, "recipients": ["it@example.org"], "kinds": {"ink": {}}},
    )
    await client.post(
        "/api/v1/users",
        headers=h,
        json={
            "username": "hanna",
            "password": "hq-viewer-pass",
            "email": "hanna@example.org",
            "responsible_sites": ["branch"],
        },
    )
    client.headers.pop("Authorization", None)
    await ui_login(client, "admin", ADMIN_PW)
    page = (await client.get("/settings")).text
    for site in ("default", "hq", "branch"):
        assert f'data-api="PUT /api/v1/sites/{site}/alert-settings"' in page
    form = page[page.index('data-alert-site="hq"') :]
    assert 'name="low_percent"' in form and 'value="30"' in form.split("</form>")[0]
    assert "it@example.org</textarea>" in form.split("</form>")[0]
    users = page[page.index('data-user="hanna"') :].split("</tr>")[0]
    assert 'value="hanna@example.org"' in users
    assert 'value="branch" checked' in users and 'value="hq" checked' not in users


async def test_start_reannounces_saved_settings_at_the_same_revision(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    h = await bearer(client)
    r = await client.put("/api/v1/sites/hq/alert-settings", headers=h, json={"low_percent": 30})
    assert r.status_code == 200
    assert in_tx(pg, lambda s: reannounce_all(s, "api/test")) == 1

    def queued(s: Session) -> list[AlertSettingsConfigured]:
        rows = s.exec(select(OutboxEvent)).all()
        events = [parse_event(row.payload) for row in rows]
        return [e for e in events if isinstance(e, AlertSettingsConfigured)]

    [again] = in_tx(pg, queued)  # the PUT's own event was published and left the outbox
    assert (again.site_id, again.revision, again.low_percent) == ("hq", 1, 30)
    got = await client.get("/api/v1/sites/hq/alert-settings", headers=h)
    assert got.json()["revision"] == 1
