"""Site collectors in a real browser: on the Settings page an admin makes a site's enrolment token
(shown once, with the command to run at the site), the site trades it for its files and joins the
hub, and the "Revoke collector" button drops its link at once and has it refused from then on.

The api runs as a hub's api does: on the hub's own nats-server (the hub.conf `hub-config` wrote,
user `hub`), with the hub folder (`TONERWATCH_HUB_DIR`) and its leaf URL. Loopback only.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from playwright.async_api import Browser, Dialog, expect

from tonerwatch_api.service import Settings, run
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port
from tonerwatch_shared.hub import write_site_bundle
from tonerwatch_shared.sites import SiteCredentials, site_domain, site_leafnodes

from .test_browser_ui import PASSWORD, browser, login, shoot
from .test_enrolments import Hub, _leafs, _until, hub, hub_server

__all__ = ["browser", "hub", "hub_server"]  # fixtures, imported to be shared
LAPTOP = {"width": 1366, "height": 860}


@pytest_asyncio.fixture(loop_scope="session")
async def hub_api(
    tmp_path: Path, hub: Hub, hub_server: subprocess.Popen[bytes]
) -> AsyncIterator[str]:
    """The hub's api: SQLite, the hub's nats-server as user hub, the hub folder."""
    made = json.loads((hub.folder / "secrets.json").read_text())
    port = free_tcp_port()
    settings = Settings(
        nats_url=hub.client_url,
        nats_user="hub",
        nats_password=made["hub"],
        data_dir=tmp_path / "data",
        port=port,
        admin_password=PASSWORD,
        instance="hub-browser",
        hub_dir=hub.folder,
        hub_leaf_url=hub.leaf_url,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_an_admin_enrols_a_site_from_settings_and_revokes_its_collector(
    browser: Browser, hub_api: str, hub: Hub, tmp_path: Path
) -> None:
    context = await browser.new_context(viewport=LAPTOP)  # type: ignore[arg-type]
    page = await context.new_page()
    page.on("dialog", lambda d: asyncio.ensure_future(_accept(d)))
    await login(page, hub_api)
    await page.goto(f"{hub_api}/settings")
    form = page.locator("#sites form.add-form")
    await form.get_by_label("New site id").fill("acme-hq")
    await form.get_by_label("Name").fill("ACME headquarters")
    await form.get_by_role("button", name="Add site").click()
    row = page.locator("tr[data-site=acme-hq]")
    await expect(row).to_be_visible(timeout=10000)

    # The token, shown once with the command to run at the site.
    await row.get_by_role("button", name="Enrolment token for acme-hq").click()
    shown = page.locator("#enrolment")
    await expect(shown).to_be_visible(timeout=10000)
    await expect(page.locator("#enrolment-site")).to_have_text("acme-hq")
    token = (await page.locator("#enrolment-value").inner_text()).strip()
    assert token.startswith("twe_")
    await expect(page.locator("#enrolment-command")).to_have_text(
        f"tonerwatch collector --enrol {hub_api} --token {token}"
    )
    await shoot(page, "settings-enrolment-laptop")
    # Shown once: a reload shows no token.
    await page.reload()
    await expect(page.locator("#enrolment")).to_be_hidden()

    # The site trades it (once) for its files and joins the hub with them.
    async with httpx.AsyncClient(base_url=hub_api, timeout=10) as c:
        traded = await c.post("/api/v1/enrol", json={"token": token})
        assert traded.status_code == 200, traded.text
        assert (await c.post("/api/v1/enrol", json={"token": token})).status_code == 404
    path = write_site_bundle(traded.json(), tmp_path / "box" / "site", traded.json()["hub_url"])
    credentials = SiteCredentials.read(path)
    assert credentials.hub_url == hub.leaf_url
    leaf = EmbeddedNats(
        tmp_path / "box" / "nats",
        http_port=free_tcp_port(),
        server_name="collector-acme-hq",
        domain=site_domain("acme-hq"),
        extra=site_leafnodes(hub.leaf_url, credentials),
    )
    await asyncio.to_thread(leaf.start)
    try:

        async def joined() -> bool:
            return await _leafs(leaf) == 1

        async def dropped() -> bool:
            return await _leafs(leaf) == 0

        assert await _until(joined, 20.0), "the enrolled site never joined the hub"
        # Revoke from the page (confirmed): the link drops and stays refused.
        row = page.locator("tr[data-site=acme-hq]")
        await row.get_by_role("button", name="Revoke the collector of acme-hq").click()
        await expect(page.locator("#settings-error")).to_be_hidden()
        assert await _until(dropped, 10.0), "the revoked site's leaf is still connected"
        await asyncio.sleep(2.5)  # it retries every second
        assert await _leafs(leaf) == 0
        log = (hub.folder / "nats-server.log").read_text()
        assert "Authorization Violation" in log or "authentication error" in log.lower()
        # A revoked site gets no new token: the page says why.
        await page.reload()
        await row.get_by_role("button", name="Enrolment token for acme-hq").click()
        await expect(page.locator("#settings-error")).to_contain_text("revoked", timeout=10000)
        await expect(page.locator("#enrolment")).to_be_hidden()
    finally:
        await asyncio.to_thread(leaf.stop)
        await context.close()


async def _accept(dialog: Dialog) -> None:
    await dialog.accept()
