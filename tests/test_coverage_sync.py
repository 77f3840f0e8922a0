"""Service coverage in the daily snapshot is the api's, also for a syncer that never saw the history.

The api (real service, SQLite) holds 40 days of a printer's readings and two orders placed after
its first 30 days, none of which ever went through this test's events stream (a fresh stream, as
after TONERWATCH_EVENT_MAX_AGE_DAYS, or a syncer started later). The syncer, started after the api,
sees one recent reading only: by its own fold the printer would be `monitoring` since an hour ago.
The api announces the printer's coverage (tonerwatch.printer_coverage.v1) at start; the snapshot
the reference portal receives says covered, with the api's dates and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

from sqlmodel import Session

from tonerwatch_api.db.orders import Order
from tonerwatch_api.db.tx import ensure_default_site, in_tx, upgrade
from tonerwatch_api.domain.coverage import printer_coverage
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.service import run as run_api
from tonerwatch_api.settings import Settings as ApiSettings
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.portal import Portal, serving
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterIdentity,
    PrinterStatus,
    Supply,
    SupplyKind,
    SupplyState,
)
from tonerwatch_shared.storage import make_engine, sqlite_url
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_syncer.service import Settings as SyncSettings
from tonerwatch_syncer.service import run as run_syncer

SITE = "default"
HP = "p-hp479-coverage"
SECRET = "coverage-portal-secret"
ADMIN_PW = "coverage-admin-pw-1"


def hp_reading(at: dt.datetime, pages: int) -> ev.SupplyReading:
    return ev.SupplyReading(
        source="poller/test",
        site_id=SITE,
        printer_id=HP,
        occurred_at=at,
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="HP", model="HP LaserJet M479fdw", serial="CNB1COVER1"),
        supplies=(
            Supply(
                index="1",
                description="Black Cartridge HP W2030X",
                part_number="W2030X",
                kind=SupplyKind.TONER,
                colour="black",
                percent=40.0,
                state=SupplyState.OK,
            ),
        ),
        counters=Counters(lifetime_pages=pages),
        status=PrinterStatus(device_status="running", printer_status="idle"),
    )


def seed_history(data_dir: Path, now: dt.datetime) -> None:
    """Write 40 days of daily readings and two orders (days 5 and 3 ago) into the api's database."""
    data_dir.mkdir(parents=True)
    engine = make_engine(sqlite_url(data_dir))
    try:
        upgrade(engine)
        ensure_default_site(engine, SITE)
        apply_now(
            engine,
            ev.PrinterConfigured(
                source="api/test", site_id=SITE, printer_id=HP, address="127.0.0.1"
            ),
        )
        for ago in range(40, 0, -1):
            apply_now(engine, hp_reading(now - dt.timedelta(days=ago), 10_000 + 100 * (40 - ago)))

        def orders(session: Session) -> None:
            for n, ago in enumerate((5, 3)):
                session.add(
                    Order(
                        id=f"o-cov-{n}",
                        site_id=SITE,
                        printer_id=HP,
                        supply_index="1",
                        supply_description="Black Cartridge HP W2030X",
                        created_at=now - dt.timedelta(days=ago),
                    )
                )

        in_tx(engine, orders)
    finally:
        engine.dispose()


@contextlib.asynccontextmanager
async def api_service(data_dir: Path, bus: Bus, nats_url: str) -> AsyncIterator[None]:
    settings = ApiSettings(
        nats_url=nats_url,
        data_dir=data_dir,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        port=free_tcp_port(),
        admin_password=ADMIN_PW,
        instance="coverage-e2e",
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_api(settings, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def syncer_service(
    bus: Bus, nats_url: str, portal_url: str, now: dt.datetime
) -> AsyncIterator[None]:
    settings = SyncSettings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        sync_url=portal_url,
        sync_allow_http=True,
        sync_secret=SECRET,
        sync_timeout_s=3,
        # Due at once: the schedule's clock is after today's snapshot time.
        sync_snapshot_at=dt.time(0, 0),
        sync_timezone="UTC",
        sync_schedule_check_s=0.2,
        sync_downlink_interval_s=30,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    clock = lambda: now.replace(hour=12)  # noqa: E731 - after the snapshot time, same day
    task = asyncio.create_task(run_syncer(settings, stop=stop, ready=ready, clock=clock))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_the_snapshot_carries_the_api_coverage_though_the_syncer_never_saw_the_history(
    tmp_path: Path, bus: Bus, nats_url: str
) -> None:
    now = dt.datetime.now(dt.UTC).replace(hour=11, minute=0, second=0, microsecond=0)
    data_dir = tmp_path / "api"
    seed_history(data_dir, now)
    # The only reading the (fresh) stream ever holds: an hour ago.
    await bus.publish(hp_reading(now - dt.timedelta(hours=1), 14_100))
    portal = Portal(secret=SECRET)
    async with (
        serving(portal, "127.0.0.1", free_tcp_port()) as portal_url,
        api_service(data_dir, bus, nats_url),
    ):
        announced = await wait_for_event(
            bus,
            ev.PrinterCoverage.subject_filter(bus.subjects),
            lambda e: isinstance(e, ev.PrinterCoverage) and e.printer_id == HP,
            timeout_s=30,
        )
        assert isinstance(announced, ev.PrinterCoverage)
        assert announced.coverage.status == "covered"
        assert len(announced.orders_at) == 2
        # Started after the api: it never saw the 40 days of readings, nor the orders.
        async with syncer_service(bus, nats_url, portal_url, now):
            await eventually(lambda: portal.of_type("tonerwatch.fleet_snapshot.v1"), timeout_s=30)

    (snapshot,) = portal.of_type("tonerwatch.fleet_snapshot.v1")
    (entry,) = snapshot["printers"]
    assert entry["printer_id"] == HP
    coverage = entry["coverage"]
    engine = make_engine(sqlite_url(data_dir))
    try:
        with Session(engine) as session:
            api = printer_coverage(session, "default", HP, {}, now.replace(hour=12))
    finally:
        engine.dispose()
    assert api.status == "covered" and api.orders_counted == 2
    assert coverage["status"] == "covered" and coverage["orders_counted"] == 2
    assert dt.datetime.fromisoformat(coverage["monitored_since"]) == api.monitored_since
    assert dt.datetime.fromisoformat(coverage["covered_since"]) == api.covered_since
    assert api.monitored_since is not None
    assert api.monitored_since <= now - dt.timedelta(days=39)
