"""What to order now: suggestions from the alerts (low, critical, empty, the forecast within the
lead time) and the api's own forecast, one line per site and part number, and one call that turns
a line into orders."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_admin
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured, SupplyReading, ThresholdCrossed
from tonerwatch_shared.printer.model import PrinterIdentity

from .conftest import hp_supplies

ADMIN_PW = "suggestions-admin-password"
KONICA = PrinterIdentity(vendor="Konica Minolta", model="bizhub C250i", serial="A7PU021000123")


def crossed(pid: str, index: str, rule: str, **extra: Any) -> ThresholdCrossed:
    return ThresholdCrossed(
        source="alerter",
        site_id="default",
        printer_id=pid,
        alert_id=f"{pid}:{index}:{rule}",
        rule=rule,
        severity="critical" if rule in ("critical", "empty") else "warning",
        supply_index=index,
        kind="toner",
        message=f"{rule} on {pid}",
        occurred_at=datetime.now(UTC),
        **extra,
    )


@pytest.fixture
async def client(
    db: Engine,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> AsyncIterator[httpx.AsyncClient]:
    """Two HP M479fdw at one site, one low on black, one whose black the forecast says runs out
    within the lead time; a Konica C250i (no part numbers reported) low on cyan."""
    ensure_admin(db, ADMIN_PW)
    for pid, address in (("p-hp-finance", "127.0.0.11"), ("p-hp-reception", "127.0.0.12")):
        apply_now(db, configured(printer_id=pid, address=address))
        apply_now(db, reading(printer_id=pid))
    apply_now(db, configured(printer_id="p-konica", address="127.0.0.13"))
    bare = tuple(s.model_copy(update={"part_number": None}) for s in reading().supplies)
    apply_now(db, reading(printer_id="p-konica", printer=KONICA, supplies=bare))
    apply_now(db, crossed("p-hp-finance", "1", "low", percent=8.0))
    apply_now(db, crossed("p-hp-reception", "1", "forecast", percent=21.0, days_to_empty=4.5))
    apply_now(db, crossed("p-konica", "2", "critical", percent=3.0))
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(db, bus, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        r = await c.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PW})
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield c


async def test_a_sites_black_toners_running_low_within_the_lead_time_are_one_line(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/api/v1/orders/suggestions")
    assert r.status_code == 200, r.text
    lines = {line["key"]: line for line in r.json()["items"]}
    assert set(lines) == {"default/W2030A", "default/TN-328C"}
    black = lines["default/W2030A"]
    assert black["quantity"] == 2 and black["most_urgent"] == "low"
    assert black["days_to_empty"] == 4.5
    assert [(s["printer_id"], s["rule"]) for s in black["supplies"]] == [
        ("p-hp-finance", "low"),
        ("p-hp-reception", "forecast"),
    ]
    # The Konica reports no part number: the catalogue's, with its yield.
    cyan = lines["default/TN-328C"]
    assert cyan["from_catalogue"] is True and cyan["page_yield"] == 28000
    # Critical first.
    assert r.json()["items"][0]["key"] == "default/TN-328C"


async def test_one_call_orders_a_line_as_one_batch_and_it_is_suggested_no_more(
    client: httpx.AsyncClient,
) -> None:
    keyed = {"Idempotency-Key": "suggest-click-1"}
    r = await client.post(
        "/api/v1/orders/suggestions/order", json={"key": "default/W2030A"}, headers=keyed
    )
    assert r.status_code == 201, r.text
    batch = r.json()
    assert batch["batch_id"] and len(batch["items"]) == 2
    assert {o["printer_id"] for o in batch["items"]} == {"p-hp-finance", "p-hp-reception"}
    assert all(
        o["part_number"] == "W2030A" and o["batch_id"] == batch["batch_id"] for o in batch["items"]
    )
    # A retried click answers the same orders.
    again = await client.post(
        "/api/v1/orders/suggestions/order", json={"key": "default/W2030A"}, headers=keyed
    )
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert {o["id"] for o in again.json()["items"]} == {o["id"] for o in batch["items"]}
    # On order now: no longer suggested, and ordering the line again is 404.
    left = (await client.get("/api/v1/orders/suggestions")).json()["items"]
    assert [line["key"] for line in left] == ["default/TN-328C"]
    gone = await client.post("/api/v1/orders/suggestions/order", json={"key": "default/W2030A"})
    assert gone.status_code == 404
    # Ordering a supply of the line by hand is refused as a second open order.
    twice = await client.post(
        "/api/v1/orders", json={"printer_id": "p-hp-finance", "supply_index": "1"}
    )
    assert twice.status_code == 409
    assert (await client.get("/api/v1/orders?open=true")).json()["items"].__len__() == 2


async def test_the_orders_page_lists_suggestions_with_one_order_button_each(
    client: httpx.AsyncClient,
) -> None:
    del client.headers["Authorization"]
    page = await client.get("/login?next=/orders")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token
    r = await client.post(
        "/login",
        data={"username": "admin", "password": ADMIN_PW, "login_csrf": token.group(1)},
    )
    assert r.status_code == 303
    html = (await client.get("/orders")).text
    assert "Order now" in html and 'data-key="default/W2030A"' in html
    assert 'data-api="POST /api/v1/orders/suggestions/order"' in html
    assert '{"key": "default/W2030A"}' in html.replace("&#34;", '"') and "Order 2" in html


async def test_the_apis_own_forecast_suggests_without_waiting_for_an_alert(
    client: httpx.AsyncClient,
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    # No alert at all for this printer (the alerter may be down, or not forecasting yet): its
    # cyan falls 10 points a day, so the api's forecast says two days left, inside the 7-day lead.
    apply_now(db, configured(printer_id="p-hp-stock", address="127.0.0.14"))
    now = datetime.now(UTC)
    for ago, cyan in ((3, 50.0), (2, 40.0), (1, 30.0), (0, 20.0)):
        apply_now(
            db,
            reading(
                printer_id="p-hp-stock",
                supplies=hp_supplies(cyan=cyan),
                occurred_at=now - timedelta(days=ago),
            ),
        )
    lines = {x["key"]: x for x in (await client.get("/api/v1/orders/suggestions")).json()["items"]}
    cyan_line = lines["default/W2031A"]
    (supply,) = cyan_line["supplies"]
    assert (supply["printer_id"], supply["rule"], supply["alert_id"]) == (
        "p-hp-stock",
        "forecast",
        None,
    )
    assert 1.0 < supply["days_to_empty"] < 3.0 and cyan_line["most_urgent"] == "forecast"
    # The lead time in force counts: a site whose supplies come within a day has nothing to order.
    r = await client.put("/api/v1/sites/default/alert-settings", json={"lead_time_days": 1})
    assert r.status_code == 200, r.text
    keys = [x["key"] for x in (await client.get("/api/v1/orders/suggestions")).json()["items"]]
    assert "default/W2031A" not in keys
    # Back to 7 days: one click orders it, with no alert to answer.
    r = await client.put("/api/v1/sites/default/alert-settings", json={"lead_time_days": 7})
    assert r.status_code == 200, r.text
    placed = await client.post("/api/v1/orders/suggestions/order", json={"key": "default/W2031A"})
    assert placed.status_code == 201, placed.text
    (order,) = placed.json()["items"]
    assert (order["printer_id"], order["supply_index"], order["alert_id"]) == (
        "p-hp-stock",
        "2",
        None,
    )
