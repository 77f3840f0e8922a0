"""Bulk add: an MSP operator pastes a customer's list of printer addresses, or their asset CSV, and
gets one result per line: added, already known, or invalid with the reason. Bounded in size."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import Printer
from tonerwatch_api.db.tx import create_user, ensure_admin, in_tx
from tonerwatch_api.domain.bulk_add import parse_bulk
from tonerwatch_api.domain.errors import Invalid
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_shared import subjects as sj
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import PrinterConfigured

from .test_browser_ui import Api, api, browser, login, shoot
from .test_printer_page import csrf_of, log_in
from .test_rest import ADMIN_PW, bearer

__all__ = ["api", "browser"]  # fixtures, imported to be shared


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    in_tx(pg, lambda s: create_user(s, "viewer", "viewer password 1234", "viewer"))
    settings = Settings(session_secret="bulk-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(pg, bus, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


def test_a_plain_list_skips_blanks_and_comments_and_a_csv_is_known_by_its_header() -> None:
    rows = parse_bulk("# floor 2\n192.0.2.31\n\n  printer-finance.acme.example  \n192.0.2.9 HP\n")
    assert [(r.line, r.fields.get("address"), r.error) for r in rows] == [
        (2, "192.0.2.31", None),
        (4, "printer-finance.acme.example", None),
        (5, "192.0.2.9 HP", rows[2].error),
    ]
    assert rows[2].error and "one address per line" in rows[2].error
    csv_rows = parse_bulk(
        'Address,Name,Site\n192.0.2.31,"Reception, colour",acme-hq\n,No address\n1,2,3,4\n'
    )
    assert csv_rows[0].fields == {
        "address": "192.0.2.31",
        "name": "Reception, colour",
        "site_id": "acme-hq",
    }
    assert csv_rows[1].error == "no address"
    assert csv_rows[2].error == "4 cells for 3 columns"
    with pytest.raises(Invalid, match="unknown CSV column 'colour'"):
        parse_bulk("address,colour\n192.0.2.31,red\n")
    with pytest.raises(Invalid, match="at most 1000 printers"):
        parse_bulk("\n".join(f"10.0.{i // 250}.{i % 250 + 1}" for i in range(1001)))
    with pytest.raises(Invalid, match="no address"):
        parse_bulk("\n# nothing\n")


async def test_a_list_of_addresses_gets_a_result_per_line_and_the_new_ones_are_polled(
    client: httpx.AsyncClient,
    pg: Engine,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
) -> None:
    apply_now(pg, configured(address="127.0.0.7", port=161, name="Finance HP"))
    h = await bearer(client)
    text = "127.0.0.5\n127.0.0.7\n\n127.0.0.5\nprinter finance\n999.1.1.1.1.1%%%\n127.0.0.6:161\n"
    r = await client.post(
        "/api/v1/printers/bulk",
        headers=h,
        json={"text": text, "community": "bulk-community", "monitored": True},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    outcomes = [(x["line"], x["outcome"]) for x in body["lines"]]
    assert outcomes[:4] == [(1, "added"), (2, "known"), (4, "known"), (5, "invalid")]
    assert body["lines"][1]["printer_id"] == "p-hp479"
    assert body["lines"][1]["reason"] == "already in site 'default' as Finance HP"
    assert body["lines"][2]["reason"] == "same address as line 1"
    assert "one address per line" in body["lines"][3]["reason"]
    assert body["added"] + body["known"] + body["invalid"] == len(body["lines"]) == 6
    new_id = body["lines"][0]["printer_id"]
    event = await wait_for_event(
        bus,
        bus.subjects.filter(sj.PRINTER_CONFIGURED),
        lambda e: isinstance(e, PrinterConfigured) and e.printer_id == new_id,
        timeout_s=10,
    )
    assert isinstance(event, PrinterConfigured)
    assert event.address == "127.0.0.5" and event.credentials.community == "bulk-community"
    # The same list again: nothing new.
    again = (
        await client.post("/api/v1/printers/bulk", headers=h, json={"text": "127.0.0.5\n"})
    ).json()
    assert again["added"] == 0 and again["lines"][0]["printer_id"] == new_id


async def test_a_csv_names_and_places_each_printer_and_reports_a_bad_site_per_line(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    h = await bearer(client)
    csv_text = (
        "address,name,location,port,site\n"
        "127.0.0.21,Reception colour,HQ 2nd floor,,\n"
        "127.0.0.22,Warehouse mono,Dock 3,1161,\n"
        "127.0.0.23,Nowhere,,,no-such-site\n"
        "127.0.0.24,Bad port,,99999,\n"
    )
    r = await client.post(
        "/api/v1/printers/bulk", headers=h, json={"text": csv_text, "monitored": False}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["outcome"] for x in body["lines"]] == ["added", "added", "invalid", "invalid"]
    assert body["lines"][2]["reason"] == "site_id: no site 'no-such-site'"
    assert body["lines"][3]["reason"].startswith("port: ")
    with Session(pg) as s:
        got = {
            p.address: (p.name, p.location, p.port, p.monitored, p.origin)
            for p in s.exec(select(Printer).where(Printer.address.startswith("127.0.0.2")))  # type: ignore[attr-defined]
        }
    assert got == {
        "127.0.0.21": ("Reception colour", "HQ 2nd floor", 161, False, "manual"),
        "127.0.0.22": ("Warehouse mono", "Dock 3", 1161, False, "manual"),
    }


async def test_bulk_add_is_bounded_and_needs_the_operator_role(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    many = "\n".join(f"127.1.{i // 250}.{i % 250 + 1}" for i in range(1001))
    r = await client.post("/api/v1/printers/bulk", headers=h, json={"text": many})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "text"
    assert "at most 1000" in r.json()["error"]
    huge = await client.post("/api/v1/printers/bulk", headers=h, json={"text": "1" * 200_001})
    assert huge.status_code in (413, 422)
    unknown = await client.post(
        "/api/v1/printers/bulk", headers=h, json={"text": "address,colour\n127.0.0.1,red\n"}
    )
    assert unknown.status_code == 422 and "unknown CSV column" in unknown.json()["error"]
    viewer = await bearer(client, "viewer", "viewer password 1234")
    refused = await client.post("/api/v1/printers/bulk", headers=viewer, json={"text": "127.0.0.1"})
    assert refused.status_code == 403


async def test_the_bulk_form_shows_each_lines_result(client: httpx.AsyncClient) -> None:
    await log_in(client)
    page = await client.get("/printers/bulk")
    assert page.status_code == 200
    r = await client.post(
        "/printers/bulk",
        data={"csrf": csrf_of(page.text), "text": "127.0.0.31\n127.0.0.31\nnot an address\n"},
    )
    assert r.status_code == 200
    rows = re.findall(r'data-line="(\d+)" data-outcome="(\w+)"', r.text)
    assert rows == [("1", "added"), ("2", "known"), ("3", "invalid")]
    assert "1 added" in r.text


async def test_bulk_add_in_chromium_from_the_add_printer_page(browser: Browser, api: Api) -> None:
    page = await browser.new_page()
    await login(page, api.url)
    await page.goto(f"{api.url}/printers/new")
    await page.get_by_role("link", name="Add a list or a CSV").click()
    await expect(page.get_by_role("heading", name="Add printers in bulk")).to_be_visible()
    await page.get_by_label("Addresses or CSV").fill(
        "address,name\n127.0.0.41,Front desk\n127.0.0.41,Twice\nbad address,Nope\n"
    )
    await page.get_by_role("button", name="Add printers").click()
    result = page.locator("#bulk-result")
    await expect(result).to_contain_text("1 added")
    await expect(result.locator("tr[data-outcome=known]")).to_contain_text("same address as line 2")
    await expect(result.locator("tr[data-outcome=invalid]")).to_contain_text(
        "not an IP address or host name"
    )
    await shoot(page, "bulk-add")
    await result.locator("tr[data-outcome=added]").get_by_role("link", name="open").click()
    await expect(page.get_by_role("heading", name="Front desk")).to_be_visible()
    await page.close()
