"""Printers a discovery sweep finds: by default they wait for a person to pick them; a site can
choose to monitor them at once (API and the Discovery page); each gets a name (sysName, else model
and location or address, else the address). The browser test sweeps snmpsim agents on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import Printer, Site
from tonerwatch_api.db.tx import ensure_admin, in_tx
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.outbox import Outbox
from tonerwatch_api.projections.printers import ProjectionOptions, found_name
from tonerwatch_api.projections.projector import Projector
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import PrinterConfigured, PrinterFound
from tonerwatch_shared.printer.model import PrinterIdentity

from .conftest import HP_M479
from .test_browser_ui import (
    Api,
    api,
    browser,
    discovery_service,
    login,
    printers_on_loopback,
    shoot,
)
from .test_rest import ADMIN_PW, bearer

__all__ = ["api", "browser", "discovery_service", "printers_on_loopback"]  # shared fixtures


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    app = create_app(pg, bus, Settings(session_secret="found", cookie_secure=False))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


def test_a_found_printer_is_named_by_sysname_else_model_and_place_else_address() -> None:
    named = HP_M479.model_copy(update={"sys_name": "NPI1A2B3C"})
    assert found_name(named, "Floor 2", "127.0.0.9") == "NPI1A2B3C"
    # A sysName that is only the address says nothing more than the address.
    assert found_name(HP_M479.model_copy(update={"sys_name": "127.0.0.9"}), None, "127.0.0.9") == (
        "HP Color LaserJet Pro MFP M479fdw · 127.0.0.9"
    )
    assert found_name(HP_M479, "Reception", "127.0.0.9") == (
        "HP Color LaserJet Pro MFP M479fdw · Reception"
    )
    assert found_name(PrinterIdentity(), None, "127.0.0.9") == "127.0.0.9"


def _found(address: str, port: int, **ident: object) -> PrinterFound:
    return PrinterFound(
        source="discovery",
        site_id="default",
        address=address,
        port=port,
        identity=HP_M479.model_copy(update={"mac_address": None, **ident}),
    )


async def test_found_printers_wait_for_a_person_unless_the_site_chose_otherwise(
    bus: Bus, pg: Engine
) -> None:
    projector = Projector(pg, bus, Outbox(pg, bus), Metrics(), ProjectionOptions())
    await projector.apply(_found("127.0.0.51", 16151, serial="S-WAIT"), "api-printers")
    with Session(pg) as s:
        waiting = s.exec(select(Printer).where(col(Printer.serial) == "S-WAIT")).one()
        assert waiting.monitored is False and waiting.origin == "discovered"
        assert waiting.name == "HP Color LaserJet Pro MFP M479fdw · 127.0.0.51"

    def monitor_found(s: Session) -> None:
        site = s.get(Site, "default")
        assert site is not None
        site.monitor_found = True
        s.add(site)

    in_tx(pg, monitor_found)
    await projector.apply(
        _found("127.0.0.52", 16152, serial="S-NOW", sys_name="finance-mfp"), "api-printers"
    )
    with Session(pg) as s:
        now = s.exec(select(Printer).where(col(Printer.serial) == "S-NOW")).one()
        assert now.monitored is True and now.name == "finance-mfp"
    event = await wait_for_event(
        bus,
        bus.subjects.filter("printer.configured"),
        lambda e: isinstance(e, PrinterConfigured) and e.printer_id == now.id,
        timeout_s=10,
    )
    assert isinstance(event, PrinterConfigured) and event.name == "finance-mfp"

    # A site that chose "wait" wins over an installation that monitors at once.
    def wait_here(s: Session) -> None:
        site = s.get(Site, "default")
        assert site is not None
        site.monitor_found = False
        s.add(site)

    in_tx(pg, wait_here)
    eager = Projector(
        pg, bus, Outbox(pg, bus), Metrics(), ProjectionOptions(auto_monitor_discovered=True)
    )
    await eager.apply(_found("127.0.0.53", 16153, serial="S-SITE"), "api-printers")
    with Session(pg) as s:
        assert (
            s.exec(select(Printer).where(col(Printer.serial) == "S-SITE")).one().monitored is False
        )


async def test_the_sites_api_shows_and_sets_whether_found_printers_are_monitored(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    site = (await client.get("/api/v1/sites/default", headers=h)).json()
    assert site["monitor_found"] is None  # the installation's default: wait for a person
    r = await client.patch("/api/v1/sites/default", headers=h, json={"monitor_found": True})
    assert r.status_code == 200 and r.json()["monitor_found"] is True
    made = await client.post(
        "/api/v1/sites", headers=h, json={"id": "branch-7", "monitor_found": False}
    )
    assert made.status_code == 201 and made.json()["monitor_found"] is False
    back = await client.patch("/api/v1/sites/default", headers=h, json={"monitor_found": None})
    assert back.json()["monitor_found"] is None
    audit = (await client.get("/api/v1/audit", headers=h)).text
    assert "site.monitor_found" in audit


async def test_a_site_set_to_monitor_at_once_on_the_discovery_page_gets_named_monitored_printers(
    browser: Browser,
    api: Api,
    printers_on_loopback: tuple[str, int],
    discovery_service: None,
) -> None:
    block, port = printers_on_loopback
    page = await browser.new_page(viewport={"width": 1366, "height": 860})
    await login(page, api.url)
    await page.goto(f"{api.url}/discovery")
    row = page.locator("#found-printers tr[data-site=default]")
    await expect(row.locator(".in-force")).to_have_text("wait for a person to pick")
    await row.get_by_label("Found printers in default").select_option("monitor")
    await row.get_by_role("button", name="Save for default").click()
    await expect(row.locator(".in-force")).to_have_text("monitored at once")
    await shoot(page, "discovery-found-setting")

    await page.get_by_label("Addresses to probe").fill(block)
    await page.get_by_label("SNMP port").fill(str(port))
    await page.get_by_label("Probes per second").fill("50")
    await page.get_by_role("button", name="Start discovery").click()
    await expect(page.locator("#job[data-running=false]")).to_have_count(1, timeout=60000)
    rows = page.locator("#found tbody tr")
    await expect(rows).to_have_count(2, timeout=20000)
    # Both monitored without anyone picking them, each with a name.
    await expect(page.locator("#found td.monitoring", has_text="Monitored")).to_have_count(
        2, timeout=20000
    )
    await shoot(page, "discovery-found-monitored-at-once")
    listed = await page.request.get(f"{api.url}/api/v1/printers")
    assert listed.ok, await listed.text()
    printers = (await listed.json())["items"]
    assert len(printers) == 2
    for p in printers:
        assert p["monitored"] is True and p["origin"] == "discovered"
        # Named by what the printer says (its sysName, else model and place), not left blank.
        assert p["name"] and p["name"] != p["address"], p
    await page.close()
