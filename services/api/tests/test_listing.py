"""Sorted, cursor-paginated lists: every page walk returns each row once, in the asked order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import Printer
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_site, in_tx
from tonerwatch_api.listing import Listing, ListingError, field
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus

ADMIN_PW = "correct horse battery staple"
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

PRINTERS = Listing(
    fields={
        "id": field(col(Printer.id), "str"),
        "name": field(col(Printer.name), "str"),
        "last_seen_at": field(col(Printer.last_seen_at), "datetime"),
        "lifetime_pages": field(col(Printer.lifetime_pages), "int"),
    },
    default="id",
)


def _fleet() -> list[Printer]:
    # Duplicates and NULLs in every sortable column: the hard cases for keyset pagination.
    names = ["lobby", None, "annex", "lobby", "yard", None, "annex", "copyroom", "lobby", "dock"]
    seen = [0, None, 5, 0, None, 3, 5, 1, 0, None]
    pages = [None, 100, 100, 7, None, 250, 7, 100, 3, None]
    return [
        Printer(
            id=f"p-{i:02d}",
            site_id="default",
            address=f"127.0.3.{i}",
            name=names[i],
            last_seen_at=_at(seen[i]),
            lifetime_pages=pages[i],
        )
        for i in range(10)
    ]


def _at(minutes: int | None) -> datetime | None:
    return None if minutes is None else T0 + timedelta(minutes=minutes)


def _expected(rows: list[dict[str, Any]], keys: tuple[tuple[str, bool], ...]) -> list[str]:
    # Stable sorts from the last key to the first; NULLs last whatever the direction.
    out = list(rows)
    for name, desc in reversed(keys):
        present = [r for r in out if r[name] is not None]
        absent = [r for r in out if r[name] is None]
        out = sorted(present, key=lambda r: r[name], reverse=desc) + absent
    return [r["id"] for r in out]


@pytest.mark.parametrize(
    "sort",
    ["id", "-id", "name", "-name", "name,-last_seen_at", "-last_seen_at,name", "lifetime_pages"],
)
def test_every_page_walk_returns_each_printer_once_in_order(db: Engine, sort: str) -> None:
    fleet = _fleet()
    in_tx(db, lambda s: s.add_all(fleet))
    rows = [
        {
            "id": p.id,
            "name": p.name,
            "last_seen_at": p.last_seen_at,
            "lifetime_pages": p.lifetime_pages,
        }
        for p in _fleet()
    ]
    order = PRINTERS.parse_sort(sort)
    for limit in (1, 3, 4, 10):
        seen: list[str] = []
        cursor = None
        for _ in range(20):
            with Session(db) as s:
                q = PRINTERS.page(select(Printer), order, cursor, limit)
                page, cursor = PRINTERS.cut(order, s.exec(q).all(), limit)
            seen += [p.id for p in page]
            if cursor is None:
                break
        assert seen == _expected(rows, order.keys), (sort, limit)


def test_sort_ends_with_the_unique_tiebreak() -> None:
    assert PRINTERS.parse_sort(None).text == "id"
    assert PRINTERS.parse_sort("-name").text == "-name,-id"
    assert PRINTERS.parse_sort("id,name").text == "id"


@pytest.mark.parametrize(
    ("sort", "why"),
    [
        ("colour", "unknown field 'colour'"),
        ("name,-name", "given twice"),
        ("name,last_seen_at,lifetime_pages,id", "at most 3"),
        (",", "no field"),
    ],
)
def test_bad_sort_is_refused_with_a_reason(sort: str, why: str) -> None:
    with pytest.raises(ListingError) as err:
        PRINTERS.parse_sort(sort)
    assert err.value.param == "sort" and why in err.value.message


def test_cursor_of_another_sort_or_forged_is_refused() -> None:
    by_name = PRINTERS.parse_sort("name")
    cursor = PRINTERS.encode_cursor(by_name, _fleet()[0])
    assert PRINTERS.decode_cursor(by_name, cursor) == ["lobby", "p-00"]
    with pytest.raises(ListingError, match="sort='name,id'"):
        PRINTERS.decode_cursor(PRINTERS.parse_sort("-name"), cursor)
    for forged in ("not-base64!", "eyJzIjoibmFtZSxpZCJ9", cursor[:-4]):
        with pytest.raises(ListingError):
            PRINTERS.decode_cursor(by_name, forged)


# --- through the REST API ------------------------------------------------------------------------


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(pg, bus, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


async def bearer(
    client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PW
) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def _walk(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        page = await client.get(
            path, headers=headers, params=params | ({"cursor": cursor} if cursor else {})
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("more than 50 pages")


async def test_printers_sorted_by_name_descending_over_pages(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    h = await bearer(client)
    for i, name in enumerate(["Reception", "Finance", None, "Finance", "Warehouse", "Lab"]):
        body = {"address": f"127.0.4.{i}"} | ({"name": name} if name else {})
        assert (await client.post("/api/v1/printers", headers=h, json=body)).status_code == 201
    got = await _walk(client, "/api/v1/printers", h, sort="-name", limit=2)
    names = [p["name"] for p in got]
    assert names == ["Warehouse", "Reception", "Lab", "Finance", "Finance", None]
    finance = [p["id"] for p in got if p["name"] == "Finance"]
    assert finance == sorted(finance, reverse=True)  # ties: id, in the sort's direction
    pending = await _walk(client, "/api/v1/printers", h, status="pending", monitored="true")
    assert len(pending) == 6
    assert await _walk(client, "/api/v1/printers", h, status=["ok", "offline"]) == []


async def test_bad_sort_and_foreign_cursor_answer_422_naming_the_parameter(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    for i in range(3):
        await client.post("/api/v1/printers", headers=h, json={"address": f"127.0.5.{i}"})
    r = await client.get("/api/v1/printers", headers=h, params={"sort": "community"})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "sort" and "unknown field" in r.json()["error"]
    page = (await client.get("/api/v1/printers", headers=h, params={"limit": 1})).json()
    r = await client.get(
        "/api/v1/printers",
        headers=h,
        params={"limit": 1, "sort": "-address", "cursor": page["next_cursor"]},
    )
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "cursor"
    r = await client.get("/api/v1/alerts", headers=h, params={"severity": "loud"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "severity.0"


async def test_sites_users_tokens_and_jobs_lists_are_pages(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    h = await bearer(client)
    for sid in ("zurich", "berlin", "oslo"):
        r = await client.post("/api/v1/sites", headers=h, json={"id": sid, "name": sid.title()})
        assert r.status_code == 201
    sites = await _walk(client, "/api/v1/sites", h, sort="-id", limit=2)
    assert [s["id"] for s in sites] == ["zurich", "oslo", "default", "berlin"]
    for name in ("ops-b", "ops-a", "ops-c"):
        r = await client.post(
            "/api/v1/users", headers=h, json={"username": name, "password": "long-password-1"}
        )
        assert r.status_code == 201
    users = await _walk(client, "/api/v1/users", h, q="ops-", limit=2)
    assert [u["username"] for u in users] == ["ops-a", "ops-b", "ops-c"]
    for name in ("nightly", "billing"):
        await client.post("/api/v1/tokens", headers=h, json={"name": name})
    tokens = await _walk(client, "/api/v1/tokens", h, sort="name", revoked="false", limit=1)
    assert [t["name"] for t in tokens] == ["billing", "nightly"]
    for i in range(3):
        r = await client.post(
            "/api/v1/discovery/jobs", headers=h, json={"targets": [f"127.0.6.{i}"]}
        )
        assert r.status_code == 201
    jobs = await _walk(client, "/api/v1/discovery/jobs", h, limit=2)
    assert [j["targets"] for j in jobs] == [["127.0.6.2"], ["127.0.6.1"], ["127.0.6.0"]]


async def test_users_changed_disabled_deleted_and_audited_within_the_tenant(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    def setup(s: Session) -> None:
        ensure_site(s, "acme-hq", "acme")
        create_user(s, "root@acme", "acme-admin-password", "admin", "acme")

    in_tx(pg, setup)
    h = await bearer(client)
    r = await client.post(
        "/api/v1/users", headers=h, json={"username": "olga", "password": "olga-password-1"}
    )
    olga_id = r.json()["id"]
    olga = await bearer(client, "olga", "olga-password-1")
    r = await client.patch(f"/api/v1/users/{olga_id}", headers=h, json={"role": "operator"})
    assert r.status_code == 200 and r.json()["role"] == "operator"
    assert (await client.get("/api/v1/me", headers=olga)).json()["role"] == "operator"
    # Disabling ends her sessions and tokens at once.
    r = await client.patch(f"/api/v1/users/{olga_id}", headers=h, json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert (await client.get("/api/v1/me", headers=olga)).status_code == 401
    r = await client.post(
        "/api/v1/auth/token", data={"username": "olga", "password": "olga-password-1"}
    )
    assert r.status_code == 401
    # The only admin cannot demote or delete themselves into an unmanaged tenant.
    me = (await client.get("/api/v1/users", headers=h, params={"q": "admin"})).json()["items"][0]
    r = await client.patch(f"/api/v1/users/{me['id']}", headers=h, json={"role": "viewer"})
    assert r.status_code == 409 and "last active admin" in r.json()["error"]
    assert (await client.delete(f"/api/v1/users/{me['id']}", headers=h)).status_code == 409
    # Another tenant's admin sees none of it.
    acme = await bearer(client, "root@acme", "acme-admin-password")
    assert (await client.get(f"/api/v1/users/{olga_id}", headers=acme)).status_code == 404
    r = await client.patch(f"/api/v1/users/{olga_id}", headers=acme, json={"disabled": False})
    assert r.status_code == 404
    assert (await client.delete(f"/api/v1/users/{olga_id}", headers=acme)).status_code == 404
    assert (await client.get("/api/v1/audit", headers=acme)).json()["items"] == []
    assert (await client.delete(f"/api/v1/users/{olga_id}", headers=h)).status_code == 204
    assert (await client.get(f"/api/v1/users/{olga_id}", headers=h)).status_code == 404
    # The audit log tells the story, newest first, without the password.
    log = await _walk(client, "/api/v1/audit", h, action="user.", limit=2)
    assert [(e["action"], e["target"]) for e in log] == [
        ("user.delete", "olga"),
        ("user.update", "olga"),
        ("user.update", "olga"),
        ("user.create", "olga"),
    ]
    assert log[1]["detail"] == {"disabled": True} and log[2]["detail"] == {"role": "operator"}
    r = await client.patch(
        f"/api/v1/users/{me['id']}", headers=h, json={"password": "a-new-long-password"}
    )
    assert r.status_code == 200 and "a-new-long" not in r.text
    assert (await client.get("/api/v1/me", headers=h)).status_code == 401  # own sessions end too
    h = await bearer(client, "admin", "a-new-long-password")
    entry = (await client.get("/api/v1/audit", headers=h, params={"limit": 1})).json()["items"][0]
    assert entry["detail"] == {"password": "changed"}
    in_tx(pg, lambda s: create_user(s, "vic", "viewer-password-1", "viewer"))
    viewer = await bearer(client, "vic", "viewer-password-1")
    assert (await client.get("/api/v1/audit", headers=viewer)).status_code == 403
