"""Alerting in a real browser: desktop notifications beside the toasts, alert settings from Settings."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from playwright.async_api import Browser, ViewportSize, expect

from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import (
    AlertResolved,
    AlertSettingsConfigured,
    Event,
    MailServerConfigured,
    PrinterConfigured,
    ThresholdCrossed,
)

from .test_browser_ui import Api, api, browser, login, shoot

__all__ = ["api", "browser"]  # fixtures, imported to be shared
LAPTOP: ViewportSize = {"width": 1366, "height": 860}

# Stands in for the browser's Notification: records what is shown, grants when asked.
NOTIFICATION_SPY = """
window.__notes = [];
window.__asked = 0;
class NotificationSpy {
  constructor(title, options) { window.__notes.push({ title: title, body: (options || {}).body }); }
}
NotificationSpy.permission = "default";
NotificationSpy.requestPermission = function () {
  window.__asked += 1;
  NotificationSpy.permission = "granted";
  return Promise.resolve("granted");
};
window.Notification = NotificationSpy;
"""


async def test_enabling_desktop_notifications_shows_alerts_on_the_desktop_too(
    browser: Browser, api: Api, bus: Bus, configured: Callable[..., PrinterConfigured]
) -> None:
    await bus.publish(configured())
    context = await browser.new_context(viewport=LAPTOP)
    await context.add_init_script(NOTIFICATION_SPY)
    page = await context.new_page()
    await login(page, api.url)
    await page.goto(f"{api.url}/alerts")
    button = page.get_by_role("button", name="Enable desktop notifications")
    await expect(button).to_be_visible()
    await button.click()
    await expect(button).to_be_hidden()
    assert await page.evaluate("window.__asked") == 1
    await expect(page.locator("body[data-live=connected]")).to_have_count(1, timeout=10000)
    await bus.publish(
        ThresholdCrossed(
            source="alerter/test",
            site_id="default",
            printer_id="p-hp479",
            alert_id="p-hp479:4:low",
            rule="low",
            severity="warning",
            message="Yellow Cartridge HP W2032A at 8% — about 6 days left",
            supply_index="4",
        )
    )
    await expect(page.locator("#toasts .toast")).to_be_visible(timeout=10000)
    notes = await page.evaluate("window.__notes")
    assert len(notes) == 1 and notes[0]["body"] == (
        "Yellow Cartridge HP W2032A at 8% — about 6 days left"
    )
    assert notes[0]["title"] in ("Finance HP", "p-hp479")
    await context.close()

    # With the permission already granted (real Chromium), there is nothing to ask: no button.
    granted = await browser.new_context(viewport=LAPTOP)
    await granted.grant_permissions(["notifications"], origin=api.url)
    page = await granted.new_page()
    await login(page, api.url)
    await page.goto(f"{api.url}/alerts")
    assert await page.evaluate("Notification.permission") == "granted"
    await expect(page.get_by_role("button", name="Enable desktop notifications")).to_be_hidden()
    await granted.close()


async def test_settings_form_saves_a_sites_thresholds_and_announces_them(
    browser: Browser, api: Api, bus: Bus
) -> None:
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await page.goto(f"{api.url}/settings")
    form = page.locator("form[data-alert-site=default]")
    await form.get_by_label("Low at (%)", exact=True).fill("30")
    await form.get_by_label("Reorder lead time (days)").fill("10")
    await form.get_by_label("Mail recipients (one a line)").fill(
        "facilities@example.org\nit@example.org"
    )
    # What applies before anything is saved: the defaults, named as such.
    in_force = form.locator("[data-in-force=default]")
    await expect(in_force).to_contain_text("low at 20% (default)")
    await expect(in_force).to_contain_text("reorder lead time 7 days (default)")
    # Per-kind rules are a form: one row per supply kind, the site's value in force greyed.
    await form.locator("details.kind-rules summary").click()
    ink_low = form.get_by_label("Low at (%) for ink", exact=True)
    assert await ink_low.get_attribute("placeholder") == "20"
    await ink_low.fill("35")
    await form.get_by_label("Lead time (days) for drum", exact=True).fill("21")

    def saved(e: Event) -> bool:
        return isinstance(e, AlertSettingsConfigured) and e.low_percent == 30

    await form.get_by_role("button", name="Save alerts of").click()
    event = await wait_for_event(
        bus, bus.subjects.filter(sj.ALERT_SETTINGS_CONFIGURED, keyed=False), saved, timeout_s=15
    )
    assert isinstance(event, AlertSettingsConfigured)
    assert event.site_id == "default" and event.lead_time_days == 10
    assert event.recipients == ("facilities@example.org", "it@example.org")
    kinds = {k.value: v for k, v in event.kinds.items()}
    assert sorted(kinds) == ["drum", "ink"]
    assert kinds["ink"].low_percent == 35 and kinds["ink"].critical_percent is None
    assert kinds["drum"].lead_time_days == 21 and kinds["drum"].low_percent is None
    # The page reloads after a save: the form then shows who saved it, and the values.
    await expect(form.locator("h3")).to_contain_text("saved by admin", timeout=10000)
    await expect(form.get_by_label("Low at (%)", exact=True)).to_have_value("30")
    await expect(in_force).to_contain_text("low at 30% (set here)")
    await expect(in_force).to_contain_text("critical at 5% (default)")
    await expect(form.get_by_label("Low at (%) for ink", exact=True)).to_have_value("35")
    assert (
        await form.get_by_label("Low at (%) for toner", exact=True).get_attribute("placeholder")
        == "30"
    )
    # The change is audited with who made it and the site by name.
    await expect(page.locator("#changes")).to_contain_text("site.alert_settings")
    # A bad address is refused with the field named, and nothing is saved.
    await form.get_by_label("Mail recipients (one a line)").fill("not an address")
    await form.get_by_role("button", name="Save alerts of").click()
    await expect(page.locator("#settings-error")).to_contain_text("recipients.0")
    await shoot(page, "settings-alerting-laptop")
    await context.close()


async def test_settings_add_a_mail_server_whose_password_is_never_shown_back(
    browser: Browser, api: Api, bus: Bus
) -> None:
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await page.goto(f"{api.url}/settings")
    await expect(page.locator("#no-mail-servers")).to_be_visible()
    form = page.locator("#add-mail-server")
    await form.get_by_label("Server name").fill("office-relay")
    await form.get_by_label("SMTP host").fill("127.0.0.1")
    await form.get_by_label("SMTP port").fill("2525")
    await form.get_by_label("Security").select_option("none")
    await form.get_by_label("SMTP user").fill("tonerwatch")
    await form.get_by_label("SMTP password").fill("smtp-browser-secret")
    await form.get_by_label("From address").fill("tonerwatch@example.org")

    def added(e: Event) -> bool:
        return isinstance(e, MailServerConfigured) and e.name == "office-relay"

    await form.get_by_role("button", name="Add mail server").click()
    event = await wait_for_event(
        bus, MailServerConfigured.subject_filter(bus.subjects), added, timeout_s=15
    )
    assert isinstance(event, MailServerConfigured)
    assert (event.host, event.port, event.security) == ("127.0.0.1", 2525, "none")
    row = page.locator("tr[data-mail-server=office-relay]")
    await expect(row).to_contain_text("127.0.0.1:2525", timeout=10000)
    await expect(row).to_contain_text("tonerwatch (password set)")
    assert "smtp-browser-secret" not in await page.content()
    # Edit the port: the password, left empty, is kept.
    await row.get_by_text("Edit").click()
    edit = row.locator("form")
    await edit.get_by_label("SMTP port").fill("2526")
    await edit.get_by_role("button", name="Save office-relay").click()
    await expect(page.locator("tr[data-mail-server=office-relay]")).to_contain_text(
        "127.0.0.1:2526", timeout=10000
    )
    await expect(page.locator("tr[data-mail-server=office-relay]")).to_contain_text("password set")
    await expect(page.locator("#changes")).to_contain_text("mail_server.update")
    await shoot(page, "settings-mail-servers-laptop")
    await context.close()


async def test_the_alerts_page_updates_itself_as_alerts_are_raised_reworded_and_resolved(
    browser: Browser, api: Api, bus: Bus, configured: Callable[..., PrinterConfigured]
) -> None:
    await bus.publish(configured())
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await login(page, api.url)
    await page.goto(f"{api.url}/alerts")
    await expect(page.locator("#alerts-list")).to_contain_text("No alerts.")
    await expect(page.locator("body[data-live=connected]")).to_have_count(1, timeout=10000)
    await page.evaluate("window.__notReloaded = true")
    down = ThresholdCrossed(
        source="alerter/test",
        site_id="default",
        printer_id="p-hp479",
        alert_id="p-hp479:printer:unreachable",
        rule="unreachable",
        severity="critical",
        message="Printer unreachable: Finance HP — no answer in 3 polls",
    )
    await bus.publish(down)
    row = page.locator("#alerts-list tr[data-alert]")
    await expect(row).to_have_count(1, timeout=15000)
    await expect(row).to_contain_text("no answer in 3 polls")
    # Select it: the selection survives the next update.
    await row.locator(".ack-pick").check()
    await expect(page.locator("#ack-selected")).to_have_text("Acknowledge selected (1)")
    # The reason changed while it stays down: the same alert, reworded, in place.
    await bus.publish(
        down.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "occurred_at": datetime.now(UTC),
                "message": "SNMP access refused: Finance HP — wrong auth key or protocol",
            }
        )
    )
    await expect(row).to_contain_text("SNMP access refused", timeout=15000)
    await expect(row).to_have_count(1)
    await expect(row.locator(".ack-pick")).to_be_checked()
    await expect(page.locator("#ack-selected")).to_have_text("Acknowledge selected (1)")
    # Resolved: gone from the open alerts.
    await bus.publish(
        AlertResolved(
            source="alerter/test",
            site_id="default",
            printer_id="p-hp479",
            alert_id="p-hp479:printer:unreachable",
            rule="unreachable",
            occurred_at=datetime.now(UTC) + timedelta(seconds=1),
        )
    )
    await expect(page.locator("#alerts-list")).to_contain_text("No alerts.", timeout=15000)
    assert await page.evaluate("window.__notReloaded") is True  # updated in place, not reloaded
    await context.close()
