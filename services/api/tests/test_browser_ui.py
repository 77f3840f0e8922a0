"""The web UI in a real browser (Debian's chromium driven by Playwright) against the real api service.

Logs in through the form, reads the fleet dashboard, sees an alert toast pop up when ThresholdCrossed
is published on the bus, runs a discovery against snmpsim printers on loopback from the Discovery
page and monitors what it found, and uses the Settings and Network pages. Screenshots of the main
pages go to test-artifacts/screenshots/ (laptop and phone viewports).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from tonerwatch_api.service import Settings, run
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.events import PrinterConfigured, SupplyReading, ThresholdCrossed
from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port

CHROMIUM = Path("/usr/bin/chromium")
# No first-run, sync, update or background traffic: the browser talks only to the test server.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-admin-pw"
REPO = Path(__file__).resolve().parents[3]
SHOTS = REPO / "test-artifacts" / "screenshots"
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}


def _need_chromium() -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not installed (apt-get install --no-install-recommends chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Chromium, headless, without any traffic of its own."""
    _need_chromium()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@dataclass
class Api:
    """The running api service."""

    url: str
    data_dir: Path


@pytest_asyncio.fixture(loop_scope="session")
async def api(tmp_path: Path, nats_url: str, bus: Bus) -> AsyncIterator[Api]:
    """The api service on SQLite, real NATS and this test's subjects; found printers not auto-monitored."""
    port = free_tcp_port()
    settings = Settings(
        nats_url=nats_url,
        data_dir=tmp_path / "data",
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        port=port,
        admin_password=PASSWORD,
        auto_monitor_discovered=False,
        instance="browser",
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield Api(f"http://127.0.0.1:{port}", tmp_path / "data")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def login(page: Page, url: str) -> None:
    """Log in as admin through the form."""
    await page.goto(f"{url}/")
    await expect(page).to_have_url(f"{url}/login?next=/")
    await page.get_by_label("Username").fill("admin")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Fleet")).to_be_visible()


async def shoot(page: Page, name: str) -> None:
    """Save a full-page screenshot under test-artifacts/screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def no_horizontal_scroll(page: Page) -> None:
    """Fail when the page is wider than the viewport (a phone would scroll sideways)."""
    wide = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert wide <= 1, f"{page.url} is {wide}px wider than the viewport"


async def test_login_dashboard_level_bars_and_alert_toast(
    browser: Browser,
    api: Api,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    await bus.publish(configured())
    await bus.publish(reading())
    await bus.publish(configured(printer_id="p-hp-2", name="Reception HP", address="127.0.0.2"))
    await bus.publish(reading(printer_id="p-hp-2"))

    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)

    async def two_cards() -> bool:
        # Both printers shown with their readings applied: a reading that came before its printer
        # is retried a second later, and the page does not update itself (it is reloaded here).
        await page.reload()
        cards = page.locator("article.printer")
        return await cards.count() == 2 and await cards.locator(".pill.pending").count() == 0

    for _ in range(40):
        if await two_cards():
            break
        await asyncio.sleep(0.5)
    card = page.locator("article.printer", has_text="Finance HP")
    await expect(card).to_be_visible()
    # Yellow at 8% is low: the printer needs attention and sorts before the OK one.
    await expect(card.locator(".pill")).to_have_text("Attention")
    bars = card.locator("li.level-bar")
    await expect(bars).to_have_count(5)
    black = card.locator("li.level-bar", has_text="Black Cartridge")
    await expect(black.locator(".bar-value")).to_have_text("42%")
    style = await black.locator(".fill").get_attribute("style")
    assert style is not None and "width: 42.0%" in style and "#1d1d1f" in style
    await expect(card.locator("li.level-bar", has_text="Yellow")).to_have_class(
        "level-bar state-low"
    )
    await shoot(page, "dashboard-laptop")

    # The toast: the page's EventSource is connected, then the alerter's event arrives on the bus.
    await expect(page.locator("body[data-live=connected]")).to_have_count(1, timeout=10000)
    await bus.publish(
        ThresholdCrossed(
            source="alerter/test",
            site_id="default",
            printer_id="p-hp479",
            alert_id="p-hp479:toner_low:4",
            rule="toner_low",
            severity="warning",
            message="Yellow Cartridge HP W2032A at 8% — about 6 days left",
            supply_index="4",
        )
    )
    toast = page.locator("#toasts .toast")
    await expect(toast).to_be_visible(timeout=10000)
    await expect(toast).to_contain_text("Finance HP")
    await expect(toast).to_contain_text("Yellow Cartridge HP W2032A at 8%")
    await page.wait_for_timeout(400)  # let the pop-in animation finish before the screenshot
    await shoot(page, "dashboard-toast-laptop")

    await card.get_by_role("link", name="Finance HP").click()
    await expect(page.get_by_role("heading", name="Supplies")).to_be_visible()
    await shoot(page, "printer-laptop")
    await page.goto(f"{api.url}/alerts")
    await expect(page.locator("table.data")).to_contain_text("Yellow Cartridge HP W2032A")
    await shoot(page, "alerts-laptop")

    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await phone.add_cookies(await context.cookies())
    p2 = await phone.new_page()
    for path, name in (("/", "dashboard"), ("/printers/p-hp479", "printer"), ("/alerts", "alerts")):
        await p2.goto(api.url + path)
        await shoot(p2, f"{name}-phone")
        await no_horizontal_scroll(p2)
    await phone.close()
    await context.close()


def _copy_as_public(recording: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "public.snmprec"
    shutil.copyfile(recording, target)
    return target


@pytest_asyncio.fixture(loop_scope="session")
async def printers_on_loopback(
    printer_walks_dir: Path, tmp_path: Path
) -> AsyncIterator[tuple[str, int]]:
    """The HP M252dw and the Konica C250i answering SNMP on two addresses of a 127.x.y.0/29."""
    prefix = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"
    port = free_udp_port(f"{prefix}.1")
    sims = [
        SnmpSimulator(
            [_copy_as_public(printer_walks_dir / f"{name}.snmprec", tmp_path / name)],
            [(f"{prefix}.{host}", port)],
        )
        for host, name in ((2, "jetdirect_m252dw"), (5, "konica_c250i"))
    ]
    try:
        await asyncio.gather(*(s.start() for s in sims))
        yield f"{prefix}.0/29", port
    finally:
        for s in sims:
            s.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def discovery_service(nats_url: str, bus: Bus, tmp_path: Path) -> AsyncIterator[None]:
    """The discovery service as its own process (`tonerwatch serve discovery`) on this test's subjects."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    env.update(
        TONERWATCH_NATS_URL=nats_url,
        TONERWATCH_SUBJECT_ROOT=bus.subjects.root,
        TONERWATCH_STREAM_PREFIX=bus.subjects.stream_prefix,
        TONERWATCH_INSTANCE="browser-test",
    )
    log = (tmp_path / "discovery.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tonerwatch", "serve", "discovery", env=env, stdout=log, stderr=log
    )
    try:
        # Requests published before its consumer exists are not for it: wait until it says ready.
        path = tmp_path / "discovery.log"
        for _ in range(300):
            if "discovery ready" in path.read_text() or proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert "discovery ready" in path.read_text(), path.read_text()[-2000:]
        yield
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        log.close()


