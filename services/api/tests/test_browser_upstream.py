"""The upstream half in a real browser (issue 13): the Orders page's "Order now" line, "Order again"
on a printer page, and a site's account form whose details go upstream with its orders."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from playwright.async_api import Browser, Page, ViewportSize, expect

from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import (
    Event,
    OrderChanged,
    PrinterConfigured,
    SupplyReading,
    ThresholdCrossed,
)

from .test_browser_ui import Api, api, browser, login

__all__ = ["api", "browser"]  # fixtures, imported to be shared
LAPTOP: ViewportSize = {"width": 1366, "height": 860}
YELLOW = "Yellow Cartridge HP W2032A"


def yellow_low(printer_id: str = "p-hp479") -> ThresholdCrossed:
    return ThresholdCrossed(
        source="alerter/test",
        site_id="default",
        printer_id=printer_id,
        alert_id=f"{printer_id}:4:low",
        rule="low",
        severity="warning",
        supply_index="4",
        part_number="W2032A",
        percent=8.0,
        message=f"{YELLOW} at 8%",
    )


async def until_shown(page: Page, url: str, locator: str) -> None:
    """Open url until locator is there (the api applies the events in the background)."""
    for _ in range(90):
        await page.goto(url)
        if await page.locator(locator).count():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{locator} never showed on {url}")


async def created_order(bus: Bus, printer_id: str, count: int = 1) -> list[OrderChanged]:
    seen: list[OrderChanged] = []

    def collect(e: Event) -> bool:
        if isinstance(e, OrderChanged) and e.change == "created" and e.printer_id == printer_id:
            seen.append(e)
        return len(seen) == count

    await wait_for_event(bus, bus.subjects.filter("order.changed"), collect, timeout_s=15)
    return seen


async def test_order_now_places_the_suggested_line_with_one_click(
    browser: Browser,
    api: Api,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    # Two printers of the site low on the same yellow toner: one line, "Order 2".
    for pid, address in (("p-hp479", "127.0.0.1"), ("p-hp-2", "127.0.0.2")):
        await bus.publish(configured(printer_id=pid, address=address))
        await bus.publish(reading(printer_id=pid))
        await bus.publish(yellow_low(pid))
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    line = '#suggestions tr[data-key="default/W2032A"]'

    async def both_needs_shown() -> None:
        for _ in range(90):
            await page.goto(f"{api.url}/orders")
            row = page.locator(line)
            if await row.count() and "Order 2" in await row.inner_text():
                return
            await asyncio.sleep(0.5)
        raise AssertionError("the two yellow toners never made one suggestion line")

    await both_needs_shown()
    row = page.locator(line)
    await expect(page.get_by_role("heading", name="Order now")).to_be_visible()
    await expect(row).to_contain_text("W2032A")
    await expect(row).to_contain_text("low")
    await row.get_by_role("button", name="Order 2").click()

    # One click: both orders placed as one batch; the line is gone, the orders are listed.
    orders = await created_order(bus, "p-hp479") + await created_order(bus, "p-hp-2")
    assert {o.part_number for o in orders} == {"W2032A"}
    assert orders[0].batch_id is not None and orders[0].batch_id == orders[1].batch_id
    await expect(page.locator(line)).to_have_count(0, timeout=10000)
    listed = page.locator("table.orders tr.order", has_text="W2032A")
    await expect(listed).to_have_count(2)
    await expect(listed.first.locator(".pill")).to_have_text("Requested")


async def test_order_again_needs_the_box_ticked_when_one_is_on_order(
    browser: Browser,
    api: Api,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    await bus.publish(configured())
    await bus.publish(reading())
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    button = f'button[aria-label="Order {YELLOW}"]'
    await until_shown(page, f"{api.url}/printers/p-hp479", button)

    await page.locator(button).click()
    form = page.get_by_role("form", name=f"Order {YELLOW}")
    await expect(form.get_by_label("Order again", exact=False)).to_have_count(0)
    await form.get_by_role("button", name="Place order").click()
    await expect(page.locator("td.order-cell .on-order")).to_have_text("1 on order", timeout=10000)

    # A second order for the same supply: the form offers "Order again"; without it, refused.
    await page.locator(button).click()
    form = page.get_by_role("form", name=f"Order {YELLOW}")
    again = form.get_by_label("Order again although 1 is on order")
    await expect(again).to_be_visible()
    await form.get_by_role("button", name="Place order").click()
    error = page.locator("#settings-error")
    await expect(error).to_be_visible(timeout=10000)
    await expect(error).to_contain_text("open order")
    await expect(page.locator("td.order-cell .on-order")).to_have_text("1 on order")
    await again.check()
    await form.get_by_role("button", name="Place order").click()
    await expect(page.locator("td.order-cell .on-order")).to_have_text("2 on order", timeout=10000)
    await expect(page.locator("#orders table.orders tr.order")).to_have_count(2)
    assert len(await created_order(bus, "p-hp479", 2)) == 2


async def test_the_sites_account_is_saved_and_goes_with_its_next_order(
    browser: Browser,
    api: Api,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    await bus.publish(configured())
    await bus.publish(reading())
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await page.goto(f"{api.url}/settings")
    await page.locator("#account-default summary").click()
    form = page.get_by_role("form", name="Account of default")
    await form.get_by_label("Customer number").fill("C-100234")
    await form.get_by_label("Ship to").fill("ACME Ltd, Facilities")
    await form.get_by_label("Address").fill("1 Dock Road\nLondon E16 1AA")
    await form.get_by_label("Country").fill("GB")
    await form.get_by_label("Billing contact").fill("Dana Ledger")
    await form.get_by_label("Billing e-mail").fill("accounts@acme.example")
    async with page.expect_navigation():  # saved, the page reloads
        await form.get_by_role("button", name="Save account").click()

    # Saved: the reloaded page shows it.
    await page.locator("#account-default summary").click()
    form = page.get_by_role("form", name="Account of default")
    await expect(form.get_by_label("Customer number")).to_have_value("C-100234", timeout=10000)
    await expect(form.get_by_label("Address")).to_have_value("1 Dock Road\nLondon E16 1AA")
    await expect(form.get_by_label("Billing e-mail")).to_have_value("accounts@acme.example")

    # The site's next order carries the account upstream.
    button = f'button[aria-label="Order {YELLOW}"]'
    await until_shown(page, f"{api.url}/printers/p-hp479", button)
    await page.locator(button).click()
    await (
        page.get_by_role("form", name=f"Order {YELLOW}")
        .get_by_role("button", name="Place order")
        .click()
    )
    (created,) = await created_order(bus, "p-hp479")
    assert created.account is not None
    assert (created.account.customer_number, created.account.ship_to_country) == ("C-100234", "GB")
    assert created.account.billing_email == "accounts@acme.example"
