"""Orders over REST (place, move on, edit, delete, list), their events and audit, tenant isolation,
and delivery when the printer reports the new cartridge (SupplyReplaced), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import AuditEntry, OutboxEvent, SupplyStateRow
from tonerwatch_api.db.orders import Order
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_site, in_tx
from tonerwatch_api.domain.orders import next_statuses
from tonerwatch_api.projections.orders import created_event_id, deliver_on_replacement
from tonerwatch_api.projections.outbox import Outbox
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_api.ui import pages
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import (
    Event,
    OrderChanged,
    PrinterConfigured,
    SupplyReading,
    SupplyReplaced,
    UpstreamOrderUpdate,
    parse_event,
)

ADMIN_PW = "orders-admin-password"
PRINTER = "p-hp479"


@pytest.fixture
async def client(
    db: Engine,
    bus: Bus,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> AsyncIterator[httpx.AsyncClient]:
    """The api on SQLite and PostgreSQL with one HP M479 reporting its supplies."""
    ensure_admin(db, ADMIN_PW)
    apply_now(db, configured())
    apply_now(db, reading())
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(db, bus, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        yield c


async def bearer(
    client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PW
) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def place(client: httpx.AsyncClient, h: dict[str, str], **body: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"printer_id": PRINTER, "supply_index": "1"}
    fields.update(body)
    r = await client.post("/api/v1/orders", headers=h, json=fields)
    assert r.status_code == 201, r.text
    order: dict[str, Any] = r.json()
    return order


async def order_events(bus: Bus, order_id: str, count: int) -> list[OrderChanged]:
    """Return the first count OrderChanged events of order_id on the bus, in order."""
    seen: list[OrderChanged] = []

    def collect(e: Event) -> bool:
        if isinstance(e, OrderChanged) and e.order_id == order_id:
            seen.append(e)
        return len(seen) == count

    await wait_for_event(bus, bus.subjects.filter("order.changed"), collect, timeout_s=10)
    return seen


def audit_actions(engine: Engine, target: str) -> list[str]:
    def work(s: Session) -> list[str]:
        rows = s.exec(
            select(AuditEntry).where(AuditEntry.target == target).order_by(col(AuditEntry.id))
        ).all()
        return [r.action for r in rows]

    return in_tx(engine, work)


async def test_an_order_is_placed_moved_on_to_delivery_audited_and_announced(
    client: httpx.AsyncClient, bus: Bus, db: Engine
) -> None:
    h = await bearer(client)
    order = await place(client, h, quantity=2, supplier="Office Supplies Ltd", notes="Reception")
    # The supply as the printer reports it, copied when the order is placed.
    assert order["supply_description"] == "Black Cartridge HP W2030A"
    assert (order["part_number"], order["colour"], order["quantity"]) == ("W2030A", "black", 2)
    assert order["status"] == "requested" and order["open"] is True
    assert order["next_statuses"] == ["ordered", "shipped", "delivered", "cancelled"]
    assert order["printer_name"] == "Finance HP" and order["site_id"] == "default"
    assert order["created_by"] == "admin" and order["ordered_at"] is None
    oid = order["id"]
    got = await client.get(f"/api/v1/orders/{oid}", headers=h)
    assert got.status_code == 200 and got.json() == order

    r = await client.patch(
        f"/api/v1/orders/{oid}",
        headers=h,
        json={"status": "ordered", "supplier_reference": "PO-2026-0412", "part_number": "W2030X"},
    )
    assert r.status_code == 200, r.text
    ordered = r.json()
    assert ordered["status"] == "ordered" and ordered["ordered_at"] is not None
    assert (ordered["supplier_reference"], ordered["part_number"]) == ("PO-2026-0412", "W2030X")
    shipped = await client.patch(f"/api/v1/orders/{oid}", headers=h, json={"status": "shipped"})
    assert shipped.json()["shipped_at"] is not None
    done = await client.patch(f"/api/v1/orders/{oid}", headers=h, json={"status": "delivered"})
    body = done.json()
    assert body["status"] == "delivered" and body["open"] is False and body["next_statuses"] == []
    assert body["delivered_at"] >= body["shipped_at"] >= body["ordered_at"] >= body["created_at"]
    assert body["delivery_event_id"] is None  # by hand

    events = await order_events(bus, oid, 4)
    assert [(e.change, e.previous_status, e.status) for e in events] == [
        ("created", None, "requested"),
        ("status", "requested", "ordered"),
        ("status", "ordered", "shipped"),
        ("status", "shipped", "delivered"),
    ]
    first = events[0]
    assert first.subject(bus.subjects) == f"{bus.subjects.root}.default.order.changed.{PRINTER}"
    assert (first.printer_id, first.quantity, first.changed_by) == (PRINTER, 2, "admin")
    assert events[1].supplier_reference == "PO-2026-0412" and events[1].part_number == "W2030X"
    assert events[3].delivered_at is not None
    assert audit_actions(db, oid) == [
        "order.create",
        "order.update",
        "order.ordered",
        "order.shipped",
        "order.delivered",
    ]


async def test_illegal_moves_are_409_and_final_orders_keep_all_but_their_notes(
    client: httpx.AsyncClient, db: Engine
) -> None:
    h = await bearer(client)
    oid = (await place(client, h, status="ordered"))["id"]

    async def patch(body: dict[str, Any]) -> httpx.Response:
        return await client.patch(f"/api/v1/orders/{oid}", headers=h, json=body)

    back = await patch({"status": "requested"})
    assert back.status_code == 409
    assert "cannot go from ordered to requested" in back.json()["error"]
    assert "shipped, delivered, cancelled" in back.json()["error"]
    same = await patch({"status": "ordered"})  # already there: nothing changes
    assert same.status_code == 200 and same.json()["status"] == "ordered"
    assert (await patch({"status": "shipped"})).status_code == 200
    late = await patch({"quantity": 5})
    assert (
        late.status_code == 409 and "quantity can change only until shipped" in late.json()["error"]
    )
    assert (await patch({"supplier_reference": "TRACK-123"})).status_code == 200
    assert (await patch({"status": "cancelled"})).json()["cancelled_at"] is not None
    for body in ({"status": "delivered"}, {"status": "ordered"}):
        r = await patch(body)
        assert r.status_code == 409 and "cancelled, which is final" in r.json()["error"]
    frozen = await patch({"supplier": "Someone else"})
    assert frozen.status_code == 409 and "only its notes can change" in frozen.json()["error"]
    noted = await patch({"notes": "Printer replaced by a new model"})
    assert noted.status_code == 200 and noted.json()["notes"] == "Printer replaced by a new model"
    after = (await client.get(f"/api/v1/orders/{oid}", headers=h)).json()
    assert after["status"] == "cancelled" and after["supplier_reference"] == "TRACK-123"
    assert after["quantity"] == 1 and after["supplier"] is None
    # Refused changes left no trace in the audit log.
    assert audit_actions(db, oid) == [
        "order.create",
        "order.shipped",
        "order.update",
        "order.cancelled",
        "order.update",
    ]
    assert next_statuses("requested") == ["ordered", "shipped", "delivered", "cancelled"]
    assert next_statuses("delivered") == next_statuses("cancelled") == []


async def test_only_a_requested_order_can_be_deleted(
    client: httpx.AsyncClient, bus: Bus, db: Engine
) -> None:
    h = await bearer(client)
    placed = (await place(client, h, status="ordered"))["id"]
    refused = await client.delete(f"/api/v1/orders/{placed}", headers=h)
    assert refused.status_code == 409 and "cancel it instead" in refused.json()["error"]
    oid = (await place(client, h, supply_index="4"))["id"]
    assert (await client.delete(f"/api/v1/orders/{oid}", headers=h)).status_code == 204
    assert (await client.get(f"/api/v1/orders/{oid}", headers=h)).status_code == 404
    assert (await client.delete(f"/api/v1/orders/{oid}", headers=h)).status_code == 404
    events = await order_events(bus, oid, 2)
    assert [e.change for e in events] == ["created", "deleted"]
    assert events[1].part_number == "W2032A" and events[1].changed_by == "admin"
    assert audit_actions(db, oid) == ["order.create", "order.delete"]


async def test_bad_input_is_422_naming_the_field(client: httpx.AsyncClient, db: Engine) -> None:
    h = await bearer(client)

    async def post(**body: Any) -> set[str]:
        fields: dict[str, Any] = {"printer_id": PRINTER, "supply_index": "1"}
        fields.update(body)
        r = await client.post("/api/v1/orders", headers=h, json=fields)
        assert r.status_code == 422, r.text
        return {f["field"] for f in r.json()["fields"]}

    assert await post(quantity=0) == {"quantity"}
    assert await post(quantity=1000) == {"quantity"}
    assert await post(supply_index="9") == {"supply_index"}
    assert await post(status="delivered") == {"status"}
    assert await post(part_number="W2030A\nX") == {"part_number"}
    assert await post(alert_id="p-hp479:1:low") == {"alert_id"}  # the printer has no such alert
    assert await post(colour="black") == {"colour"}  # snapshot from the printer, not given
    r = await client.post("/api/v1/orders", headers=h, json={"supply_index": "1"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "printer_id"
    missing = await client.post(
        "/api/v1/orders", headers=h, json={"printer_id": "p-none", "supply_index": "1"}
    )
    assert missing.status_code == 404
    oid = (await place(client, h))["id"]
    bad = await client.patch(f"/api/v1/orders/{oid}", headers=h, json={"status": "lost"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "status"
    for query in ("status=lost", "sort=colour", "cursor=@@", "limit=0"):
        r = await client.get(f"/api/v1/orders?{query}", headers=h)
        assert r.status_code == 422, query
        name = query.split("=")[0]
        assert any(f["field"].split(".")[0] == name for f in r.json()["fields"]), r.text


async def test_another_tenant_gets_404_everywhere_and_a_viewer_cannot_order(
    client: httpx.AsyncClient,
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    def setup(s: Session) -> None:
        ensure_site(s, "acme-hq", "acme")
        create_user(s, "bob@acme", "bob-password-123", "operator", "acme")
        create_user(s, "vera", "vera-password-123", "viewer", "default")

    in_tx(db, setup)
    apply_now(db, configured(printer_id="p-acme", site_id="acme-hq", address="127.0.0.9"))
    apply_now(db, reading(printer_id="p-acme", site_id="acme-hq"))
    admin = await bearer(client)
    bob = await bearer(client, "bob@acme", "bob-password-123")
    vera = await bearer(client, "vera", "vera-password-123")
    ours = (await place(client, admin))["id"]
    theirs = (await place(client, bob, printer_id="p-acme", supply_index="2"))["id"]

    for who, oid in ((bob, ours), (admin, theirs)):
        assert (await client.get(f"/api/v1/orders/{oid}", headers=who)).status_code == 404
        r = await client.patch(f"/api/v1/orders/{oid}", headers=who, json={"status": "cancelled"})
        assert r.status_code == 404
        assert (await client.delete(f"/api/v1/orders/{oid}", headers=who)).status_code == 404
    # Ordering for another tenant's printer: as if it did not exist.
    r = await client.post(
        "/api/v1/orders", headers=admin, json={"printer_id": "p-acme", "supply_index": "1"}
    )
    assert r.status_code == 404
    assert (await client.get("/api/v1/orders?site=acme-hq", headers=admin)).status_code == 404
    assert [
        o["id"] for o in (await client.get("/api/v1/orders", headers=admin)).json()["items"]
    ] == [ours]
    assert [o["id"] for o in (await client.get("/api/v1/orders", headers=bob)).json()["items"]] == [
        theirs
    ]
    # Theirs is untouched by the attempts.
    assert (await client.get(f"/api/v1/orders/{theirs}", headers=bob)).json()["status"] == (
        "requested"
    )

    # A viewer reads the tenant's orders but changes none.
    assert (await client.get(f"/api/v1/orders/{ours}", headers=vera)).status_code == 200
    denied = await client.post(
        "/api/v1/orders", headers=vera, json={"printer_id": PRINTER, "supply_index": "1"}
    )
    assert denied.status_code == 403 and "operator" in denied.json()["error"]
    r = await client.patch(f"/api/v1/orders/{ours}", headers=vera, json={"status": "ordered"})
    assert r.status_code == 403
    assert (await client.delete(f"/api/v1/orders/{ours}", headers=vera)).status_code == 403


async def test_lists_filter_sort_and_page_with_cursors(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    made = []
    for i, (supply, qty) in enumerate(
        [("1", 3), ("2", 1), ("3", 2), ("4", 1), ("1", 5), ("2", 2), ("3", 1)]
    ):
        status = "ordered" if i % 2 else "requested"
        # A second open order of a supply is said to be intended (else 409).
        made.append(
            await place(
                client, h, supply_index=supply, quantity=qty, status=status, intended=i >= 4
            )
        )
    cancelled = made[5]["id"]
    await client.patch(f"/api/v1/orders/{cancelled}", headers=h, json={"status": "cancelled"})

    async def walk(query: str, limit: int) -> list[str]:
        ids: list[str] = []
        cursor = None
        for _ in range(20):
            url = f"/api/v1/orders?{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            r = await client.get(url, headers=h)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= limit
            ids += [o["id"] for o in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return ids
        raise AssertionError("pagination did not end")

    def at(o: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(o["created_at"])

    newest_first = sorted(made, key=lambda o: (at(o), o["id"]), reverse=True)
    assert await walk("", 3) == [o["id"] for o in newest_first]
    by_quantity = sorted(made, key=lambda o: (-o["quantity"], at(o), o["id"]))
    assert await walk("sort=-quantity,created_at", 2) == [o["id"] for o in by_quantity]
    whole = await client.get("/api/v1/orders?sort=-quantity,created_at&limit=500", headers=h)
    assert [o["id"] for o in whole.json()["items"]] == [o["id"] for o in by_quantity]
    assert whole.json()["next_cursor"] is None
    # Status sorts by lifecycle: requested, ordered, ..., cancelled last.
    statuses = [
        o["status"]
        for o in (await client.get("/api/v1/orders?sort=status&limit=500", headers=h)).json()[
            "items"
        ]
    ]
    assert statuses == ["requested"] * 4 + ["ordered"] * 2 + ["cancelled"]
    # A cursor is bound to its sort.
    first = (await client.get("/api/v1/orders?limit=2", headers=h)).json()
    other = await client.get(
        f"/api/v1/orders?sort=quantity&cursor={first['next_cursor']}", headers=h
    )
    assert other.status_code == 422 and "sort=" in other.json()["error"]

    async def ids(query: str) -> set[str]:
        return set(await walk(query, 2))

    assert await ids("status=ordered&status=cancelled") == {o["id"] for o in made[1::2]}
    assert await ids("open=false") == {cancelled}
    assert await ids("open=true") == {o["id"] for o in made} - {cancelled}
    assert await ids("part_number=W2031A") == {made[1]["id"], cancelled}
    assert await ids(f"printer_id={PRINTER}&site=default") == {o["id"] for o in made}
    assert await ids("printer_id=p-other") == set()


async def test_a_new_cartridge_delivers_the_oldest_order_in_transit_once(
    client: httpx.AsyncClient, bus: Bus, db: Engine
) -> None:
    h = await bearer(client)
    requested = (await place(client, h))["id"]
    older = (await place(client, h, status="ordered", intended=True))["id"]
    newer = (await place(client, h, status="ordered", intended=True))["id"]
    await client.patch(f"/api/v1/orders/{newer}", headers=h, json={"status": "shipped"})
    other_supply = (await place(client, h, supply_index="2", status="ordered"))["id"]

    def replaced(at: datetime | None = None) -> SupplyReplaced:
        return SupplyReplaced(
            source="alerter/test",
            site_id="default",
            printer_id=PRINTER,
            supply_index="1",
            description="Black Cartridge HP W2030A",
            part_number="W2030A",
            previous_percent=2.0,
            percent=100.0,
            occurred_at=at or datetime.now(UTC),
        )

    # A cartridge that went in before any order was placed is not the delivery of one.
    assert apply_now(db, replaced(datetime.now(UTC) - timedelta(hours=1))) == "applied"

    async def status(oid: str) -> str:
        return str((await client.get(f"/api/v1/orders/{oid}", headers=h)).json()["status"])

    assert await status(older) == "ordered"
    event = replaced()
    assert apply_now(db, event) == "applied"
    got = (await client.get(f"/api/v1/orders/{older}", headers=h)).json()
    assert got["status"] == "delivered" and got["delivery_event_id"] == str(event.event_id)
    assert datetime.fromisoformat(got["delivered_at"]) == event.occurred_at
    assert [await status(o) for o in (requested, newer, other_supply)] == [
        "requested",
        "shipped",
        "ordered",
    ]

    # Redelivered: the projection drops it, and the function itself changes nothing either.
    assert apply_now(db, event) == "duplicate"
    assert in_tx(db, lambda s: deliver_on_replacement(s, event, "api/test")) is None
    assert await status(newer) == "shipped"
    assert audit_actions(db, older)[-1] == "order.delivered"

    # The delivery is announced upstream like any other status change, once.
    def queued(s: Session) -> list[OrderChanged]:
        rows = s.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))).all()
        out = [parse_event(r.payload) for r in rows]
        return [e for e in out if isinstance(e, OrderChanged) and e.order_id == older]

    pending = in_tx(db, queued)
    assert [(e.change, e.previous_status, e.status, e.changed_by) for e in pending] == [
        ("status", "ordered", "delivered", None)
    ]
    await Outbox(db, bus).flush()
    events = await order_events(bus, older, 2)
    assert events[1].event_id == pending[0].event_id and events[1].delivered_at == event.occurred_at

    # The next new cartridge delivers the next order in transit.
    assert apply_now(db, replaced()) == "applied"
    assert await status(newer) == "delivered"
    assert await status(requested) == "requested"

    def count(s: Session) -> int:
        return len(s.exec(select(Order).where(Order.status == "delivered")).all())

    assert in_tx(db, count) == 2


async def ui_login(c: httpx.AsyncClient, username: str, password: str) -> None:
    page = await c.get("/login?next=/orders")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token
    r = await c.post(
        "/login",
        data={"username": username, "password": password, "login_csrf": token.group(1)},
    )
    assert r.status_code == 303 and "error" not in r.headers["location"], r.headers


async def test_orders_page_filters_pages_and_shows_buttons_only_to_operators(
    client: httpx.AsyncClient, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def setup(s: Session) -> None:
        ensure_site(s, "acme-hq", "acme")
        create_user(s, "bob@acme", "bob-password-123", "operator", "acme")
        create_user(s, "vera", "vera-password-123", "viewer", "default")

    in_tx(db, setup)
    h = await bearer(client)
    first = await place(client, h, quantity=3, supplier="Office Supplies Ltd")
    second = await place(client, h, supply_index="2", status="ordered")
    third = await place(client, h, supply_index="3")
    await client.patch(f"/api/v1/orders/{third['id']}", headers=h, json={"status": "cancelled"})

    await ui_login(client, "admin", ADMIN_PW)
    page = (await client.get("/orders")).text
    assert first["id"] in page and second["id"] in page and third["id"] not in page
    assert "3 × W2030A" in page and "Finance HP" in page and "Mark ordered" in page
    assert f'data-api="PATCH /api/v1/orders/{second["id"]}"' in page
    cancelled = (await client.get("/orders?show=cancelled")).text
    assert third["id"] in cancelled and first["id"] not in cancelled
    # A page at a time: the next link continues with the same filter.
    monkeypatch.setattr(pages, "ORDERS_PAGE", 2)
    one = (await client.get("/orders?show=all")).text
    link = re.search(r'href="(/orders\?show=all&amp;cursor=[^"]+)" rel="next"', one)
    assert link and one.count('class="order order-') == 2
    two = (await client.get(link.group(1).replace("&amp;", "&"))).text
    assert two.count('class="order order-') == 1 and 'rel="next"' not in two
    printer = (await client.get(f"/printers/{PRINTER}")).text
    assert (
        "3 on order" in printer and f'aria-label="Order {"Black Cartridge HP W2030A"}"' in printer
    )
    assert (await client.get("/orders?site=acme-hq")).status_code == 404

    client.cookies.clear()
    await ui_login(client, "vera", "vera-password-123")
    seen = (await client.get("/orders")).text
    assert first["id"] in seen and "Mark ordered" not in seen and "data-api" not in seen
    printer = (await client.get(f"/printers/{PRINTER}")).text
    assert "3 on order" in printer and "Place order" not in printer

    client.cookies.clear()
    await ui_login(client, "bob@acme", "bob-password-123")
    theirs = (await client.get("/orders?show=all")).text
    assert "No orders" in theirs and first["id"] not in theirs


async def test_the_portal_confirms_ships_and_cancels_orders_forward_only_and_audited(
    client: httpx.AsyncClient, db: Engine
) -> None:
    h = await bearer(client)
    shipped = (await place(client, h))["id"]
    cancelled = (await place(client, h, supply_index="2"))["id"]

    def upstream(kind: str, order_id: str | None, item: str, **extra: Any) -> UpstreamOrderUpdate:
        return UpstreamOrderUpdate(
            source="syncer/test",
            site_id="default",
            item_id=item,
            kind=kind,  # type: ignore[arg-type]
            order_id=order_id,
            at=datetime.now(UTC),
            **extra,
        )

    confirmed = upstream("order_confirmed", shipped, "it-1", supplier_reference="SO-88123")
    assert apply_now(db, confirmed) == "applied"
    on_its_way = upstream(
        "order_shipped", shipped, "it-2", carrier="DHL", tracking_number="JD0146000012345"
    )
    assert apply_now(db, on_its_way) == "applied"
    assert apply_now(db, on_its_way) == "duplicate"
    # A late confirmation after the shipment moves nothing back.
    assert apply_now(db, upstream("order_confirmed", shipped, "it-3")) == "ignored"
    got = (await client.get(f"/api/v1/orders/{shipped}", headers=h)).json()
    assert (got["status"], got["supplier_reference"]) == ("shipped", "SO-88123")
    assert "DHL JD0146000012345" in got["notes"]
    assert audit_actions(db, shipped)[-2:] == ["order.ordered", "order.shipped"]

    gone = upstream("order_cancelled", cancelled, "it-4", reason="discontinued part")
    assert apply_now(db, gone) == "applied"
    got = (await client.get(f"/api/v1/orders/{cancelled}", headers=h)).json()
    assert got["status"] == "cancelled" and "discontinued part" in got["notes"]
    # Another site's order is not this portal's to move; a message is only recorded.
    foreign = upstream("order_shipped", shipped, "it-5").model_copy(update={"site_id": "acme-hq"})
    assert apply_now(db, foreign) == "ignored"
    note = upstream("message", None, "it-6", text="Depot closed 24-26 Dec")
    assert apply_now(db, note) == "applied"
    assert audit_actions(db, "it-6") == ["upstream.message"]

    def announced(s: Session) -> list[tuple[str | None, str, str | None]]:
        rows = s.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))).all()
        out = [parse_event(r.payload) for r in rows]
        return [
            (e.previous_status, e.status, e.changed_by)
            for e in out
            if isinstance(e, OrderChanged) and e.order_id == shipped and e.change == "status"
        ]

    assert in_tx(db, announced) == [
        ("requested", "ordered", "upstream"),
        ("ordered", "shipped", "upstream"),
    ]


async def test_a_second_open_order_for_the_hp_black_toner_is_409_naming_the_first_unless_intended(
    client: httpx.AsyncClient, db: Engine
) -> None:
    h = await bearer(client)
    first = await place(client, h, quantity=2)
    again = await client.post(
        "/api/v1/orders", headers=h, json={"printer_id": PRINTER, "supply_index": "1"}
    )
    assert again.status_code == 409, again.text
    message = again.json()["error"]
    assert first["id"] in message and "requested" in message and "intended" in message
    # Said on purpose: a second order goes through.
    second = await place(client, h, intended=True)
    assert second["id"] != first["id"]
    # Once the open ones are final, ordering the supply again is ordinary.
    for oid in (first["id"], second["id"]):
        r = await client.patch(f"/api/v1/orders/{oid}", headers=h, json={"status": "cancelled"})
        assert r.status_code == 200, r.text
    assert (await place(client, h))["status"] == "requested"

    def open_count(s: Session) -> int:
        return len(s.exec(select(Order).where(col(Order.status) == "requested")).all())

    assert in_tx(db, open_count) == 1


async def test_a_retried_submit_with_the_same_idempotency_key_is_one_order_and_one_event(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    keyed = {**h, "Idempotency-Key": "form-7d1c-retry"}
    body = {"printer_id": PRINTER, "supply_index": "1", "quantity": 3}
    first = await client.post("/api/v1/orders", headers=keyed, json=body)
    assert first.status_code == 201, first.text
    retry = await client.post("/api/v1/orders", headers=keyed, json=body)
    assert retry.status_code == 200, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == first.json()["id"]
    # The key used for another supply is a mistake, not a retry.
    other = await client.post(
        "/api/v1/orders", headers=keyed, json={"printer_id": PRINTER, "supply_index": "2"}
    )
    assert other.status_code == 409 and "form-7d1c-retry" in other.json()["error"]

    # A later order marks the end: every creation announced before it is on the bus by then.
    last = await place(client, h, supply_index="2")
    ours = {first.json()["id"], last["id"]}
    events: list[OrderChanged] = []

    def collect(e: Event) -> bool:
        if isinstance(e, OrderChanged) and e.change == "created" and e.order_id in ours:
            events.append(e)
        return bool(events) and events[-1].order_id == last["id"]

    await wait_for_event(bus, bus.subjects.filter("order.changed"), collect, timeout_s=10)
    assert [e.order_id for e in events] == [first.json()["id"], last["id"]]
    # Its id is the order's own: however often published or forwarded, one Idempotency-Key upstream.
    assert events[0].event_id == created_event_id(first.json()["id"])


async def test_an_order_for_a_supply_reporting_no_part_number_takes_the_catalogues(
    client: httpx.AsyncClient, db: Engine, reading: Callable[..., SupplyReading]
) -> None:
    # Some firmware answers the supplies table without part numbers in the description.
    bare = reading().supplies
    apply_now(db, reading(supplies=tuple(s.model_copy(update={"part_number": None}) for s in bare)))
    stored = in_tx(db, lambda s: s.get(SupplyStateRow, (PRINTER, "2")))
    assert stored is not None and stored.part_number is None
    h = await bearer(client)
    order = await place(client, h, supply_index="2")
    assert order["part_number"] == "W2031A"  # printer/catalogue/hp.toml, HP 415A Cyan
    # The caller's own part number still wins.
    mine = await place(client, h, supply_index="3", part_number="W2033X")
    assert mine["part_number"] == "W2033X"


async def test_the_sites_ship_to_and_billing_contact_go_upstream_with_a_new_order(
    client: httpx.AsyncClient, bus: Bus, db: Engine
) -> None:
    h = await bearer(client)
    empty = await client.get("/api/v1/sites/default/account", headers=h)
    assert empty.status_code == 200 and empty.json()["ship_to_address"] is None
    account = {
        "customer_number": "C-204118",
        "ship_to_name": "ACME Ltd, Facilities",
        "ship_to_address": "1 Harbour Street\nBristol\nBS1 4AA",
        "ship_to_country": "GB",
        "billing_name": "Accounts payable",
        "billing_email": "ap@acme.example",
    }
    r = await client.put("/api/v1/sites/default/account", headers=h, json=account)
    assert r.status_code == 200, r.text
    kept = (await client.get("/api/v1/sites/default/account", headers=h)).json()
    assert {k: v for k, v in kept.items() if v is not None} == account
    assert audit_actions(db, "default")[-1] == "site.account"
    oid = (await place(client, h))["id"]
    created = (await order_events(bus, oid, 1))[0]
    assert created.account is not None
    assert created.account.ship_to_address == "1 Harbour Street\nBristol\nBS1 4AA"
    assert created.account.billing_email == "ap@acme.example"
    bad = await client.put(
        "/api/v1/sites/default/account", headers=h, json={"ship_to_country": "GBR"}
    )
    assert bad.status_code == 422


async def test_the_settings_page_offers_admins_each_sites_account_form(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    await client.put(
        "/api/v1/sites/default/account", headers=h, json={"ship_to_name": "ACME Facilities"}
    )
    await ui_login(client, "admin", ADMIN_PW)
    page = (await client.get("/settings")).text
    assert 'data-api="PUT /api/v1/sites/default/account"' in page
    assert 'value="ACME Facilities"' in page


def daily_readings(
    db: Engine, reading: Callable[..., SupplyReading], days: range, now: datetime
) -> None:
    """Apply one reading a day for each of days (days ago: time injected, no sleeping).

    Newest first: the client fixture's printer has a reading from now already, so the history
    comes late, and extends its continuous monitoring back day by day.
    """
    for ago in sorted(days):
        apply_now(db, reading(occurred_at=now - timedelta(days=ago)))


async def test_coverage_flips_on_the_second_order_after_thirty_days_of_readings(
    client: httpx.AsyncClient, db: Engine, reading: Callable[..., SupplyReading]
) -> None:
    # A reading a day since 40 days ago: continuous monitoring (no gap over 7 days).
    daily_readings(db, reading, range(1, 41), datetime.now(UTC))
    h = await bearer(client)
    url = f"/api/v1/printers/{PRINTER}/coverage"
    before = (await client.get(url, headers=h)).json()
    assert before["status"] == "eligible" and before["orders_counted"] == 0, before
    await place(client, h)
    assert (await client.get(url, headers=h)).json()["status"] == "eligible"
    await place(client, h, supply_index="2")
    after = (await client.get(url, headers=h)).json()
    assert after["status"] == "covered" and after["orders_counted"] == 2
    assert after["rule"] == {
        "monitoring_days": 30.0,
        "orders_needed": 2,
        "lapse_days": 180.0,
        "max_gap_days": 7.0,
    }


async def test_a_gap_in_the_readings_restarts_the_thirty_days(
    client: httpx.AsyncClient, db: Engine, reading: Callable[..., SupplyReading]
) -> None:
    now = datetime.now(UTC)
    # Readings from 40 to 20 days ago, nothing for 10 days, then daily again: monitored
    # continuously only for the last 10 days, so two orders do not make it covered.
    daily_readings(db, reading, range(20, 41), now)
    daily_readings(db, reading, range(1, 11), now)
    h = await bearer(client)
    url = f"/api/v1/printers/{PRINTER}/coverage"
    await place(client, h)
    await place(client, h, supply_index="2")
    got = (await client.get(url, headers=h)).json()
    assert got["status"] == "monitoring" and got["orders_counted"] == 0
    assert got["monitored_since"].startswith((now - timedelta(days=10)).date().isoformat())


async def test_the_printer_page_shows_its_service_coverage(
    client: httpx.AsyncClient, db: Engine, reading: Callable[..., SupplyReading]
) -> None:
    daily_readings(db, reading, range(5, 41, 5), datetime.now(UTC))
    h = await bearer(client)
    await place(client, h)
    await place(client, h, supply_index="2")
    await ui_login(client, "admin", ADMIN_PW)
    page = (await client.get(f"/printers/{PRINTER}")).text
    assert "Service coverage: <strong>covered</strong>" in page
