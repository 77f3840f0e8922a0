"""Printer groups in a real browser: made and filled from Settings, a user made responsible for one,
announced to the alerter per printer, and the dashboard then showing that group's printers."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.async_api import Browser, ViewportSize, expect

from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import AlertSettingsConfigured, Event, PrinterConfigured

from .test_browser_ui import Api, api, browser, login, shoot

__all__ = ["api", "browser"]  # fixtures, imported to be shared
LAPTOP: ViewportSize = {"width": 1366, "height": 860}


async def test_a_group_made_in_settings_scopes_the_users_mail_and_dashboard(
    browser: Browser, api: Api, bus: Bus, configured: Callable[..., PrinterConfigured]
) -> None:
    await bus.publish(configured())  # p-hp479, "Finance HP"
    await bus.publish(configured(printer_id="p-hp-2", name="Reception HP", address="127.0.0.2"))
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await expect(page.get_by_text("Reception HP")).to_be_visible(timeout=10000)
    await expect(page.get_by_text("Finance HP")).to_be_visible(timeout=10000)

    await page.goto(f"{api.url}/settings")
    groups = page.locator("#groups")
    await groups.get_by_label("New group").fill("Finance")
    await groups.get_by_role("button", name="Add group").click()
    row = groups.locator("tr[data-group]")
    await expect(row).to_have_count(1, timeout=10000)
    gid = await row.get_attribute("data-group")
    await expect(row.locator("summary")).to_contain_text("0 printers")
    await row.locator("summary").click()
    await row.get_by_label("Finance HP").check()
    await row.get_by_role("button", name="Save printers of Finance").click()
    await expect(row.locator("summary")).to_contain_text("1 printer ·", timeout=10000)

    user = page.locator("tr[data-user=admin] form.user-alerting")
    await user.get_by_label("Alert mail of admin").fill("admin@example.org")
    await user.get_by_label("Finance").check()

    def announced(e: Event) -> bool:
        return isinstance(e, AlertSettingsConfigured) and bool(e.printer_recipients)

    await user.get_by_role("button", name="Save").click()
    event = await wait_for_event(
        bus,
        bus.subjects.filter(sj.ALERT_SETTINGS_CONFIGURED, keyed=False),
        announced,
        timeout_s=15,
    )
    assert isinstance(event, AlertSettingsConfigured)
    assert event.site_id == "default"
    assert event.printer_recipients == {"p-hp479": ("admin@example.org",)}
    assert event.recipients == ()
    await expect(user.get_by_label("Finance")).to_be_checked(timeout=10000)
    await shoot(page, "settings-groups-laptop")

    await page.goto(f"{api.url}/")
    await expect(page.locator("#scope")).to_contain_text("Showing your groups: Finance")
    await expect(page.get_by_text("Finance HP")).to_be_visible()
    await expect(page.get_by_text("Reception HP")).to_be_hidden()
    await page.get_by_role("link", name="Show all sites").click()
    await expect(page.get_by_text("Reception HP")).to_be_visible()
    # The group filter, chosen from the list, narrows to the group again.
    await page.get_by_label("Group", exact=True).select_option(label="Finance")
    await expect(page).to_have_url(re.compile(rf"[?&]group={gid}(&|$)"))
    await expect(page.get_by_text("Reception HP")).to_be_hidden()
    await expect(page.get_by_text("Finance HP")).to_be_visible()
    await context.close()
