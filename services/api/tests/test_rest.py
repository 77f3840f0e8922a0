"""REST API: login, printers add/patch/delete with events for the poller, tenants, errors, export."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_site, in_tx
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import (
    PrinterConfigured,
    PrinterRemoved,
    SupplyReading,
    ThresholdCrossed,
)

ADMIN_PW = "correct horse battery staple"
SECRET = "s3cret-community"


@pytest.fixture
def settings() -> Settings:
    return Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)


@pytest.fixture
async def client(pg: Engine, bus: Bus, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    app = create_app(pg, bus, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        yield c


async def bearer(
    client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PW
) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    return {"Authorization": f"Bearer {body['access_token']}"}


async def test_password_flow_gives_a_bearer_token_and_wrong_password_401(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    me = await client.get("/api/v1/me", headers=h)
    assert me.json()["username"] == "admin" and me.json()["role"] == "provider"
    bad = await client.post("/api/v1/auth/token", data={"username": "admin", "password": "nope"})
    assert bad.status_code == 401 and "wrong username or password" in bad.json()["error"]
    anon = await client.get("/api/v1/printers")
    assert anon.status_code == 401 and anon.headers["www-authenticate"] == "Bearer"
    await client.post("/api/v1/auth/logout", headers=h)
    assert (await client.get("/api/v1/me", headers=h)).status_code == 401


async def test_add_printer_publishes_printer_configured_without_leaking_community(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    r = await client.post(
        "/api/v1/printers",
        headers=h,
        json={
            "address": "127.0.0.1",
            "port": 16100,
            "community": SECRET,
            "name": "Finance HP",
            "interval_s": 60,
        },
    )
    assert r.status_code == 201, r.text
    assert SECRET not in r.text
    printer = r.json()
    assert printer["snmp_version"] == "2c" and printer["status"] == "pending"
    event = await wait_for_event(
        bus,
        bus.subjects.filter("printer.configured"),
        lambda e: isinstance(e, PrinterConfigured) and e.printer_id == printer["id"],
        timeout_s=10,
    )
    assert isinstance(event, PrinterConfigured)
    assert (event.address, event.port, event.interval_s) == ("127.0.0.1", 16100, 60.0)
    assert event.credentials.community == SECRET
    for path in (
        "/api/v1/printers",
        f"/api/v1/printers/{printer['id']}",
        "/api/v1/export/printers.csv",
    ):
        got = await client.get(path, headers=h)
        assert got.status_code == 200 and SECRET not in got.text
    dup = await client.post(
        "/api/v1/printers", headers=h, json={"address": "127.0.0.1", "port": 16100}
    )
    assert dup.status_code == 409 and printer["id"] in dup.json()["error"]


async def test_unmonitoring_and_deleting_tell_the_poller(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    pid = (await client.post("/api/v1/printers", headers=h, json={"address": "127.0.0.2"})).json()[
        "id"
    ]
    r = await client.patch(
        f"/api/v1/printers/{pid}", headers=h, json={"monitored": False, "name": "Old Brother"}
    )
    assert (
        r.status_code == 200
        and r.json()["monitored"] is False
        and r.json()["name"] == "Old Brother"
    )
    await wait_for_event(
        bus,
        bus.subjects.filter("printer.removed"),
        lambda e: isinstance(e, PrinterRemoved) and e.printer_id == pid,
        timeout_s=10,
    )
    r = await client.patch(
        f"/api/v1/printers/{pid}", headers=h, json={"monitored": True, "interval_s": 120}
    )
    await wait_for_event(
        bus,
        bus.subjects.filter("printer.configured"),
        lambda e: isinstance(e, PrinterConfigured) and e.printer_id == pid and e.interval_s == 120,
        timeout_s=10,
    )
    assert (await client.delete(f"/api/v1/printers/{pid}", headers=h)).status_code == 204
    assert (await client.get(f"/api/v1/printers/{pid}", headers=h)).status_code == 404
    removed = 0

    def count_removed(e: object) -> bool:
        nonlocal removed
        if isinstance(e, PrinterRemoved) and e.printer_id == pid:
            removed += 1
        return removed == 2

    await wait_for_event(bus, bus.subjects.filter("printer.removed"), count_removed, timeout_s=10)


async def test_422_names_the_field_and_never_echoes_input(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    r = await client.post("/api/v1/printers", headers=h, json={"port": 99999, "community": SECRET})
    assert r.status_code == 422
    body = r.json()
    fields = {f["field"] for f in body["fields"]}
    assert {"address", "port"} <= fields
    assert "address" in body["error"] and SECRET not in r.text
    bad_cursor = await client.get("/api/v1/printers?cursor=@@", headers=h)
    assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.json()["error"]


async def test_tenant_a_user_never_sees_tenant_b_printer(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    def setup(s: Session) -> None:
        ensure_site(s, "acme-hq", "acme")
        create_user(s, "bob@acme", "bob-password-123", "operator", "acme")

    in_tx(pg, setup)
    admin = await bearer(client)
    bob = await bearer(client, "bob@acme", "bob-password-123")
    theirs = await client.post(
        "/api/v1/printers", headers=bob, json={"address": "127.0.0.9", "site_id": "acme-hq"}
    )
    assert theirs.status_code == 201, theirs.text
    ours = await client.post("/api/v1/printers", headers=admin, json={"address": "127.0.0.10"})
    bob_id, our_id = theirs.json()["id"], ours.json()["id"]
    assert (await client.get(f"/api/v1/printers/{bob_id}", headers=admin)).status_code == 404
    assert (await client.get(f"/api/v1/printers/{our_id}", headers=bob)).status_code == 404
    assert (
        await client.patch(f"/api/v1/printers/{our_id}", headers=bob, json={"name": "x"})
    ).status_code == 404
    assert (await client.delete(f"/api/v1/printers/{our_id}", headers=bob)).status_code == 404
    assert (await client.get(f"/api/v1/printers/{our_id}/readings", headers=bob)).status_code == 404
    listed = (await client.get("/api/v1/printers", headers=admin)).json()["items"]
    assert [p["id"] for p in listed] == [our_id]
    bob_list = (await client.get("/api/v1/printers", headers=bob)).json()["items"]
    assert [p["id"] for p in bob_list] == [bob_id]
    # Adding into another tenant's site is refused as if it did not exist.
    r = await client.post(
        "/api/v1/printers", headers=admin, json={"address": "127.0.0.11", "site_id": "acme-hq"}
    )
    assert r.status_code == 404
    csv_text = (await client.get("/api/v1/export/printers.csv", headers=bob)).text
    assert bob_id in csv_text and our_id not in csv_text


async def test_viewer_reads_but_cannot_change(client: httpx.AsyncClient, pg: Engine) -> None:
    in_tx(pg, lambda s: create_user(s, "vera", "viewer-password-1", "viewer"))
    h = await bearer(client, "vera", "viewer-password-1")
    assert (await client.get("/api/v1/printers", headers=h)).status_code == 200
    r = await client.post("/api/v1/printers", headers=h, json={"address": "127.0.0.3"})
    assert r.status_code == 403 and "operator" in r.json()["error"]


async def test_list_is_paged_and_searchable(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    for i in range(5):
        await client.post(
            "/api/v1/printers", headers=h, json={"address": f"127.0.1.{i}", "name": f"Floor {i}"}
        )
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/printers", headers=h, params=params)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5 == len(set(seen)) and seen == sorted(seen)
    found = (await client.get("/api/v1/printers", headers=h, params={"q": "floor 3"})).json()[
        "items"
    ]
    assert [p["name"] for p in found] == ["Floor 3"]


async def test_readings_alerts_and_acknowledge(
    client: httpx.AsyncClient, pg: Engine, reading: Callable[..., SupplyReading]
) -> None:
    h = await bearer(client)
    pid = (await client.post("/api/v1/printers", headers=h, json={"address": "127.0.0.4"})).json()[
        "id"
    ]
    now = datetime.now(UTC)
    apply_now(pg, reading(printer_id=pid, occurred_at=now - timedelta(hours=2)))
    apply_now(pg, reading(printer_id=pid, occurred_at=now - timedelta(hours=1)))
    apply_now(
        pg,
        ThresholdCrossed(
            source="alerter",
            site_id="default",
            printer_id=pid,
            alert_id=f"{pid}:4:low",
            rule="low",
            severity="warning",
            supply_index="4",
            percent=8.0,
            message="Yellow Cartridge HP W2032A at 8%",
        ),
    )
    r = await client.get(
        f"/api/v1/printers/{pid}/readings",
        headers=h,
        params={"since": (now - timedelta(minutes=90)).isoformat()},
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 5
    detail = (await client.get(f"/api/v1/printers/{pid}", headers=h)).json()
    assert detail["status"] == "attention" and detail["open_alerts"] == 1
    assert [s["colour"] for s in detail["supplies"][:4]] == ["black", "cyan", "magenta", "yellow"]
    alerts = (await client.get("/api/v1/alerts", headers=h)).json()["items"]
    assert len(alerts) == 1
    ack = await client.post(f"/api/v1/alerts/{alerts[0]['id']}/acknowledge", headers=h)
    assert ack.status_code == 200 and ack.json()["acknowledged_by"] == "admin"


async def test_csv_export_has_one_row_per_supply_and_defuses_formulas(
    client: httpx.AsyncClient, pg: Engine, reading: Callable[..., SupplyReading]
) -> None:
    h = await bearer(client)
    pid = (
        await client.post(
            "/api/v1/printers", headers=h, json={"address": "127.0.0.5", "name": "=HYPERLINK(1)"}
        )
    ).json()["id"]
    apply_now(pg, reading(printer_id=pid))
    r = await client.get("/api/v1/export/printers.csv", headers=h)
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert len(lines) == 1 + 5
    assert "'=HYPERLINK(1)" in lines[1] and "W2030A" in r.text


async def test_openapi_documents_every_endpoint(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    paths = set(spec["paths"])
    assert {
        "/api/v1/auth/token",
        "/api/v1/printers",
        "/api/v1/printers/{printer_id}",
        "/api/v1/printers/{printer_id}/readings",
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id}/acknowledge",
        "/api/v1/sites",
        "/api/v1/export/printers.csv",
        "/api/v1/events/stream",
    } <= paths
    assert "OAuth2PasswordBearer" in json.dumps(spec["components"]["securitySchemes"])
    assert "credentials" not in spec["components"]["schemas"]["PrinterOut"]["properties"]


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).text == "ok\n"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "ready": True,
        "database": "ok",
        "nats": "ok",
    }
    metrics = (await client.get("/metrics")).text
    assert "# TYPE tonerwatch_api_events_total counter" in metrics
    assert "tonerwatch_api_open_alerts" in metrics


async def test_sites_crud(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    r = await client.post(
        "/api/v1/sites", headers=h, json={"id": "berlin-office", "name": "Berlin"}
    )
    assert r.status_code == 201
    bad = await client.post("/api/v1/sites", headers=h, json={"id": "no.dots"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "id"
    assert (
        await client.patch("/api/v1/sites/berlin-office", headers=h, json={"name": "Berlin HQ"})
    ).json()["name"] == "Berlin HQ"
    ids = [s["id"] for s in (await client.get("/api/v1/sites", headers=h)).json()["items"]]
    assert ids == ["berlin-office", "default"]
    assert (await client.delete("/api/v1/sites/berlin-office", headers=h)).status_code == 204
    assert (await client.delete("/api/v1/sites/default", headers=h)).status_code == 409
    await asyncio.sleep(0)


async def test_community_set_by_a_user_on_a_discovered_printer_is_never_replaced_by_a_sweep(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    from tonerwatch_api.db.models import Printer
    from tonerwatch_shared.events import PrinterFound, SnmpCredentials
    from tonerwatch_shared.printer.model import PrinterIdentity

    ident = PrinterIdentity(vendor="HP", model="LaserJet M404dn", serial="PHBQ123456")
    found = PrinterFound(
        source="discovery",
        site_id="default",
        address="127.0.0.44",
        identity=ident,
        credentials=SnmpCredentials(community="found-by-sweep"),
    )
    apply_now(pg, found)
    with Session(pg) as s:
        pid = s.exec(select(Printer)).one().id
    h = await bearer(client)
    r = await client.patch(f"/api/v1/printers/{pid}", headers=h, json={"community": "set-by-admin"})
    assert r.status_code == 200 and "set-by-admin" not in r.text  # write-only
    again = found.model_copy(update={"credentials": SnmpCredentials(community="sweep-again")})
    apply_now(pg, again.model_copy(update={"event_id": uuid.uuid4()}))
    with Session(pg) as s:
        stored = s.get(Printer, pid)
        assert stored is not None and stored.credentials is not None
        assert stored.credentials["community"] == "set-by-admin"


async def test_site_poll_interval_applies_to_printers_without_their_own(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    site = await client.post(
        "/api/v1/sites",
        headers=h,
        json={"id": "branch-7", "name": "Branch 7", "poll_interval_s": 600},
    )
    assert site.status_code == 201, site.text and site.json()["poll_interval_s"] == 600
    follows = (
        await client.post(
            "/api/v1/printers", headers=h, json={"address": "127.0.0.61", "site_id": "branch-7"}
        )
    ).json()
    own = (
        await client.post(
            "/api/v1/printers",
            headers=h,
            json={"address": "127.0.0.62", "site_id": "branch-7", "interval_s": 120},
        )
    ).json()
    assert follows["interval_s"] == 600 and own["interval_s"] == 120
    r = await client.patch("/api/v1/sites/branch-7", headers=h, json={"poll_interval_s": 900})
    assert r.status_code == 200 and r.json()["poll_interval_s"] == 900
    event = await wait_for_event(
        bus,
        bus.subjects.filter("printer.configured"),
        lambda e: (
            isinstance(e, PrinterConfigured)
            and e.printer_id == follows["id"]
            and e.interval_s == 900
        ),
        timeout_s=10,
    )
    assert isinstance(event, PrinterConfigured)
    assert (await client.get(f"/api/v1/printers/{own['id']}", headers=h)).json()[
        "interval_s"
    ] == 120
    r = await client.patch("/api/v1/sites/branch-7", headers=h, json={"poll_interval_s": 5})
    assert r.status_code == 422 and "poll_interval_s" in r.text
