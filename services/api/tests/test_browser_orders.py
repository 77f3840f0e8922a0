"""Orders in a real browser: order a cartridge from the printer page, move it on, find it on Orders."""

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

from .test_browser_ui import Api, api, browser, login, no_horizontal_scroll, shoot

__all__ = ["api", "browser"]  # fixtures, imported to be shared
LAPTOP: ViewportSize = {"width": 1366, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}
YELLOW = "Yellow Cartridge HP W2032A"


async def printer_with_supplies(page: Page, url: str) -> None:
    """Open the printer page once the api has stored its supplies and its alert."""
    # Up to 45 s: a reading or alert that beats its printer is retried with a growing back-off,
    # which a loaded machine stretches (seen failing at 20 s with two other suites running).
    for _ in range(90):
        await page.goto(f"{url}/printers/p-hp479")
        supplies = await page.get_by_role("button", name=f"Order {YELLOW}").count()
        alerts = await page.locator("#alerts tbody tr").count()
        if supplies and alerts:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the printer's supplies and alert never showed")


async def test_order_a_cartridge_from_the_printer_page_and_follow_it_on_orders(
    browser: Browser,
    api: Api,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    await bus.publish(configured())
    await bus.publish(reading())
    await bus.publish(
        ThresholdCrossed(
            source="alerter/test",
            site_id="default",
            printer_id="p-hp479",
            alert_id="p-hp479:4:low",
            rule="low",
            severity="warning",
            supply_index="4",
            part_number="W2032A",
            percent=8.0,
            message=f"{YELLOW} at 8%",
        )
    )
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await printer_with_supplies(page, api.url)

    # The supply's Order button opens a form with its part number filled in.
    await page.get_by_role("button", name=f"Order {YELLOW}").click()
    form = page.get_by_role("form", name=f"Order {YELLOW}")
    await expect(form).to_be_visible()
    await expect(form.get_by_label("Part number")).to_have_value("W2032A")
    await form.get_by_label("Quantity").fill("2")
    await form.get_by_label("Supplier").fill("Office Supplies Ltd")
    await form.get_by_label("Notes").fill("Reception, 2nd floor")
    await shoot(page, "printer-order-form-laptop")
    await form.get_by_role("button", name="Place order").click()

    # Back on the printer page: the order is listed and the supply shows it is on order.
    orders = page.locator("#orders table.orders")
    row = orders.locator("tr.order", has_text="2 × W2032A")
    await expect(row).to_be_visible(timeout=10000)
    await expect(row.locator(".pill")).to_have_text("Requested")
    await expect(row).to_contain_text(YELLOW)
    await expect(row).to_contain_text("Office Supplies Ltd")
    await expect(page.locator("td.order-cell .on-order")).to_have_text("2 on order")
    await row.get_by_role("button", name="Mark ordered").click()
    await expect(orders.locator("tr.order .pill")).to_have_text("Ordered", timeout=10000)
    await shoot(page, "printer-orders-laptop")

    # The Orders page lists it with its printer; Edit records the supplier's reference.
    await page.get_by_role("navigation").get_by_role("link", name="Orders").click()
    await expect(page.get_by_role("heading", name="Orders")).to_be_visible()
    listed = page.locator("table.orders tr.order", has_text="2 × W2032A")
    await expect(listed).to_contain_text("Finance HP")
    await expect(listed.locator(".pill")).to_have_text("Ordered")
    await listed.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("form", name="Edit order")
    await edit.get_by_label("Supplier reference").fill("PO-2026-0412")
    await edit.get_by_role("button", name="Save").click()
    await expect(listed).to_contain_text("ref. PO-2026-0412", timeout=10000)
    await shoot(page, "orders-laptop")
    await page.locator("select[name=show]").select_option("delivered")
    await expect(page.locator("main")).to_contain_text("No orders match this filter")
    await expect(page.locator("table.orders")).to_have_count(0)

    # Each change went out as OrderChanged, answering the yellow toner's alert.
    seen: list[OrderChanged] = []

    def collect(e: Event) -> bool:
        if isinstance(e, OrderChanged):
            seen.append(e)
        return len(seen) == 3

    await wait_for_event(bus, bus.subjects.filter("order.changed"), collect, timeout_s=10)
    assert [(e.change, e.status) for e in seen] == [
        ("created", "requested"),
        ("status", "ordered"),
        ("updated", "ordered"),
    ]
    assert seen[0].alert_id == "p-hp479:4:low" and seen[0].quantity == 2
    assert seen[0].notes == "Reception, 2nd floor" and seen[2].supplier_reference == "PO-2026-0412"

    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await phone.add_cookies(await context.cookies())
    p2 = await phone.new_page()
    for path, name in (("/orders", "orders"), ("/printers/p-hp479", "printer-orders")):
        await p2.goto(api.url + path)
        await shoot(p2, f"{name}-phone")
        await no_horizontal_scroll(p2)
    await phone.close()
    await context.close()
