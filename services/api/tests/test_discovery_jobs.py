"""Discovery jobs over REST (start, progress, found printers, cancel) and measured network usage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_site, in_tx
from tonerwatch_api.domain.discovery_jobs import progress_percent
from tonerwatch_api.domain.network_usage import human_bytes, usage
from tonerwatch_api.projections.discovery_jobs import apply_job_event
from tonerwatch_api.projections.network_usage import apply_usage
from tonerwatch_api.projections.printers import ProjectionOptions, apply_event
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_api.ui.pages import nice_ceiling
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import (
    DiscoveryCancelled,
    DiscoveryFinished,
    DiscoveryProgress,
    DiscoveryRequested,
    Event,
    PrinterFound,
    SupplyReading,
)
from tonerwatch_shared.printer.model import PrinterIdentity

from .conftest import HP_M479

ADMIN_PW = "admin-password-123"
SECRET = "s3cret-community"
KONICA = PrinterIdentity(
    vendor="Konica Minolta", model="bizhub C250i", serial="AA2M021115700", is_printer=True
)


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(
        session_secret="test-secret",
        admin_password=ADMIN_PW,
        cookie_secure=False,
        auto_monitor_discovered=False,
    )
    app = create_app(pg, bus, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        yield c


async def bearer(
    client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PW
) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def apply_jobs(engine: Engine, event: Event) -> str:
    return in_tx(engine, lambda s: apply_job_event(s, event))


async def test_start_publishes_discovery_requested_and_never_returns_the_community(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    waiter = asyncio.create_task(
        wait_for_event(
            bus, bus.subjects.all, lambda e: isinstance(e, DiscoveryRequested), timeout_s=10
        )
    )
    await asyncio.sleep(0.2)
    r = await client.post(
        "/api/v1/discovery/jobs",
        headers=h,
        json={"targets": ["127.0.0.0/29"], "communities": [SECRET], "rate_pps": 50},
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert SECRET not in r.text
    assert job["state"] == "requested" and job["running"] is True and job["percent"] == 0
    event = await waiter
    assert isinstance(event, DiscoveryRequested)
    assert event.job_id == job["id"] and event.targets == ("127.0.0.0/29",)
    assert [c.community for c in event.credentials] == [SECRET]
    assert event.rate_pps == 50
    listed = await client.get("/api/v1/discovery/jobs", headers=h)
    assert [j["id"] for j in listed.json()["items"]] == [job["id"]]


async def test_progress_found_printers_and_monitoring_them(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    h = await bearer(client)
    job = (
        await client.post("/api/v1/discovery/jobs", headers=h, json={"targets": ["127.0.0.0/28"]})
    ).json()
    t0 = datetime.now(UTC)
    progress = DiscoveryProgress(
        source="discovery/test",
        site_id="default",
        job_id=job["id"],
        probed=4,
        total=16,
        live=2,
        printers_found=1,
        elapsed_s=1.0,
        remaining_s=3.0,
        occurred_at=t0,
    )
    assert apply_jobs(pg, progress) == "applied"
    assert apply_jobs(pg, progress) == "ignored"  # redelivery changes nothing
    found = PrinterFound(
        source="discovery/test",
        site_id="default",
        job_id=job["id"],
        address="127.0.0.5",
        identity=KONICA,
    )
    # Both projections see the same event: the printers read model and the job's found list.
    unmonitored = ProjectionOptions(auto_monitor_discovered=False)
    assert in_tx(pg, lambda s: apply_event(s, found, "test", unmonitored, t0)) == "applied"
    assert apply_jobs(pg, found) == "applied"
    assert apply_jobs(pg, found) == "ignored"
    got = (await client.get(f"/api/v1/discovery/jobs/{job['id']}", headers=h)).json()
    assert got["state"] == "running" and got["percent"] == 25.0 and got["remaining_s"] == 3.0
    [row] = got["found"]
    assert row["address"] == "127.0.0.5" and row["serial"] == "AA2M021115700"
    assert row["printer_id"] and row["monitored"] is False

    r = await client.patch(
        f"/api/v1/printers/{row['printer_id']}", headers=h, json={"monitored": True}
    )
    assert r.status_code == 200
    finished = DiscoveryFinished(
        source="discovery/test",
        site_id="default",
        job_id=job["id"],
        end_condition="completed",
        probed=16,
        total=16,
        live=3,
        printers=1,
        non_printers=2,
        elapsed_s=4.2,
        bytes_sent=1200,
        bytes_received=3400,
        occurred_at=t0 + timedelta(seconds=4),
    )
    assert apply_jobs(pg, finished) == "applied"
    # A late progress frame does not reopen a finished job.
    late = progress.model_copy(update={"occurred_at": t0 + timedelta(seconds=5)})
    assert apply_jobs(pg, late) == "ignored"
    got = (await client.get(f"/api/v1/discovery/jobs/{job['id']}", headers=h)).json()
    assert got["state"] == "completed" and got["running"] is False and got["percent"] == 100
    assert got["bytes_sent"] == 1200 and got["found"][0]["monitored"] is True


async def test_cancel_publishes_discovery_cancelled_once(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    h = await bearer(client)
    job = (
        await client.post("/api/v1/discovery/jobs", headers=h, json={"targets": ["127.0.0.1"]})
    ).json()
    waiter = asyncio.create_task(
        wait_for_event(
            bus, bus.subjects.all, lambda e: isinstance(e, DiscoveryCancelled), timeout_s=10
        )
    )
    await asyncio.sleep(0.2)
    r = await client.post(f"/api/v1/discovery/jobs/{job['id']}/cancel", headers=h)
    assert r.status_code == 202 and r.json()["cancel_requested_at"]
    event = await waiter
    assert isinstance(event, DiscoveryCancelled) and event.job_id == job["id"]


async def test_discovery_roles_tenants_and_validation(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    def users(s: Session) -> None:
        create_user(s, "viewer1", "viewer-password-1", "viewer")
        ensure_site(s, "other-hq", "other")
        create_user(s, "bob", "bob-password-123", "admin", "other")

    in_tx(pg, users)
    h = await bearer(client)
    job = (
        await client.post("/api/v1/discovery/jobs", headers=h, json={"targets": ["127.0.0.1"]})
    ).json()
    viewer = await bearer(client, "viewer1", "viewer-password-1")
    denied = await client.post(
        "/api/v1/discovery/jobs", headers=viewer, json={"targets": ["127.0.0.1"]}
    )
    assert denied.status_code == 403
    assert (
        await client.get(f"/api/v1/discovery/jobs/{job['id']}", headers=viewer)
    ).status_code == 200
    bob = await bearer(client, "bob", "bob-password-123")
    assert (await client.get(f"/api/v1/discovery/jobs/{job['id']}", headers=bob)).status_code == 404
    assert (await client.get("/api/v1/discovery/jobs", headers=bob)).json()["items"] == []
    foreign = await client.post(
        "/api/v1/discovery/jobs", headers=h, json={"targets": ["127.0.0.1"], "site_id": "other-hq"}
    )
    assert foreign.status_code == 404
    bad = await client.post(
        "/api/v1/discovery/jobs",
        headers=h,
        json={"targets": ["127.0.0.1; rm -rf /"], "communities": [SECRET]},
    )
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "targets"
    assert SECRET not in bad.text
    empty = await client.post("/api/v1/discovery/jobs", headers=h, json={"targets": []})
    assert empty.status_code == 422


def test_scheduled_job_from_the_discovery_service_is_projected(db: Engine) -> None:
    request = DiscoveryRequested(
        source="discovery/scheduler",
        site_id="branch",
        job_id="scheduled-1764150000",
        targets=("127.0.0.0/24",),
    )
    assert apply_jobs(db, request) == "applied"
    from tonerwatch_api.domain.discovery_jobs import get_job

    job = in_tx(db, lambda s: get_job(s, "default", "scheduled-1764150000"))
    assert job.targets == ["127.0.0.0/24"] and job.state == "requested" and job.site_id == "branch"


def test_polling_and_discovery_bytes_add_up_per_day_once(
    db: Engine, reading: Callable[..., SupplyReading], configured: Callable[..., object]
) -> None:
    apply_now(db, configured())  # type: ignore[arg-type]
    day = datetime(2026, 11, 20, 10, tzinfo=UTC)
    first = reading(occurred_at=day)
    assert in_tx(db, lambda s: apply_usage(s, first)) == "applied"
    assert in_tx(db, lambda s: apply_usage(s, first)) == "duplicate"
    in_tx(db, lambda s: apply_usage(s, reading(occurred_at=day + timedelta(hours=5))))
    in_tx(db, lambda s: apply_usage(s, reading(occurred_at=day + timedelta(days=1))))
    sweep = DiscoveryFinished(
        source="discovery/test",
        site_id="default",
        job_id="j-1",
        end_condition="completed",
        probed=256,
        total=256,
        live=6,
        printers=3,
        non_printers=3,
        elapsed_s=3.0,
        bytes_sent=21000,
        bytes_received=9000,
        occurred_at=day,
    )
    in_tx(db, lambda s: apply_usage(s, sweep))
    report = in_tx(db, lambda s: usage(s, "default", 3, today=day.date() + timedelta(days=1)))
    days = {d.day: d for d in report.days}
    # Each reading of the HP M479 costs 410 B out and 2950 B back (conftest).
    assert days[day.date()].kinds["polling"].total == 2 * (410 + 2950)
    assert days[day.date()].kinds["polling"].operations == 2
    assert days[day.date()].kinds["discovery"].total == 30000
    assert days[day.date() + timedelta(days=1)].kinds["polling"].total == 410 + 2950
    assert report.totals["polling"].operations == 3
    [printer] = report.printers
    assert printer.printer_id == "p-hp479" and printer.bytes_per_poll == 3360.0
    assert printer.name == "Finance HP"
    other = in_tx(db, lambda s: usage(s, "other-tenant", 3, today=day.date()))
    assert other.printers == [] and other.totals["polling"].total == 0


def test_numbers_people_read() -> None:
    assert human_bytes(950) == "950 B" and human_bytes(3360) == "3.4 kB"
    assert human_bytes(8.6e9) == "8.6 GB"
    assert nice_ceiling(0) == 1000 and nice_ceiling(3360) == 5000 and nice_ceiling(12001) == 20000
    assert progress_percent("running", 64, 256) == 25.0
    assert progress_percent("cancelled", 10, 256) == 100.0
    assert progress_percent("requested", 0, 0) == 0.0


def test_event_shapes_round_trip() -> None:
    # The job view never holds credentials: only how many sets were tried.
    from tonerwatch_api.schemas.discovery_jobs import DiscoveryJobIn

    body = DiscoveryJobIn(targets=[" 127.0.0.1 ", ""], communities=[SECRET, "public"])
    assert body.targets == ["127.0.0.1"]
    assert [c.community for c in body.credential_sets()] == [SECRET, "public"]
    assert SECRET not in repr(body.credential_sets())
    assert json.loads(DiscoveryJobIn(targets=["h"]).model_dump_json())["communities"] == []
    assert HP_M479.serial
