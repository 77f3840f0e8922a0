"""The fleet page in a real browser (Debian's chromium via Playwright) against the real api service.

Cards say why a printer needs attention; the table view sorts, filters and searches, its
counters filter, the user's choices survive a reload; both views update themselves as
readings and alerts arrive. Takes the README's screenshot of the fleet table
(docs/screenshots/fleet-table.png) when TONERWATCH_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import Browser, Page, ViewportSize, expect

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.printer.model import PrinterStatus

from .fleet_seed import alert, by_id, mono, reading_of, seed_fleet
from .test_browser_ui import Api, api, browser, login, no_horizontal_scroll, shoot

__all__ = ["api", "browser"]  # fixtures, imported to be shared
LAPTOP: ViewportSize = {"width": 1366, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}
# The README's screenshots are rewritten only when asked (TONERWATCH_UPDATE_SCREENSHOTS=1): a plain
# test run must leave the checkout clean; otherwise they go with the other test artifacts.
DOCS_SHOTS = (
    Path(__file__).resolve().parents[3]
    / ("docs" if os.environ.get("TONERWATCH_UPDATE_SCREENSHOTS") == "1" else "test-artifacts")
    / "screenshots"
)


async def open_fleet(browser: Browser, api: Api, bus: Bus) -> Page:
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await seed_fleet(page, bus)
    await page.goto(f"{api.url}/")
    await expect(page.locator("body[data-fleet-ready=true]")).to_have_count(1)
    return page


async def test_cards_say_why_with_colours_that_agree_with_alerts_and_no_raw_device_text(
    browser: Browser, api: Api, bus: Bus
) -> None:
    page = await open_fleet(browser, api, bus)
    cards = page.locator("article.printer")
    await expect(cards).to_have_count(10)

    jammed = page.locator("article.printer", has_text="Reception Brother")
    await expect(jammed.locator(".pill")).to_have_text("Needs action")
    await expect(jammed.locator(".reason.critical")).to_have_text("Paper jam")

    door = page.locator("article.printer", has_text="Lyon Ricoh")
    await expect(door.locator(".reasons")).to_contain_text("Door open")
    await expect(door.locator(".reasons")).to_contain_text("Waste toner bin 88% full")

    offline = page.locator("article.printer", has_text="Dock Xerox")
    await expect(offline.locator(".pill")).to_have_text("Offline")
    await expect(offline.locator(".reason.critical")).to_have_text(
        "Offline: no SNMP answer in 3 tries"
    )

    # The Kyocera says "low" itself, but its alert is critical: red, not amber.
    kyocera = page.locator("article.printer", has_text="Warehouse Kyocera")
    await expect(kyocera.locator(".reason.critical")).to_have_text("Black toner 3%")
    await expect(kyocera.locator("li.level-bar", has_text="TK-3170")).to_have_class(
        re.compile(r"\bsev-critical\b")
    )
    finance = page.locator("article.printer", has_text="Finance HP")
    await expect(finance.locator(".reason.warning")).to_have_text("Yellow toner 8%")

    # Configured, never polled: "No data", never a green OK.
    canon = page.locator("article.printer", has_text="Lyon Canon")
    await expect(canon.locator(".pill")).to_have_text("No data")
    await expect(canon.locator(".reason")).to_have_text("No data yet: not polled successfully")
    await expect(canon).not_to_have_class(re.compile("status-ok"))

    # Raw device text is translated: level -3 of 100 is "some left", a serial suffix is dropped.
    lyon_hp = page.locator("article.printer", has_text="Lyon HP")
    await expect(lyon_hp.locator("li.level-bar").first.locator(".bar-value")).to_have_text(
        "some left"
    )
    await expect(lyon_hp.locator(".reason.info")).to_have_text("Low paper")
    fleet_text = await page.locator("#fleet-cards").inner_text()
    assert "-3/" not in fleet_text and "SN0000000" not in fleet_text and ";SN" not in fleet_text
    await expect(page.locator("article.printer", has_text="Warehouse HP")).to_contain_text(
        "Black Toner Cartridge"
    )

    # The counters filter the cards.
    await page.locator("#fleet-summary a.counter[data-status=offline]").click()
    await expect(page).to_have_url(re.compile(r"[?&]status=offline"))
    await expect(cards).to_have_count(1)
    await expect(cards).to_contain_text("Dock Xerox")
    await shoot(page, "fleet-cards-filtered-laptop")
    await page.goto(f"{api.url}/")
    await expect(cards).to_have_count(10)
    await shoot(page, "fleet-cards-laptop")
    await page.context.close()


async def test_the_table_sorts_filters_searches_and_remembers_the_users_choice(
    browser: Browser, api: Api, bus: Bus
) -> None:
    page = await open_fleet(browser, api, bus)
    await page.get_by_role("button", name="Table", exact=True).click()
    table = page.locator("#fleet-table")
    await expect(table).to_be_visible()
    await expect(page.locator("#fleet-cards")).to_be_hidden()
    rows = table.locator("tbody tr")
    await expect(rows).to_have_count(10)
    # Default order: attention first (offline, then needs action).
    await expect(rows.first).to_contain_text("Dock Xerox")
    kyocera = rows.filter(has_text="Warehouse Kyocera")
    await expect(kyocera.locator("td").nth(1)).to_have_text("Warehouse")
    await expect(kyocera.locator("td").nth(2)).to_have_text("Logistics")
    await expect(kyocera.locator("td").nth(3)).to_have_text("Kyocera · ECOSYS M3655idn")
    await expect(kyocera.locator("td").nth(4)).to_have_text("127.0.20.21")
    await expect(kyocera.locator("td.worst")).to_have_class(re.compile("sev-critical"))
    await expect(kyocera.locator("td.worst")).to_contain_text("Black toner 3%")
    await expect(kyocera.locator("td").nth(7)).to_have_text("2")
    await expect(kyocera.locator("td").nth(9)).to_have_text("201,544")
    await expect(rows.filter(has_text="Lyon Canon").locator("td").nth(8)).to_have_text("never")

    # The README's screenshot: the table of a sensible fleet, taken here in Chromium.
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    await page.locator("#fleet-table").scroll_into_view_if_needed()
    await page.screenshot(path=str(DOCS_SHOTS / "fleet-table.png"), full_page=True)

    # Sort by pages, most first; then by worst supply.
    await table.get_by_role("button", name="Pages").click()
    await table.get_by_role("button", name="Pages").click()
    await expect(table.locator("th", has_text="Pages")).to_have_attribute("aria-sort", "descending")
    await expect(rows.first).to_contain_text("Lyon Ricoh")
    await expect(rows.last).to_contain_text("Lyon Canon")  # no count: last either way
    await table.get_by_role("button", name="Worst supply").click()
    await expect(rows.first).to_contain_text("Warehouse Kyocera")

    # Filter by each kind of column.
    await table.get_by_label("Filter by site").fill("lyon")
    await expect(rows).to_have_count(3)
    await table.get_by_label("Filter by site").fill("")
    await table.get_by_label("Filter by group").fill("finance")
    await expect(rows).to_have_count(2)
    await table.get_by_label("Filter by group").fill("")
    await table.get_by_label("Filter by vendor or model").fill("kyocera")
    await expect(rows).to_have_count(2)
    await table.get_by_label("Filter by vendor or model").fill("")
    await table.get_by_label("Filter by address").fill("127.0.30.")
    await expect(rows).to_have_count(3)
    await table.get_by_label("Filter by address").fill("")
    await table.get_by_label("Filter by worst supply").select_option("critical")
    await expect(rows).to_have_count(1)
    await table.get_by_label("Filter by worst supply").select_option("")
    await table.get_by_label("Filter by days left").select_option("7")
    await expect(rows).to_have_count(2)  # the Kyocera (2 days) and the Finance HP (6 days)
    await table.get_by_label("Filter by days left").select_option("")
    await table.get_by_label("Filter by last seen").select_option("3600")
    await expect(rows).to_have_count(2)  # the Xerox (2 h) and the never-seen Canon
    await table.get_by_label("Filter by last seen").select_option("")
    await table.get_by_label("Filter by pages (at least)").fill("100000")
    await expect(rows).to_have_count(3)
    await table.get_by_label("Filter by pages (at least)").fill("")
    await table.get_by_label("Filter by printer").fill("hp")
    await expect(rows).to_have_count(4)
    await table.get_by_label("Filter by printer").fill("")
    # Search looks in every column, reasons included.
    await page.get_by_label("Search the table").fill("paper jam")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("Reception Brother")
    await page.get_by_label("Search the table").fill("")

    # The counters filter the table; the status filter and the counter agree.
    await page.locator("#fleet-summary a.counter[data-status=critical]").click()
    await expect(rows).to_have_count(2)
    await expect(table.get_by_label("Filter by status")).to_have_value("critical")
    await expect(page.locator("a.counter[data-status=critical]")).to_have_attribute(
        "aria-pressed", "true"
    )
    await table.get_by_role("button", name="Days left").click()
    await expect(rows.first).to_contain_text("Warehouse Kyocera")

    # Reloaded: the table, its sort and its filter come back.
    await page.reload()
    await expect(page.locator("body[data-fleet-view=table]")).to_have_count(1)
    await expect(rows).to_have_count(2)
    await expect(table.get_by_label("Filter by status")).to_have_value("critical")
    await expect(table.locator("th", has_text="Days left")).to_have_attribute(
        "aria-sort", "ascending"
    )
    await table.get_by_role("button", name="Clear filters").click()
    await expect(rows).to_have_count(10)

    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await phone.add_cookies(await page.context.cookies())
    p2 = await phone.new_page()
    await p2.goto(f"{api.url}/")
    await p2.get_by_role("button", name="Table", exact=True).click()
    await expect(p2.locator("#fleet-table tbody tr")).to_have_count(10)
    await shoot(p2, "fleet-table-phone")
    await no_horizontal_scroll(p2)
    await phone.close()
    await page.context.close()


async def test_both_views_update_themselves_as_readings_and_alerts_arrive(
    browser: Browser, api: Api, bus: Bus
) -> None:
    page = await open_fleet(browser, api, bus)
    await expect(page.locator("body[data-live=connected]")).to_have_count(1, timeout=10000)
    board = by_id("p-board-hp")

    # Cards: the Board room HP's toner drops to 4% and the alerter raises a critical alert.
    card_ = page.locator("article.printer", has_text="Board room HP")
    await expect(card_.locator(".pill")).to_have_text("OK")
    low = mono(4, black_name="Black Cartridge HP CF259A")
    await bus.publish(reading_of(board, datetime.now(UTC), supplies=tuple(low)))
    await bus.publish(
        alert(board, "critical", "critical", "Toner critically low: Board room HP — 4%", low[0])
    )
    await expect(card_.locator(".pill")).to_have_text("Needs action", timeout=15000)
    await expect(card_.locator(".reason.critical")).to_have_text("Black toner 4%")
    await expect(card_.locator("li.level-bar").first.locator(".bar-value")).to_have_text("4%")

    # Table: the Legal Kyocera jams; its row changes without a reload.
    await page.get_by_role("button", name="Table", exact=True).click()
    row = page.locator("#fleet-table tbody tr", has_text="Legal Kyocera")
    await expect(row.locator(".pill")).to_have_text("OK")
    legal = by_id("p-legal-kyo")
    await bus.publish(
        reading_of(
            legal,
            datetime.now(UTC),
            status=PrinterStatus(device_status="down", printer_status="idle", errors=("jammed",)),
        )
    )
    await expect(row.locator(".pill")).to_have_text("Needs action", timeout=15000)
    await expect(row.locator(".reason").first).to_have_text("Paper jam")
    await expect(page.locator("a.counter[data-status=critical]")).to_contain_text("4 needs action")
    await page.context.close()


async def test_alerts_filter_by_site_kind_severity_and_printer_and_acknowledge_several(
    browser: Browser, api: Api, bus: Bus
) -> None:
    page = await open_fleet(browser, api, bus)
    await page.goto(f"{api.url}/alerts?scope=all")
    rows = page.locator("table.alerts tbody tr")
    # The jam, the Kyocera critical, the Finance low, the forecast.
    await expect(rows).to_have_count(4)
    await page.get_by_label("Severity").select_option("critical")
    await expect(rows).to_have_count(2)
    await page.get_by_label("Kind").select_option("printer")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("Reception Brother")
    await page.goto(f"{api.url}/alerts?scope=all&site=warehouse")
    await expect(rows).to_have_count(2)  # the Kyocera's critical, the Warehouse HP's forecast
    await page.get_by_label("Printer").fill("Finance")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(0)  # the Finance HP is at Headquarters
    await page.goto(f"{api.url}/alerts?scope=all&printer=Finance")
    await expect(rows).to_have_count(1)
    await page.goto(f"{api.url}/alerts?scope=all")
    await page.get_by_label("Select every open alert").check()
    button = page.get_by_role("button", name=re.compile(r"Acknowledge selected \(\d+\)"))
    await button.click()
    await expect(page.locator("table.alerts")).to_contain_text("acknowledged by admin")
    await expect(page.locator(".ack-pick")).to_have_count(0)
    await shoot(page, "alerts-acknowledged-laptop")
    await page.context.close()
