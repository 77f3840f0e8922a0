"""Alerts as an operator works them: a supersede chain keeps one open row, filters by kind, bulk acknowledge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_admin
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import AlertResolved, ThresholdCrossed

ADMIN_PW = "correct horse battery staple"
T0 = datetime.now(UTC) - timedelta(hours=3)


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(pg, bus, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        r = await c.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PW})
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield c


async def add_printer(client: httpx.AsyncClient, address: str) -> str:
    r = await client.post("/api/v1/printers", json={"address": address})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def crossed(pid: str, rule: str, *, minutes: int, **extra: object) -> ThresholdCrossed:
    index = extra.pop("supply_index", "1")
    supersedes = extra.pop("supersedes", None)
    return ThresholdCrossed(
        source="alerter",
        site_id="default",
        printer_id=pid,
        alert_id=f"{pid}:{index or 'printer'}:{rule}",
        rule=rule,
        severity="critical" if rule in ("critical", "empty", "jammed") else "warning",
        supply_index=index,  # type: ignore[arg-type]
        kind=extra.pop("kind", "toner"),  # type: ignore[arg-type]
        percent=extra.pop("percent", None),  # type: ignore[arg-type]
        message=f"{rule} on {pid}",
        supersedes=supersedes,  # type: ignore[arg-type]
        occurred_at=T0 + timedelta(minutes=minutes),
    )


def superseded(pid: str, rule: str, by: str, *, minutes: int) -> AlertResolved:
    return AlertResolved(
        source="alerter",
        site_id="default",
        printer_id=pid,
        alert_id=f"{pid}:1:{rule}",
        rule=rule,
        message=f"Now {by}",
        superseded_by=f"{pid}:1:{by}",
        occurred_at=T0 + timedelta(minutes=minutes),
    )


async def test_brother_toner_running_out_leaves_one_open_alert_with_the_chain_kept(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    pid = await add_printer(client, "127.0.0.21")
    apply_now(pg, crossed(pid, "low", minutes=0, percent=18))
    apply_now(pg, crossed(pid, "critical", minutes=10, percent=4, supersedes=f"{pid}:1:low"))
    apply_now(pg, superseded(pid, "low", "critical", minutes=10))
    apply_now(pg, crossed(pid, "empty", minutes=20, percent=0, supersedes=f"{pid}:1:critical"))
    apply_now(pg, superseded(pid, "critical", "empty", minutes=20))
    open_ = (await client.get("/api/v1/alerts", params={"printer_id": pid})).json()["items"]
    assert [(a["rule"], a["kind"], a["superseded_by"]) for a in open_] == [("empty", "toner", None)]
    every = (
        await client.get(
            "/api/v1/alerts", params={"printer_id": pid, "open": "false", "sort": "raised_at"}
        )
    ).json()["items"]
    assert [(a["rule"], a["superseded_by"]) for a in every] == [
        ("low", f"{pid}:1:critical"),
        ("critical", f"{pid}:1:empty"),
        ("empty", None),
    ]
    assert all(a["resolved_at"] for a in every[:2])


async def test_alerts_filter_by_supply_kind_and_printer_wide(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    pid = await add_printer(client, "127.0.0.22")
    apply_now(pg, crossed(pid, "low", minutes=0, percent=12))
    apply_now(pg, crossed(pid, "almost_full", minutes=1, supply_index="5", kind="waste_toner"))
    apply_now(pg, crossed(pid, "jammed", minutes=2, supply_index=None, kind=None))

    async def rules(*kinds: str) -> list[str]:
        r = await client.get(
            "/api/v1/alerts", params=[("printer_id", pid)] + [("kind", k) for k in kinds]
        )
        assert r.status_code == 200, r.text
        return sorted(a["rule"] for a in r.json()["items"])

    assert await rules("toner") == ["low"]
    assert await rules("waste_toner", "printer") == ["almost_full", "jammed"]
    assert await rules() == ["almost_full", "jammed", "low"]
    bad = await client.get("/api/v1/alerts", params={"kind": "unobtainium"})
    assert bad.status_code == 422 and "kind" in bad.text


async def test_acknowledge_several_at_once_reports_unknown_ids(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    pid = await add_printer(client, "127.0.0.23")
    apply_now(pg, crossed(pid, "low", minutes=0, percent=12))
    apply_now(pg, crossed(pid, "almost_full", minutes=1, supply_index="5", kind="waste_toner"))
    ids = [
        a["id"]
        for a in (await client.get("/api/v1/alerts", params={"printer_id": pid})).json()["items"]
    ]
    assert len(ids) == 2
    r = await client.post("/api/v1/alerts/acknowledge", json={"ids": [*ids, 987654321]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(a["id"] for a in body["acknowledged"]) == sorted(ids)
    assert {a["acknowledged_by"] for a in body["acknowledged"]} == {"admin"}
    assert body["not_found"] == [987654321]
    # Again: idempotent, the first acknowledgement's time stays.
    again = (await client.post("/api/v1/alerts/acknowledge", json={"ids": ids})).json()
    assert [a["acknowledged_at"] for a in again["acknowledged"]] == [
        a["acknowledged_at"] for a in body["acknowledged"]
    ]
    audit = (await client.get("/api/v1/audit")).json()["items"]
    assert sum(e["action"] == "alert.acknowledge" for e in audit) >= 2
    assert (await client.post("/api/v1/alerts/acknowledge", json={"ids": []})).status_code == 422
