"""The printer page in a real browser (Debian's chromium via Playwright) against the real api service.

Supplies with days left and their band, paper trays, the thresholds in force, charts that show the
history there is, "Poll now" that waits for the new reading, the poll interval in seconds, and
SNMPv3 access that is written, never shown back. Takes the README's screenshot of a printer page
(docs/screenshots/printer-page.png) when TONERWATCH_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Browser, Page, ViewportSize, expect

from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import Event, PollRequested, PrinterConfigured, SupplyReading
from tonerwatch_shared.printer.model import Counters, Tray

from .conftest import hp_supplies
from .test_browser_ui import Api, api, browser, login, no_horizontal_scroll

__all__ = ["api", "browser"]  # fixtures, imported to be shared
LAPTOP: ViewportSize = {"width": 1366, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
# The README's screenshots are rewritten only when asked (TONERWATCH_UPDATE_SCREENSHOTS=1): a plain
# test run must leave the checkout clean; otherwise they go with the other test artifacts.
DOCS_SHOTS = (
    Path(__file__).resolve().parents[3]
    / ("docs" if os.environ.get("TONERWATCH_UPDATE_SCREENSHOTS") == "1" else "test-artifacts")
    / "screenshots"
)
PID = "p-hp479"
V3_AUTH, V3_PRIV = "browser-auth-key-1", "browser-priv-key-2"
TRAYS = (
    Tray(index="1", name="Tray 1", level=40, max_capacity=100, percent=40.0, media="A4"),
    Tray(index="2", name="Tray 2", level=250, max_capacity=500, percent=50.0, media="A4"),
    Tray(index="3", name="Envelope feeder", level=-3, media="DL envelopes"),
)


def history(
    reading: Callable[..., SupplyReading], now: datetime, days: int = 3
) -> list[SupplyReading]:
    """Readings every 6 hours for days: black toner falling, pages rising."""
    out = []
    steps = days * 4
    for k in range(steps + 1):
        black = 70.0 - 2.0 * k
        pages = 12000 + 150 * k
        out.append(
            reading(
                occurred_at=now - timedelta(hours=6 * (steps - k)),
                supplies=hp_supplies(black=black, cyan=80.0 - 0.5 * k),
                trays=TRAYS,
                counters=Counters(
                    lifetime_pages=pages,
                    mono_pages=pages - 2000 - 30 * k,
                    colour_pages=2000 + 30 * k,
                ),
            )
        )
    return out


async def until_shown(page: Page, url: str, ready: Callable[[], object]) -> None:
    """Reload page until ready() holds (the api applies events a moment after they are published)."""
    for _ in range(60):
        await page.goto(url)
        if await ready():  # type: ignore[misc]
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{url} never showed what was published")


async def test_printer_page_supplies_trays_limits_charts_poll_now_interval_and_snmp(
    browser: Browser,
    api: Api,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    await bus.publish(configured(interval_s=30, occurred_at=now - timedelta(days=4)))

    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    url = f"{api.url}/printers/{PID}"

    async def known() -> bool:
        status = await page.evaluate(
            "async (p) => (await fetch(p)).status", f"/api/v1/printers/{PID}"
        )
        return bool(status == 200)

    # Configuration and readings have consumers of their own; a backdated reading for a printer
    # the api does not know yet waits for it (5 minutes from the api's first try), but the
    # history goes out once it is known so the test does not lean on that.
    await until_shown(page, url, known)
    for r in history(reading, now):
        await bus.publish(r)

    async def all_in() -> bool:
        # Both sections show the whole history. The page is one snapshot (db.tx.read_tx), so
        # they agree; before it, a page rendered while a batch of readings committed showed the
        # counters after it and the supplies before it.
        counters = page.locator("#counters")
        supplies = page.locator("section.card", has=page.get_by_role("heading", name="Supplies"))
        black = supplies.locator("tr", has_text="Black Cartridge HP W2030A").locator("td").nth(2)
        return "1,800 pages in this period" in (await counters.inner_text()) and "46%" in (
            await black.inner_text()
        )

    await until_shown(page, url, all_in)

    # Supplies: the level, the state, and days left (three days' trend: a forecast; its band
    # when the drops scatter).
    supplies = page.locator("section.card", has=page.get_by_role("heading", name="Supplies"))
    black = supplies.locator("tr", has_text="Black Cartridge HP W2030A")
    await expect(black.locator("td").nth(2)).to_contain_text("46%")
    await expect(black.locator("td.days-left")).to_have_text(
        re.compile(r"^about \d+ days( \(\d+–\d+\))?$")
    )
    yellow = supplies.locator("tr", has_text="Yellow Cartridge HP W2032A")
    await expect(yellow.locator("td").nth(3)).to_have_text("low")
    # Paper trays, in sheets and words (level -3: "some paper").
    trays = page.locator("table.trays")
    await expect(trays.locator("tr", has_text="Tray 2")).to_contain_text("50% (250/500 sheets)")
    await expect(trays.locator("tr", has_text="Envelope feeder")).to_contain_text("some paper")
    # Thresholds in force, and where they come from.
    limits = page.locator("table.limits")
    await expect(limits.locator("tr", has_text="Black Cartridge")).to_contain_text("20%")
    # Charts: three days of readings are hourly points, not one dot; the counter chart too.
    await expect(page.locator("#chart-resolution")).to_have_text("hourly")
    points = await page.locator("figure.chart polyline").first.get_attribute("points")
    assert points is not None and len(points.split()) >= 12
    await expect(page.locator("#counters figcaption")).to_contain_text("Colour pages")

    # The README's screenshot of a printer page, taken here in Chromium.
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(DOCS_SHOTS / "printer-page.png"), full_page=True)

    # Poll now: the poller is asked (PollRequested), the page waits for the reading, then shows it.
    def asked(e: Event) -> bool:
        return isinstance(e, PollRequested) and e.printer_id == PID

    await page.get_by_role("button", name="Poll now").click()
    await wait_for_event(bus, bus.subjects.filter(sj.POLL_REQUESTED), asked, timeout_s=15)
    await expect(page.locator("#poll-state")).to_contain_text("waiting for the reading")
    await bus.publish(
        reading(
            occurred_at=datetime.now(UTC),
            supplies=hp_supplies(black=45.0),
            trays=TRAYS,
            counters=Counters(lifetime_pages=13900, mono_pages=11400, colour_pages=2500),
        )
    )
    # The page reloads itself once the reading is in.
    await expect(black.locator("td").nth(2)).to_contain_text("45%", timeout=20000)
    await expect(page.locator("#counters figcaption")).to_contain_text("1,900 pages in this period")

    # The poll interval is in seconds: 30 s shows as 30 and a change saves.
    interval = page.get_by_label("Poll every (seconds)")
    await expect(interval).to_have_value("30")
    await interval.fill("45")

    def every_45(e: Event) -> bool:
        return isinstance(e, PrinterConfigured) and e.printer_id == PID and e.interval_s == 45

    await page.get_by_role("button", name="Save", exact=True).click()
    await wait_for_event(bus, bus.subjects.filter(sj.PRINTER_CONFIGURED), every_45, timeout_s=15)
    await expect(page.get_by_label("Poll every (seconds)")).to_have_value("45")

    # SNMPv3 access: written, named above, the keys never shown back.
    snmp = page.locator("form.snmp-form")
    await snmp.get_by_label("Version").select_option("3")
    await snmp.get_by_label("User (v3)").fill("tonerwatch")
    await snmp.get_by_label("Auth protocol").select_option("SHA256")
    await snmp.get_by_label("Auth key").fill(V3_AUTH)
    await snmp.get_by_label("Privacy protocol").select_option("AES")
    await snmp.get_by_label("Privacy key").fill(V3_PRIV)

    def v3(e: Event) -> bool:
        return (
            isinstance(e, PrinterConfigured)
            and e.printer_id == PID
            and e.credentials is not None
            and e.credentials.version == "3"
        )

    await snmp.get_by_role("button", name="Save SNMP access").click()
    await wait_for_event(bus, bus.subjects.filter(sj.PRINTER_CONFIGURED), v3, timeout_s=15)
    await expect(page.locator("#snmp-access")).to_contain_text(
        "v3 authPriv, user tonerwatch, SHA256/AES (keys set)"
    )
    html = await page.content()
    assert V3_AUTH not in html and V3_PRIV not in html

    # A short v3 key is refused at the door, naming it; nothing changes.
    await snmp.get_by_label("Version").select_option("3")
    await snmp.get_by_label("User (v3)").fill("tonerwatch")
    await snmp.get_by_label("Auth protocol").select_option("SHA256")
    await snmp.get_by_label("Auth key").fill("short")
    await snmp.get_by_role("button", name="Save SNMP access").click()
    await expect(page.locator("body")).to_contain_text("8 characters")

    # On a phone: no sideways scrolling.
    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await phone.add_cookies(await context.cookies())
    p2 = await phone.new_page()
    await p2.goto(url)
    await no_horizontal_scroll(p2)
    await phone.close()
    await context.close()
