"""Printer groups: REST CRUD and members, tenant isolation, responsibility by group (announced
per printer to the alerter), the dashboard and alerts defaulting to a user's groups, Settings."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import AuditEntry
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_site, in_tx
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_api.ui import pages
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import PrinterConfigured, SupplyReading, ThresholdCrossed

from .test_alert_settings import announced, ui_login
from .test_rest import ADMIN_PW, bearer

ACME_PW = "acme-admin-pass-1"


@pytest.fixture
async def client(
    pg: Engine, bus: Bus, configured: Callable[..., PrinterConfigured]
) -> AsyncIterator[httpx.AsyncClient]:
    """An api with sites hq and branch (ours), acme-hq (tenant acme) and a printer in each."""
    ensure_admin(pg, ADMIN_PW)

    def setup(s: Session) -> None:
        ensure_site(s, "hq")
        ensure_site(s, "branch")
        ensure_site(s, "acme-hq", "acme")
        create_user(s, "ann@acme", ACME_PW, "admin", "acme")

    in_tx(pg, setup)
    printers = [
        ("p-hq-ricoh", "hq", "HQ Ricoh"),
        ("p-hq-canon", "hq", "HQ Canon"),
        ("p-branch-hp", "branch", "Branch HP"),
        ("p-acme-xerox", "acme-hq", "Acme Xerox"),
    ]
    for i, (pid, site, name) in enumerate(printers):
        apply_now(pg, configured(pid, site_id=site, name=name, address=f"127.0.0.{40 + i}"))
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(pg, bus, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        yield c


def raised(pid: str, site: str) -> ThresholdCrossed:
    return ThresholdCrossed(
        source="alerter/test",
        site_id=site,
        printer_id=pid,
        alert_id=f"{pid}:1:low",
        rule="low",
        severity="warning",
        message=f"Low toner: {pid}",
    )


async def test_groups_crud_members_and_printer_filter(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    h = await bearer(client)
    made = await client.post(
        "/api/v1/groups",
        headers=h,
        json={"name": "Finance", "description": "Floor 3", "printer_ids": ["p-hq-ricoh"]},
    )
    assert made.status_code == 201, made.text
    finance = made.json()
    assert (finance["name"], finance["printers"], finance["printer_ids"]) == (
        "Finance",
        1,
        ["p-hq-ricoh"],
    )
    gid = finance["id"]
    second = await client.post("/api/v1/groups", headers=h, json={"name": "Annex"})
    assert second.status_code == 201
    # Names are unique in the tenant, whatever their case.
    taken = await client.post("/api/v1/groups", headers=h, json={"name": "finance"})
    assert taken.status_code == 409 and "finance" in taken.json()["error"]
    blank = await client.post("/api/v1/groups", headers=h, json={"name": "  "})
    assert blank.status_code == 422 and blank.json()["fields"][0]["field"] == "name"

    # Members, whole: across sites; a second copy of an id counts once.
    put = await client.put(
        f"/api/v1/groups/{gid}/printers",
        headers=h,
        json={"printer_ids": ["p-branch-hp", "p-hq-ricoh", "p-branch-hp"]},
    )
    assert put.status_code == 200, put.text
    assert put.json()["printer_ids"] == ["p-branch-hp", "p-hq-ricoh"]
    assert put.json()["printers"] == 2
    bad = await client.put(
        f"/api/v1/groups/{gid}/printers", headers=h, json={"printer_ids": ["p-hq-ricoh", ""]}
    )
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "printer_ids.1"
    missing = await client.put(
        f"/api/v1/groups/{gid}/printers", headers=h, json={"printer_ids": ["p-nowhere"]}
    )
    assert missing.status_code == 404 and "p-nowhere" in missing.json()["error"]

    # GET /printers?group=: the group's printers; repeated: any of the groups.
    listed = await client.get(f"/api/v1/printers?group={gid}", headers=h)
    assert [p["id"] for p in listed.json()["items"]] == ["p-branch-hp", "p-hq-ricoh"]
    both = await client.get(f"/api/v1/printers?group={gid}&site=hq", headers=h)
    assert [p["id"] for p in both.json()["items"]] == ["p-hq-ricoh"]
    empty = await client.get(f"/api/v1/printers?group={second.json()['id']}", headers=h)
    assert empty.json()["items"] == []
    csv_text = (await client.get(f"/api/v1/export/printers.csv?group={gid}", headers=h)).text
    assert "p-branch-hp" in csv_text and "p-hq-canon" not in csv_text

    # Sorted and paged like every list.
    page1 = (await client.get("/api/v1/groups?limit=1", headers=h)).json()
    assert [g["name"] for g in page1["items"]] == ["Annex"] and page1["next_cursor"]
    page2 = (
        await client.get(f"/api/v1/groups?limit=1&cursor={page1['next_cursor']}", headers=h)
    ).json()
    assert [(g["name"], g["printers"]) for g in page2["items"]] == [("Finance", 2)]
    assert page2["next_cursor"] is None
    newest = (await client.get("/api/v1/groups?sort=-created_at", headers=h)).json()
    assert [g["name"] for g in newest["items"]] == ["Annex", "Finance"]
    bad_sort = await client.get("/api/v1/groups?sort=printers", headers=h)
    assert bad_sort.status_code == 422

    renamed = await client.patch(
        f"/api/v1/groups/{gid}", headers=h, json={"name": "Finance dept", "description": None}
    )
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["description"]) == ("Finance dept", None)
    clash = await client.patch(f"/api/v1/groups/{gid}", headers=h, json={"name": "ANNEX"})
    assert clash.status_code == 409
    got = await client.get(f"/api/v1/groups/{gid}", headers=h)
    assert got.json()["printer_ids"] == ["p-branch-hp", "p-hq-ricoh"]

    # A removed printer leaves the group's count and members.
    assert (await client.delete("/api/v1/printers/p-branch-hp", headers=h)).status_code == 204
    assert (await client.get(f"/api/v1/groups/{gid}", headers=h)).json()["printer_ids"] == [
        "p-hq-ricoh"
    ]

    assert (await client.delete(f"/api/v1/groups/{gid}", headers=h)).status_code == 204
    assert (await client.get(f"/api/v1/groups/{gid}", headers=h)).status_code == 404
    assert (await client.get("/api/v1/printers/p-hq-ricoh", headers=h)).status_code == 200

    def actions(s: Session) -> list[str]:
        q = select(AuditEntry.action).where(col(AuditEntry.action).startswith("group."))
        return list(s.exec(q.order_by(col(AuditEntry.id))).all())

    assert in_tx(pg, actions) == [
        "group.create",
        "group.create",
        "group.members",
        "group.update",
        "group.delete",
    ]


async def test_only_admins_change_groups_and_viewers_read_them(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    in_tx(pg, lambda s: create_user(s, "olga", "operator-pass-1", "operator"))
    h = await bearer(client)
    gid = (await client.post("/api/v1/groups", headers=h, json={"name": "Finance"})).json()["id"]
    olga = await bearer(client, "olga", "operator-pass-1")
    assert (await client.get("/api/v1/groups", headers=olga)).status_code == 200
    assert (await client.get(f"/api/v1/groups/{gid}", headers=olga)).status_code == 200
    refused = [
        await client.post("/api/v1/groups", headers=olga, json={"name": "Mine"}),
        await client.patch(f"/api/v1/groups/{gid}", headers=olga, json={"name": "x"}),
        await client.put(f"/api/v1/groups/{gid}/printers", headers=olga, json={"printer_ids": []}),
        await client.delete(f"/api/v1/groups/{gid}", headers=olga),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]


async def test_another_tenant_neither_sees_nor_touches_a_group(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    ours = await client.post(
        "/api/v1/groups", headers=h, json={"name": "Finance", "printer_ids": ["p-hq-ricoh"]}
    )
    gid = ours.json()["id"]
    ann = await bearer(client, "ann@acme", ACME_PW)
    assert (await client.get("/api/v1/groups", headers=ann)).json()["items"] == []
    answers = [
        await client.get(f"/api/v1/groups/{gid}", headers=ann),
        await client.patch(f"/api/v1/groups/{gid}", headers=ann, json={"name": "Stolen"}),
        await client.put(
            f"/api/v1/groups/{gid}/printers", headers=ann, json={"printer_ids": ["p-acme-xerox"]}
        ),
        await client.delete(f"/api/v1/groups/{gid}", headers=ann),
    ]
    assert [r.status_code for r in answers] == [404, 404, 404, 404]
    # Their group cannot take our printer, and ours cannot take theirs.
    theirs = await client.post("/api/v1/groups", headers=ann, json={"name": "Finance"})
    assert theirs.status_code == 201  # the same name in another tenant is fine
    tid = theirs.json()["id"]
    grab = await client.put(
        f"/api/v1/groups/{tid}/printers", headers=ann, json={"printer_ids": ["p-hq-ricoh"]}
    )
    assert grab.status_code == 404
    grab = await client.put(
        f"/api/v1/groups/{gid}/printers", headers=h, json={"printer_ids": ["p-acme-xerox"]}
    )
    assert grab.status_code == 404
    # Filtering by another tenant's group shows none of its printers.
    await client.put(
        f"/api/v1/groups/{tid}/printers", headers=ann, json={"printer_ids": ["p-acme-xerox"]}
    )
    assert (await client.get(f"/api/v1/printers?group={tid}", headers=h)).json()["items"] == []
    # Nor can a user of ours be made responsible for their group.
    me = (await client.get("/api/v1/me", headers=h)).json()
    users = (await client.get("/api/v1/users", headers=h)).json()["items"]
    uid = next(u["id"] for u in users if u["username"] == me["username"])
    bad = await client.put(
        f"/api/v1/users/{uid}/alerting",
        headers=h,
        json={"email": "admin@example.org", "responsible_groups": [gid, tid]},
    )
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "responsible_groups.1"
    assert (await client.get(f"/api/v1/groups/{gid}", headers=h)).json()["name"] == "Finance"


async def test_group_responsibility_is_announced_per_printer_and_follows_changes(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    await client.put(
        "/api/v1/sites/hq/alert-settings", headers=h, json={"recipients": ["it@example.org"]}
    )
    await announced(bus, "hq", 1)
    gid = (
        await client.post(
            "/api/v1/groups", headers=h, json={"name": "Finance", "printer_ids": ["p-hq-ricoh"]}
        )
    ).json()["id"]
    made = await client.post(
        "/api/v1/users",
        headers=h,
        json={"username": "fiona", "password": "finance-pass-1", "email": "fiona@example.org"},
    )
    uid = made.json()["id"]
    # fiona answers for every site until she has a group: then for its printers only.
    assert "fiona@example.org" in (await announced(bus, "hq", 2)).recipients
    r = await client.put(
        f"/api/v1/users/{uid}/alerting",
        headers=h,
        json={"email": "fiona@example.org", "responsible_groups": [str(gid)]},  # as the form sends
    )
    assert r.status_code == 200, r.text
    assert r.json()["responsible_groups"] == [gid] and r.json()["responsible_sites"] == []
    hq = await announced(bus, "hq", 3)
    assert hq.recipients == ("it@example.org",)
    assert hq.printer_recipients == {"p-hq-ricoh": ("fiona@example.org",)}
    got = await client.get(f"/api/v1/users/{uid}/alerting", headers=h)
    assert got.json()["responsible_groups"] == [gid]
    settings = (await client.get("/api/v1/sites/hq/alert-settings", headers=h)).json()
    assert settings["printer_recipients"] == {"p-hq-ricoh": ["fiona@example.org"]}
    assert (await announced(bus, "branch", 2)).recipients == ()  # she left the branch's list

    # A printer of the branch joins the group: the branch is announced with it.
    await client.put(
        f"/api/v1/groups/{gid}/printers",
        headers=h,
        json={"printer_ids": ["p-hq-ricoh", "p-branch-hp"]},
    )
    branch = await announced(bus, "branch", 3)
    assert branch.printer_recipients == {"p-branch-hp": ("fiona@example.org",)}
    # Leaving the HQ printer re-announces HQ without her.
    await client.put(
        f"/api/v1/groups/{gid}/printers", headers=h, json={"printer_ids": ["p-branch-hp"]}
    )
    assert (await announced(bus, "hq", 4)).printer_recipients == {}
    # Deleting the group she answers for alone is refused: with nothing chosen she would
    # silently answer for every site.
    refused = await client.delete(f"/api/v1/groups/{gid}", headers=h)
    assert refused.status_code == 409 and "fiona" in refused.json()["error"]
    # With a site of her own besides, the group can go: the branch is re-announced without it.
    r = await client.put(
        f"/api/v1/users/{uid}/alerting",
        headers=h,
        json={
            "email": "fiona@example.org",
            "responsible_groups": [gid],
            "responsible_sites": ["hq"],
        },
    )
    assert r.status_code == 200
    assert "fiona@example.org" in (await announced(bus, "hq", 5)).recipients
    assert (await client.delete(f"/api/v1/groups/{gid}", headers=h)).status_code == 204
    branch = await announced(bus, "branch", 5)
    assert branch.printer_recipients == {} and branch.recipients == ()
    profile = (await client.get(f"/api/v1/users/{uid}/alerting", headers=h)).json()
    assert profile["responsible_groups"] == [] and profile["responsible_sites"] == ["hq"]


async def test_disabling_a_group_responsible_user_reannounces_their_printers(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    gid = (
        await client.post(
            "/api/v1/groups", headers=h, json={"name": "Branch", "printer_ids": ["p-branch-hp"]}
        )
    ).json()["id"]
    made = await client.post(
        "/api/v1/users",
        headers=h,
        json={"username": "bert", "password": "branch-pass-1", "email": "bert@example.org"},
    )
    uid = made.json()["id"]
    await client.put(
        f"/api/v1/users/{uid}/alerting",
        headers=h,
        json={"email": "bert@example.org", "responsible_groups": [gid]},
    )
    assert (await announced(bus, "branch", 2)).printer_recipients == {
        "p-branch-hp": ("bert@example.org",)
    }
    r = await client.patch(f"/api/v1/users/{uid}", headers=h, json={"disabled": True})
    assert r.status_code == 200
    assert (await announced(bus, "branch", 3)).printer_recipients == {}


async def test_dashboard_and_alerts_default_to_the_users_groups(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    for pid, site in (("p-hq-ricoh", "hq"), ("p-hq-canon", "hq"), ("p-branch-hp", "branch")):
        apply_now(pg, raised(pid, site))
    h = await bearer(client)
    gid = (
        await client.post(
            "/api/v1/groups", headers=h, json={"name": "Finance", "printer_ids": ["p-hq-ricoh"]}
        )
    ).json()["id"]
    made = await client.post(
        "/api/v1/users",
        headers=h,
        json={"username": "fiona", "password": "finance-pass-1", "email": "fiona@example.org"},
    )
    uid = made.json()["id"]
    r = await client.put(
        f"/api/v1/users/{uid}/alerting",
        headers=h,
        json={"email": "fiona@example.org", "responsible_groups": [gid]},
    )
    assert r.status_code == 200
    client.headers.pop("Authorization", None)
    await ui_login(client, "fiona", "finance-pass-1")
    mine = (await client.get("/")).text
    # Her group's printer, not the other printer of the same site.
    assert "HQ Ricoh" in mine and "HQ Canon" not in mine and "Branch HP" not in mine
    assert "Showing your groups: Finance" in mine
    assert "/api/v1/export/printers.csv?scope=mine" in mine
    everything = (await client.get("/?scope=all")).text
    assert all(name in everything for name in ("HQ Ricoh", "HQ Canon", "Branch HP"))
    assert "Show only your groups (Finance)" in everything
    alerts = (await client.get("/alerts")).text
    assert "Low toner: p-hq-ricoh" in alerts
    assert "p-hq-canon" not in alerts and "p-branch-hp" not in alerts
    assert "Low toner: p-hq-canon" in (await client.get("/alerts?scope=all")).text

    # With a site too, a printer of either is hers.
    await client.put(
        f"/api/v1/users/{uid}/alerting",
        headers=h,
        json={
            "email": "fiona@example.org",
            "responsible_groups": [gid],
            "responsible_sites": ["branch"],
        },
    )
    await ui_login(client, "fiona", "finance-pass-1")
    both = (await client.get("/")).text
    assert "HQ Ricoh" in both and "Branch HP" in both and "HQ Canon" not in both
    assert "Showing your sites and groups: branch, Finance" in both


async def test_dashboard_group_filter(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    gid = (
        await client.post(
            "/api/v1/groups",
            headers=h,
            json={"name": "Colour", "printer_ids": ["p-hq-ricoh", "p-branch-hp"]},
        )
    ).json()["id"]
    client.headers.pop("Authorization", None)
    await ui_login(client, "admin", ADMIN_PW)
    page = (await client.get(f"/?group={gid}")).text
    assert "HQ Ricoh" in page and "Branch HP" in page and "HQ Canon" not in page
    assert f'<option value="{gid}" selected>Colour</option>' in page
    narrowed = (await client.get(f"/?group={gid}&site=hq")).text
    assert "HQ Ricoh" in narrowed and "Branch HP" not in narrowed
    # A group id that is not a number is no filter at all.
    assert "HQ Canon" in (await client.get("/?group=abc")).text


async def test_settings_page_lists_groups_and_users_groups(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    gid = (
        await client.post(
            "/api/v1/groups", headers=h, json={"name": "Finance", "printer_ids": ["p-hq-ricoh"]}
        )
    ).json()["id"]
    made = await client.post(
        "/api/v1/users",
        headers=h,
        json={"username": "fiona", "password": "finance-pass-1", "email": "fiona@example.org"},
    )
    await client.put(
        f"/api/v1/users/{made.json()['id']}/alerting",
        headers=h,
        json={"email": "fiona@example.org", "responsible_groups": [gid]},
    )
    client.headers.pop("Authorization", None)
    await ui_login(client, "admin", ADMIN_PW)
    page = (await client.get("/settings")).text
    row = page[page.index(f'data-group="{gid}"') :].split("</tr>")[0]
    assert f'data-api="PUT /api/v1/groups/{gid}/printers"' in row
    assert re.search(r'value="p-hq-ricoh" checked', row)
    assert re.search(r'value="p-hq-canon" >', row)
    assert "p-acme-xerox" not in page  # another tenant's printers are not offered
    user = page[page.index('data-user="fiona"') :].split("</tr>")[0]
    assert f'name="responsible_groups" value="{gid}" checked' in user


async def test_exports_and_orders_follow_a_group_and_site_responsibility(
    client: httpx.AsyncClient, pg: Engine, reading: Callable[..., SupplyReading]
) -> None:
    for pid, site in (("p-hq-ricoh", "hq"), ("p-hq-canon", "hq"), ("p-branch-hp", "branch")):
        apply_now(pg, reading(printer_id=pid, site_id=site))
    h = await bearer(client)
    for pid in ("p-hq-ricoh", "p-hq-canon", "p-branch-hp"):
        r = await client.post(
            "/api/v1/orders", headers=h, json={"printer_id": pid, "supply_index": "4"}
        )
        assert r.status_code == 201, r.text
    gid = (
        await client.post(
            "/api/v1/groups", headers=h, json={"name": "Finance", "printer_ids": ["p-hq-ricoh"]}
        )
    ).json()["id"]
    r = await client.post(
        "/api/v1/users",
        headers=h,
        json={
            "username": "gus",
            "password": "gus-password-1",
            "responsible_groups": [gid],
            "responsible_sites": ["branch"],
        },
    )
    assert r.status_code == 201, r.text
    profile = await client.get(f"/api/v1/users/{r.json()['id']}/alerting", headers=h)
    assert profile.json()["responsible_groups"] == [gid]
    client.headers.pop("Authorization", None)
    await ui_login(client, "gus", "gus-password-1")
    dashboard = (await client.get("/")).text
    link = re.search(r'id="export-fleet" href="([^"]+)"', dashboard)
    assert link and link.group(1) == "/api/v1/export/printers.csv?scope=mine"
    fleet_csv = (await client.get(link.group(1))).text
    # Their group's printer and their site's, never the other printer of the group's site.
    assert "p-hq-ricoh" in fleet_csv and "p-branch-hp" in fleet_csv
    assert "p-hq-canon" not in fleet_csv and "p-acme-xerox" not in fleet_csv
    meters = re.search(r'id="export-meters" href="([^"]+)"', dashboard)
    assert meters and "scope=mine" in meters.group(1)
    meter_csv = (await client.get(meters.group(1))).text
    assert "p-hq-ricoh" in meter_csv and "p-hq-canon" not in meter_csv
    orders = (await client.get("/orders")).text
    assert "HQ Ricoh" in orders and "Branch HP" in orders and "HQ Canon" not in orders
    assert "Showing your sites and groups" in orders
    assert "HQ Canon" in (await client.get("/orders?scope=all")).text


async def test_one_printer_joins_and_leaves_a_group_from_its_page(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await bearer(client)
    gid = (await client.post("/api/v1/groups", headers=h, json={"name": "Finance"})).json()["id"]
    for _ in range(2):  # idempotent
        r = await client.put(f"/api/v1/groups/{gid}/printers/p-hq-canon", headers=h)
        assert r.status_code == 200 and r.json()["printer_ids"] == ["p-hq-canon"]
    r = await client.put(f"/api/v1/groups/{gid}/printers/p-branch-hp", headers=h)
    assert sorted(r.json()["printer_ids"]) == ["p-branch-hp", "p-hq-canon"]
    acme = await bearer(client, "ann@acme", ACME_PW)
    assert (
        await client.put(f"/api/v1/groups/{gid}/printers/p-hq-canon", headers=acme)
    ).status_code == 404
    r = await client.put(f"/api/v1/groups/{gid}/printers/p-acme-xerox", headers=h)
    assert r.status_code == 404  # another tenant's printer, as if it did not exist
    for _ in range(2):
        r = await client.delete(f"/api/v1/groups/{gid}/printers/p-hq-canon", headers=h)
        assert r.status_code == 200 and r.json()["printer_ids"] == ["p-branch-hp"]
    # The printer page names its groups and, for an admin, offers to change them.
    client.headers.pop("Authorization", None)
    await ui_login(client, "admin", ADMIN_PW)
    page = (await client.get("/printers/p-branch-hp")).text
    groups = page[page.index('id="printer-groups"') :]
    assert "Finance" in groups
    assert f'data-api="DELETE /api/v1/groups/{gid}/printers/p-branch-hp"' in groups
    other = (await client.get("/printers/p-hq-canon")).text
    assert f'data-api="PUT /api/v1/groups/{gid}/printers/p-hq-canon"' in other
    # A fleet too large for checkboxes links to the group's printers instead.
    settings = (await client.get("/settings")).text
    assert 'name="printer_ids" value="p-hq-ricoh"' in settings
    monkeypatch.setattr(pages, "GROUP_PICKER_MAX", 2)
    large = (await client.get("/settings")).text
    assert 'name="printer_ids"' not in large
    assert f'href="/?group={gid}&amp;scope=all">1 printer</a>' in large