async def test_discovery_page_sweeps_loopback_printers_and_monitors_the_chosen_one(
    browser: Browser,
    api: Api,
    printers_on_loopback: tuple[str, int],
    discovery_service: None,
) -> None:
    block, port = printers_on_loopback
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await page.get_by_role("link", name="Discovery").click()
    await page.get_by_label("Addresses to probe").fill(block)
    await page.get_by_label("SNMP port").fill(str(port))
    await page.get_by_label("Probes per second").fill("50")
    await shoot(page, "discovery-form-laptop")
    await page.get_by_role("button", name="Start discovery").click()
    await expect(page.get_by_role("progressbar")).to_be_visible()
    # The bar moves and the sweep ends with both printers listed and stored.
    await expect(page.locator("#job[data-running=false]")).to_have_count(1, timeout=60000)
    await expect(page.locator("#job-state")).to_have_text("completed")
    bar = await page.locator("#job-bar").get_attribute("style")
    assert bar is not None and "width: 100%" in bar
    rows = page.locator("#found tbody tr")
    await expect(rows).to_have_count(2, timeout=20000)
    await expect(page.locator("#found")).to_contain_text("VNB3J99999")  # the HP's serial
    await expect(page.locator("#found")).to_contain_text("AA2M021115700")  # the Konica's
    await expect(page.locator("#found td.monitoring", has_text="Not monitored")).to_have_count(
        2, timeout=20000
    )
    await shoot(page, "discovery-found-laptop")

    hp = rows.filter(has_text="VNB3J99999")
    await hp.locator("input.found-pick").check()
    await page.get_by_role("button", name="Monitor selected (1)").click()
    await expect(hp.locator("td.monitoring")).to_have_text("Monitored", timeout=10000)
    konica = rows.filter(has_text="AA2M021115700")
    await expect(konica.locator("td.monitoring")).to_have_text("Not monitored")
    await shoot(page, "discovery-monitored-laptop")

    await page.goto(f"{api.url}/discovery")
    await expect(page.locator("#recent-sweeps table.data")).to_contain_text(block)
    await page.goto(f"{api.url}/network?days=7")
    # The sweep's bytes were measured: the discovery total is no longer zero.
    await expect(page.locator(".stat", has_text="Discovery").locator(".big")).not_to_have_text(
        "0 B"
    )
    await shoot(page, "network-laptop")

    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await phone.add_cookies(await context.cookies())
    p2 = await phone.new_page()
    for path, name in (("/discovery", "discovery"), ("/network", "network")):
        await p2.goto(api.url + path)
        await shoot(p2, f"{name}-phone")
        await no_horizontal_scroll(p2)
    await phone.close()
    await context.close()


