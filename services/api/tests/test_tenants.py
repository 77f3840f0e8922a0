"""Customer tenants: the provider creates them (with a first site and admin), lists, renames,
disables and deletes them, and acts in them with X-TonerWatch-Tenant; a customer's users never
reach another tenant and nothing leaks across (sites, printers, alerts, orders, groups, exports,
SSE toasts), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import User
from tonerwatch_api.db.tx import (
    MIGRATIONS,
    create_user,
    ensure_admin,
    ensure_site,
    in_tx,
    run_tx,
)
from tonerwatch_api.deps import AppState
from tonerwatch_api.domain.access import Principal, act_in, authenticate, issue_token
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.routes.events import alert_frames
from tonerwatch_api.security import new_token
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured, SupplyReading, ThresholdCrossed
from tonerwatch_shared.storage import migrate

ADMIN_PW = "provider-admin-password"
TENANT = "X-TonerWatch-Tenant"


@pytest.fixture
async def app(db: Engine, bus: Bus) -> FastAPI:
    ensure_admin(db, ADMIN_PW)
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    return create_app(db, bus, settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        yield c


async def bearer(
    client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PW
) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def new_customer(
    client: httpx.AsyncClient, h: dict[str, str], tenant: str, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": tenant,
        "name": tenant.title(),
        "site": {"id": f"{tenant}-hq"},
        "admin": {"username": f"it@{tenant}"},
    }
    body.update(extra)
    r = await client.post("/api/v1/tenants", headers=h, json=body)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def test_provider_creates_a_customer_whose_admin_sees_only_its_first_site(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    me = (await client.get("/api/v1/me", headers=h)).json()
    assert me["role"] == "provider" and me["tenant_id"] == "default"
    made = await new_customer(client, h, "acme", name="ACME Corporation")
    assert made["tenant"] == {
        **made["tenant"],
        "id": "acme",
        "name": "ACME Corporation",
        "disabled": False,
        "provider": False,
        "sites": 1,
        "users": 1,
    }
    assert made["site"]["tenant_id"] == "acme" and made["admin"]["role"] == "admin"
    password = made["admin_password"]
    assert isinstance(password, str) and len(password) >= 16
    acme = await bearer(client, "it@acme", password)
    me = (await client.get("/api/v1/me", headers=acme)).json()
    assert me["tenant_id"] == "acme" and me["role"] == "admin"
    sites = (await client.get("/api/v1/sites", headers=acme)).json()["items"]
    assert [s["id"] for s in sites] == ["acme-hq"]
    # A password the provider chose is not echoed back.
    chosen = await new_customer(
        client, h, "globex", admin={"username": "it@globex", "password": "globex-first-pass"}
    )
    assert chosen["admin_password"] is None
    await bearer(client, "it@globex", "globex-first-pass")
    # Audited: the tenant in the provider's log, the site and admin in the customer's, by whom.
    ours = (await client.get("/api/v1/audit?action=tenant.", headers=h)).json()["items"]
    assert {(e["action"], e["target"]) for e in ours} >= {
        ("tenant.create", "acme"),
        ("tenant.create", "globex"),
    }
    theirs = (await client.get("/api/v1/audit", headers=acme)).json()["items"]
    assert {(e["action"], e["username"], e["acting_from"]) for e in theirs} == {
        ("site.create", "admin", "default"),
        ("user.create", "admin", "default"),
    }


async def test_tenants_are_listed_sorted_and_paged_with_cursors(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    for t in ("delta", "alpha", "charlie", "bravo"):
        await new_customer(client, h, t)
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"sort": "-id", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/tenants", headers=h, params=params)).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["delta", "default", "charlie", "bravo", "alpha"]
    found = (await client.get("/api/v1/tenants?q=CHAR", headers=h)).json()["items"]
    assert [t["id"] for t in found] == ["charlie"]
    bad = await client.get("/api/v1/tenants?sort=password", headers=h)
    assert bad.status_code == 422 and "sort" in bad.json()["error"]
    one = (await client.get("/api/v1/tenants/default", headers=h)).json()
    assert one["provider"] is True and one["users"] == 1


async def test_a_customer_admin_cannot_list_tenants_nor_reach_another_with_the_header(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    acme = await bearer(
        client, "it@acme", (await new_customer(client, h, "acme"))["admin_password"]
    )
    await new_customer(client, h, "globex")
    assert (await client.get("/api/v1/tenants", headers=acme)).status_code == 403
    r = await client.post("/api/v1/tenants", headers=acme, json={"id": "evil", "name": "Evil"})
    assert r.status_code == 403 and "provider" in r.json()["error"]
    assert (
        await client.patch("/api/v1/tenants/globex", headers=acme, json={"disabled": True})
    ).status_code == 403
    for other in ("globex", "default", "nowhere"):
        r = await client.get("/api/v1/sites", headers={**acme, TENANT: other})
        assert r.status_code == 403, r.text
        assert "only a provider" in r.json()["error"]
    # Naming its own tenant is harmless.
    own = await client.get("/api/v1/sites", headers={**acme, TENANT: "acme"})
    assert [s["id"] for s in own.json()["items"]] == ["acme-hq"]
    # The provider role cannot be handed out by a customer admin.
    r = await client.post(
        "/api/v1/users",
        headers=acme,
        json={"username": "sneaky", "password": "sneaky-password", "role": "provider"},
    )
    assert r.status_code == 422
    # A provider naming an unknown tenant gets 404.
    r = await client.get("/api/v1/sites", headers={**h, TENANT: "nowhere"})
    assert r.status_code == 404


async def test_a_switching_provider_sees_exactly_the_customers_data_and_nothing_leaks(
    client: httpx.AsyncClient,
    db: Engine,
    configured: Callable[..., PrinterConfigured],
    reading: Callable[..., SupplyReading],
) -> None:
    h = await bearer(client)
    acme_pw = (await new_customer(client, h, "acme"))["admin_password"]
    acme = await bearer(client, "it@acme", acme_pw)
    as_acme = {**h, TENANT: "acme"}
    apply_now(db, configured(printer_id="p-ours", site_id="default", address="127.0.0.20"))
    apply_now(db, reading(printer_id="p-ours", site_id="default"))
    apply_now(db, configured(printer_id="p-acme", site_id="acme-hq", address="127.0.0.21"))
    apply_now(db, reading(printer_id="p-acme", site_id="acme-hq"))
    for pid, site in (("p-ours", "default"), ("p-acme", "acme-hq")):
        apply_now(
            db,
            ThresholdCrossed(
                source="alerter",
                site_id=site,
                printer_id=pid,
                alert_id=f"{pid}:1:critical",
                rule="critical",
                severity="critical",
                message="Black Cartridge HP W2030A empty",
            ),
        )
    # The provider, acting in acme, places an order and makes a group there.
    order = await client.post(
        "/api/v1/orders", headers=as_acme, json={"printer_id": "p-acme", "supply_index": "1"}
    )
    assert order.status_code == 201, order.text
    group = await client.post(
        "/api/v1/groups", headers=as_acme, json={"name": "Floor 2", "printer_ids": ["p-acme"]}
    )
    assert group.status_code == 201, group.text
    added = await client.post(
        "/api/v1/printers", headers=as_acme, json={"address": "127.0.0.22", "site_id": "acme-hq"}
    )
    assert added.status_code == 201 and added.json()["site_id"] == "acme-hq", added.text
    assert (
        await client.delete(f"/api/v1/printers/{added.json()['id']}", headers=acme)
    ).status_code == 204
    # Acting in acme cannot reach the provider's own printer.
    r = await client.post(
        "/api/v1/orders", headers=as_acme, json={"printer_id": "p-ours", "supply_index": "1"}
    )
    assert r.status_code == 404

    async def ids(path: str, who: dict[str, str], key: str = "id") -> set[str]:
        r = await client.get(path, headers=who)
        assert r.status_code == 200, r.text
        return {str(x[key]) for x in r.json()["items"]}

    me = (await client.get("/api/v1/me", headers=as_acme)).json()
    assert (me["tenant_id"], me["role"], me["acting_from"]) == ("acme", "provider", "default")
    for who in (as_acme, acme):
        assert await ids("/api/v1/sites", who) == {"acme-hq"}
        assert await ids("/api/v1/printers", who) == {"p-acme"}
        assert await ids("/api/v1/alerts", who, "printer_id") == {"p-acme"}
        assert await ids("/api/v1/orders", who) == {order.json()["id"]}
        assert await ids("/api/v1/groups", who, "name") == {"Floor 2"}
        csv_text = (await client.get("/api/v1/export/printers.csv", headers=who)).text
        assert "p-acme" in csv_text and "p-ours" not in csv_text
    # The provider answers for its own site; in acme it answers for everything of acme's.
    users = (await client.get("/api/v1/users?q=admin", headers=h)).json()["items"]
    me = next(u for u in users if u["username"] == "admin")
    mine = await client.put(
        f"/api/v1/users/{me['id']}/alerting", headers=h, json={"responsible_sites": ["default"]}
    )
    assert mine.status_code == 200, mine.text
    csv_text = (await client.get("/api/v1/export/printers.csv?scope=mine", headers=as_acme)).text
    assert "p-acme" in csv_text and "p-ours" not in csv_text
    # Without the header the provider is back in its own tenant, and sees none of acme's.
    assert await ids("/api/v1/sites", h) == {"default"}
    assert await ids("/api/v1/printers", h) == {"p-ours"}
    assert await ids("/api/v1/alerts", h, "printer_id") == {"p-ours"}
    assert await ids("/api/v1/orders", h) == set()
    assert await ids("/api/v1/groups", h, "name") == set()
    csv_text = (await client.get("/api/v1/export/printers.csv", headers=h)).text
    assert "p-ours" in csv_text and "p-acme" not in csv_text
    # acme's audit log says who did it, and from which tenant.
    log = (await client.get("/api/v1/audit?action=order.", headers=acme)).json()["items"]
    assert {(e["username"], e["acting_from"]) for e in log} == {("admin", "default")}


async def test_sse_toasts_follow_the_tenant_the_provider_acts_in(
    app: FastAPI, db: Engine, configured: Callable[..., PrinterConfigured]
) -> None:
    def setup(s: Session) -> None:
        create_user(s, "it@acme", "acme-admin-password", "admin", "acme")

    in_tx(db, setup)
    in_tx(db, lambda s: ensure_site(s, "acme-hq", "acme"))
    apply_now(db, configured(printer_id="p-ours", site_id="default", name="Provider HP"))
    apply_now(db, configured(printer_id="p-acme", site_id="acme-hq", name="ACME HP"))
    st = app.state.tw
    assert isinstance(st, AppState)
    token = new_token()
    provider = await provider_principal(db, token)
    acting = await run_tx(db, lambda s: act_in(s, provider, "acme"))

    async def first_toast(who: Principal) -> dict[str, Any]:
        frames = alert_frames(NeverGone(), st, who, keepalive_s=5)  # type: ignore[arg-type]
        assert (await anext(frames)).startswith("retry:")
        for pid, site in (("p-ours", "default"), ("p-acme", "acme-hq")):
            await st.live.publish(
                ThresholdCrossed(
                    source="alerter",
                    site_id=site,
                    printer_id=pid,
                    alert_id=f"{pid}:1:critical",
                    rule="critical",
                    severity="critical",
                    message="Black Cartridge HP W2030A empty",
                )
            )
        frame = await asyncio.wait_for(anext(frames), 5)
        await frames.aclose()
        data: dict[str, Any] = json.loads(frame.split("data: ", 1)[1])
        return data

    assert (await first_toast(acting))["printer_id"] == "p-acme"
    assert (await first_toast(provider))["printer_id"] == "p-ours"


class NeverGone:
    """Stands in for the request of an SSE client that stays."""

    async def is_disconnected(self) -> bool:
        return False


async def provider_principal(db: Engine, token: str) -> Principal:
    """Return the bootstrap provider as a bearer token of token authenticates it."""

    def work(s: Session) -> Principal:
        user = s.exec(select(User).where(User.username == "admin")).one()
        issue_token(s, user, token, kind="access", scopes=["read", "write"], expires_at=None)
        s.flush()
        found = authenticate(s, token, datetime.now(UTC))
        assert found is not None
        return found

    return await run_tx(db, work)


async def test_disabling_refuses_a_tenants_users_and_tokens_at_once_and_keeps_its_data(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    acme = await bearer(
        client, "it@acme", (await new_customer(client, h, "acme"))["admin_password"]
    )
    assert (await client.get("/api/v1/sites", headers=acme)).status_code == 200
    r = await client.patch("/api/v1/tenants/acme", headers=h, json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert (await client.get("/api/v1/sites", headers=acme)).status_code == 401
    login = await client.post(
        "/api/v1/auth/token", data={"username": "it@acme", "password": "whatever-it-was"}
    )
    assert login.status_code == 401
    # The data is kept: the provider still sees acme's site, and enabling restores the token.
    kept = await client.get("/api/v1/sites", headers={**h, TENANT: "acme"})
    assert [s["id"] for s in kept.json()["items"]] == ["acme-hq"]
    await client.patch("/api/v1/tenants/acme", headers=h, json={"disabled": False, "name": "ACME"})
    assert (await client.get("/api/v1/sites", headers=acme)).status_code == 200
    actions = {
        e["action"]
        for e in (await client.get("/api/v1/audit?action=tenant.", headers=h)).json()["items"]
    }
    assert {"tenant.disable", "tenant.enable", "tenant.rename"} <= actions
    own = await client.patch("/api/v1/tenants/default", headers=h, json={"disabled": True})
    assert own.status_code == 409


async def test_only_an_empty_tenant_is_deleted_and_a_taken_id_or_username_is_409(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    await new_customer(client, h, "acme")
    again = await client.post("/api/v1/tenants", headers=h, json={"id": "acme", "name": "Again"})
    assert again.status_code == 409 and "acme" in again.json()["error"]
    # A taken username fails the whole call: no half-made tenant stays behind.
    clash = await client.post(
        "/api/v1/tenants",
        headers=h,
        json={"id": "globex", "name": "Globex", "admin": {"username": "it@acme"}},
    )
    assert clash.status_code == 409
    assert (await client.get("/api/v1/tenants/globex", headers=h)).status_code == 404
    busy = await client.delete("/api/v1/tenants/acme", headers=h)
    assert busy.status_code == 409 and "sites" in busy.json()["error"]
    gone = await client.delete("/api/v1/sites/acme-hq", headers={**h, TENANT: "acme"})
    assert gone.status_code == 204
    assert (await client.delete("/api/v1/tenants/acme", headers=h)).status_code == 204
    assert (await client.get("/api/v1/tenants/acme", headers=h)).status_code == 404
    login = await client.post(
        "/api/v1/auth/token", data={"username": "it@acme", "password": "anything-at-all"}
    )
    assert login.status_code == 401
    assert (await client.delete("/api/v1/tenants/default", headers=h)).status_code == 409


async def test_the_last_provider_is_the_provider_tenants_last_admin(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    users = (await client.get("/api/v1/users?role=provider", headers=h)).json()["items"]
    assert [u["username"] for u in users] == ["admin"]
    me = users[0]
    r = await client.patch(f"/api/v1/users/{me['id']}", headers=h, json={"role": "operator"})
    assert r.status_code == 409 and "last active admin" in r.json()["error"]


def _old_schema_with(engine: Engine, users: list[tuple[str, str]]) -> None:
    """Migrate to 0010 (before providers) and add admins (username, tenant) as it stored them."""
    migrate(engine, MIGRATIONS, "0010")
    with engine.begin() as conn:
        for tenant in sorted({t for _, t in users}):
            conn.exec_driver_sql(
                "INSERT INTO tenants (id, name, created_at) "
                f"VALUES ('{tenant}', '{tenant}', CURRENT_TIMESTAMP)"
            )
        for name, tenant in users:
            conn.exec_driver_sql(
                "INSERT INTO users (username, password_hash, role, tenant_id, disabled, "
                f"created_at) VALUES ('{name}', 'x', 'admin', '{tenant}', false, "
                "CURRENT_TIMESTAMP)"
            )


def _roles(engine: Engine) -> dict[str, str]:
    with Session(engine) as s:
        return {u.username: u.role for u in s.exec(select(User)).all()}


def test_upgrading_makes_the_bootstrap_admin_the_provider_and_leaves_other_admins(
    any_engine: Engine,
) -> None:
    _old_schema_with(any_engine, [("zoe", "default"), ("admin", "default"), ("bob", "acme")])
    migrate(any_engine, MIGRATIONS)
    assert _roles(any_engine) == {"zoe": "admin", "admin": "provider", "bob": "admin"}


def test_upgrading_without_an_admin_user_promotes_the_oldest_default_admin(
    any_engine: Engine,
) -> None:
    _old_schema_with(any_engine, [("first", "default"), ("second", "default"), ("bob", "acme")])
    migrate(any_engine, MIGRATIONS)
    assert _roles(any_engine) == {"first": "provider", "second": "admin", "bob": "admin"}
