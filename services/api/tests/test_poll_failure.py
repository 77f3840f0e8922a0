"""A printer whose polls fail for a known reason shows it: API field (poll_failure and its words)
and the printer page (with a link to the SNMP access form); cleared by the next reading."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy.engine import Engine

from tonerwatch_api.projections.projector import apply_now
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured, PrinterUnreachable, SupplyReading

from .test_ui import browser, log_in  # noqa: F401 (the fixture)

REASON = (
    "the printer refused our SNMPv3 authentication (wrong auth key or protocol) "
    "(127.0.0.1:161 (SNMPv3): Wrong SNMP PDU digest)"
)


async def test_a_refused_v3_key_shows_on_the_printer_page_and_api_until_a_reading(
    pg: Engine,
    bus: Bus,
    browser: httpx.AsyncClient,  # noqa: F811
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    apply_now(pg, configured(printer_id="p-v3"))
    apply_now(
        pg,
        PrinterUnreachable(
            source="poller",
            site_id="default",
            printer_id="p-v3",
            address="127.0.0.1",
            consecutive_failures=1,
            reason=REASON,
            failure="auth_failed",
        ),
    )
    await log_in(browser)
    r = await browser.get("/api/v1/printers/p-v3")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["poll_failure"] == "auth_failed" and body["last_error"] == REASON
    assert "wrong auth key" in body["poll_failure_text"]
    page = await browser.get("/printers/p-v3")
    assert 'id="poll-failure"' in page.text and 'data-kind="auth_failed"' in page.text
    assert "Change the SNMP access" in page.text and "Wrong SNMP PDU digest" in page.text
    apply_now(pg, reading(printer_id="p-v3"))
    body = (await browser.get("/api/v1/printers/p-v3")).json()
    assert body["poll_failure"] is None and body["poll_failure_text"] is None
    assert 'id="poll-failure"' not in (await browser.get("/printers/p-v3")).text
