"""Tenants in a real browser: the provider creates a customer with its first site and admin on the
Tenants page, switches to it from the header (remembered in the session), sees only its printers,
comes back, and disables it, after which the customer's admin cannot log in."""

from __future__ import annotations

from collections.abc import Callable

from playwright.async_api import Browser, ViewportSize, expect

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured

from .test_browser_ui import Api, api, browser, login, shoot

__all__ = ["api", "browser"]  # fixtures, imported to be shared
LAPTOP: ViewportSize = {"width": 1366, "height": 860}


async def test_provider_creates_a_customer_switches_to_it_and_disables_it(
    browser: Browser, api: Api, bus: Bus, configured: Callable[..., PrinterConfigured]
) -> None:
    await bus.publish(configured())  # p-hp479, "Finance HP", the provider's own default site
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await expect(page.get_by_text("Finance HP")).to_be_visible(timeout=10000)

    await page.get_by_role("link", name="Tenants").click()
    await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    form = page.locator("#tenant-form")
    await form.get_by_label("Tenant id").fill("acme")
    await form.get_by_label("Name", exact=True).fill("ACME Corporation")
    await form.get_by_label("First site id").fill("acme-hq")
    await form.get_by_label("First admin's username").fill("it@acme")
    await form.get_by_role("button", name="Create customer").click()
    await expect(page.locator("#tenant-created")).to_contain_text("ACME Corporation created")
    password = (await page.locator("#admin-password").inner_text()).strip()
    assert len(password) >= 16
    row = page.locator("tr[data-tenant=acme]")
    await expect(row).to_contain_text("ACME Corporation")
    await expect(row.locator("td").nth(2)).to_have_text("1")
    await shoot(page, "tenants-laptop")

    # A printer at the customer's site, then the switch from the header.
    await bus.publish(
        configured(printer_id="p-acme", site_id="acme-hq", name="ACME HP", address="127.0.0.2")
    )
    await page.goto(f"{api.url}/")
    switcher = page.locator("#tenant-switch select")
    await expect(switcher.locator("option")).to_have_count(2, timeout=10000)
    await switcher.select_option(label="ACME Corporation")
    await expect(page.locator("#acting-banner")).to_contain_text("acme", timeout=10000)
    await expect(page.get_by_text("ACME HP")).to_be_visible(timeout=10000)
    await expect(page.get_by_text("Finance HP")).to_be_hidden()
    # Remembered in the session: another page is still the customer's.
    await page.goto(f"{api.url}/settings")
    await expect(page.locator("#acting-banner")).to_be_visible()
    await expect(page.locator("#tenant-switch select")).to_have_value("acme", timeout=10000)
    await shoot(page, "tenant-acting-laptop")
    await page.locator("#acting-banner").get_by_role("button", name="Back to default").click()
    await expect(page.locator("#acting-banner")).to_be_hidden()
    await page.goto(f"{api.url}/")
    await expect(page.get_by_text("Finance HP")).to_be_visible(timeout=10000)
    await expect(page.get_by_text("ACME HP")).to_be_hidden()

    # The customer's admin logs in and sees only theirs: no Tenants page, no switcher.
    customer = await browser.new_context(viewport=LAPTOP)
    them = await customer.new_page()
    await them.goto(f"{api.url}/login")
    await them.get_by_label("Username").fill("it@acme")
    await them.get_by_label("Password").fill(password)
    await them.get_by_role("button", name="Log in").click()
    await expect(them.get_by_text("ACME HP")).to_be_visible(timeout=10000)
    await expect(them.get_by_text("Finance HP")).to_be_hidden()
    await expect(them.get_by_role("link", name="Tenants")).to_have_count(0)
    await expect(them.locator("#tenant-switch")).to_have_count(0)
    assert (await them.goto(f"{api.url}/tenants")) is not None
    await expect(them.get_by_text("for the provider's admins")).to_be_visible()

    # Disabled from the Tenants page: the customer's session is refused at once.
    await page.goto(f"{api.url}/tenants")
    await page.locator("tr[data-tenant=acme]").get_by_role("button", name="Disable").click()
    await expect(page.locator("tr[data-tenant=acme]")).to_contain_text("disabled")
    await them.goto(f"{api.url}/")
    await expect(them).to_have_url(f"{api.url}/login?next=/")
    await customer.close()
    await context.close()