async def test_settings_page_creates_a_site_and_an_api_token(browser: Browser, api: Api) -> None:
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await page.get_by_role("link", name="Settings").click()
    await page.get_by_label("New site id").fill("branch-office")
    await page.get_by_label("Name", exact=True).fill("Branch office")
    await page.get_by_role("button", name="Add site").click()
    await expect(page.locator("tr[data-site=branch-office]")).to_be_visible()
    await page.get_by_label("Name of branch-office").fill("Branch office, 2nd floor")
    await page.locator("tr[data-site=branch-office]").get_by_role("button", name="Rename").click()
    # The rename reloads the page: wait for the reloaded page (its audit log has the rename),
    # or the reload would wipe the token shown below.
    await expect(page.locator("#changes")).to_contain_text("site.rename")
    await expect(page.get_by_label("Name of branch-office")).to_have_value(
        "Branch office, 2nd floor"
    )
    await page.get_by_label("Token name").fill("inventory script")
    await page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token-value")
    await expect(secret).not_to_be_empty()
    token = await secret.inner_text()
    assert len(token) >= 30
    await shoot(page, "settings-laptop")
    await page.reload()
    await expect(page.locator("#tokens table")).to_contain_text("inventory script")
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.locator("#tokens").get_by_role("button", name="Revoke").click()
    await expect(page.locator("#tokens table .pill")).to_have_text("revoked")
    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await phone.add_cookies(await context.cookies())
    p2 = await phone.new_page()
    await p2.goto(f"{api.url}/settings")
    await shoot(p2, "settings-phone")
    await no_horizontal_scroll(p2)
    await phone.close()
    await context.close()
