"""Issue 13's test: the upstream half end to end, on loopback only.

The api (SQLite) and the syncer run in this process on one NATS stream; the reference portal
(tonerwatch_shared.portal) serves HTTPS with a certificate from the test PKI
(tonerwatch_shared.testing.tls); the syncer reaches it only through a real HTTP CONNECT proxy
process with Basic credentials (tonerwatch_shared.testing.connect_proxy). Time is compressed, never
slept: a month of readings carries backdated times, the syncer's schedule reads a clock the test
moves through a simulated hour, and its retries back off from 0.05 s to 0.2 s instead of 1 s to 60 s.

- The portal goes away (its server stops: the proxy answers 502) for an hour of simulated time,
  during which alerts, orders, a replacement and the snapshot time come and go; once it is back,
  every event reaches it once, and each printer's events in the order they happened.
- The daily snapshot (with service coverage) and two reorder pushes arrive with the right content.
- A shipment the portal puts on its downlink moves our order to shipped.
- A second order for the same supply is refused (409 naming the open one).
- Service coverage: after 30 days of readings, eligible; covered at the second order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

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
from tonerwatch_shared.signing import verify
from tonerwatch_shared.testing.connect_proxy import running as connect_proxy
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_shared.testing.tls import make_tls
from tonerwatch_shared.upstream import DownlinkItem
from tonerwatch_syncer.service import Settings as SyncSettings
from tonerwatch_syncer.service import run as run_syncer

SECRET = "upstream-e2e-portal-secret"
ADMIN_PW = "upstream-e2e-admin-pw"
PROXY_USER, PROXY_PASSWORD = "office", "pr0xy-pass"
SITE = "default"
HP, LEX = "p-hp-m479", "p-lexmark-ms621"
FORWARDED = {
    "tonerwatch.threshold_crossed.v1",
    "tonerwatch.alert_resolved.v1",
    "tonerwatch.supply_replaced.v1",
    "tonerwatch.order_changed.v1",
}


class SimClock:
    """The syncer's schedule clock: simulated time the test moves on."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def hp_reading(at: dt.datetime, pages: int) -> ev.SupplyReading:
    toners = [
        ("1", "Black Cartridge HP W2030X", "W2030X", "black", 42.0),
        ("2", "Cyan Cartridge HP W2031X", "W2031X", "cyan", 18.0),
        ("3", "Magenta Cartridge HP W2033X", "W2033X", "magenta", 65.0),
        ("4", "Yellow Cartridge HP W2032X", "W2032X", "yellow", 8.0),
    ]
    return ev.SupplyReading(
        source="poller/test",
        site_id=SITE,
        printer_id=HP,
        occurred_at=at,
        address="127.0.0.1",
        printer=PrinterIdentity(
            vendor="HP",
            model="HP Color LaserJet Pro MFP M479fdw",
            serial="CNB1M2N3P4",
            sys_location="2nd floor, finance",
        ),
        supplies=tuple(
            Supply(
                index=i,
                description=d,
                part_number=pn,
                kind=SupplyKind.TONER,
                colour=c,
                percent=p,
                state=SupplyState.LOW if p < 10 else SupplyState.OK,
            )
            for i, d, pn, c, p in toners
        ),
        counters=Counters(lifetime_pages=pages, mono_pages=pages - 2_000, colour_pages=2_000),
        status=PrinterStatus(device_status="running", printer_status="idle"),
    )


def lexmark_reading(at: dt.datetime, pages: int) -> ev.SupplyReading:
    return ev.SupplyReading(
        source="poller/test",
        site_id=SITE,
        printer_id=LEX,
        occurred_at=at,
        address="127.0.0.2",
        printer=PrinterIdentity(vendor="Lexmark", model="MS621", serial="50164HH0FRTK"),
        supplies=(
            Supply(
                index="1",
                description="Black Toner 56F2H00",
                part_number="56F2H00",
                kind=SupplyKind.TONER,
                colour="black",
                percent=6.0,
                state=SupplyState.LOW,
            ),
        ),
        counters=Counters(lifetime_pages=pages),
        status=PrinterStatus(device_status="running", printer_status="idle"),
    )


def crossed(printer_id: str, index: str, part: str, percent: float, at: dt.datetime) -> Any:
    return ev.ThresholdCrossed(
        source="alerter/test",
        site_id=SITE,
        printer_id=printer_id,
        occurred_at=at,
        alert_id=f"{printer_id}:{index}:low",
        rule="low",
        severity="warning",
        supply_index=index,
        part_number=part,
        percent=percent,
        threshold=10.0,
        message=f"{part} at {percent:g}%",
    )


@contextlib.asynccontextmanager
async def api_service(tmp_path: Path, bus: Bus, nats_url: str) -> AsyncIterator[str]:
    port = free_tcp_port()
    settings = ApiSettings(
        nats_url=nats_url,
        data_dir=tmp_path / "api",
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        port=port,
        admin_password=ADMIN_PW,
        instance="upstream-e2e",
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_api(settings, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def syncer_service(
    bus: Bus, nats_url: str, portal_url: str, ca: Path, proxy_port: int, clock: SimClock
) -> AsyncIterator[None]:
    settings = SyncSettings(
        nats_url=nats_url,
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        sync_url=portal_url,  # https://: no TONERWATCH_SYNC_ALLOW_HTTP
        sync_secret=SECRET,
        sync_ca_bundle=ca,
        sync_proxy=f"http://127.0.0.1:{proxy_port}",
        sync_proxy_user=PROXY_USER,
        sync_proxy_password=PROXY_PASSWORD,
        sync_timeout_s=3,
        sync_snapshot_at=dt.time(2, 0),
        sync_schedule_check_s=0.2,
        sync_downlink_interval_s=0.3,
        # Time compressed: the back-off an hour's outage goes through, at 0.05 s to 0.2 s a step.
        retry_base_s=0.05,
        retry_cap_s=0.2,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_syncer(settings, stop=stop, ready=ready, clock=clock))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def order_event(bus: Bus, order_id: str, change: str, status: str) -> ev.OrderChanged:
    """Return the api's OrderChanged for an order's change, once it is in the stream."""
    found = await wait_for_event(
        bus,
        ev.OrderChanged.subject_filter(bus.subjects),
        lambda e: (
            isinstance(e, ev.OrderChanged)
            and (e.order_id, e.change, e.status) == (order_id, change, status)
        ),
        timeout_s=20,
    )
    assert isinstance(found, ev.OrderChanged)
    return found


async def test_portal_down_an_hour_then_everything_once_in_order_snapshot_reorders_downlink_orders_coverage(
    tmp_path: Path, bus: Bus, nats_url: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    # The simulated day: tomorrow, from 01:00 (the snapshot is due at 02:00).
    sim = SimClock(dt.datetime.combine((now + dt.timedelta(days=1)).date(), dt.time(1, 0), dt.UTC))
    pki = make_tls(tmp_path / "pki", ["hub"])["hub"]  # a server certificate for 127.0.0.1
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pki.cert, pki.key)
    portal = Portal(secret=SECRET)
    portal_port = free_tcp_port()
    portal_url = f"https://127.0.0.1:{portal_port}"

    with connect_proxy(PROXY_USER, PROXY_PASSWORD) as proxy:
        async with (
            api_service(tmp_path, bus, nats_url) as api_url,
            httpx.AsyncClient(base_url=api_url, timeout=20) as api,
            syncer_service(bus, nats_url, portal_url, pki.ca, proxy.port, sim),
        ):
            token = await api.post(
                "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PW}
            )
            h = {"Authorization": f"Bearer {token.json()['access_token']}"}
            for pid, address, name in ((HP, "127.0.0.1", "Finance MFP"), (LEX, "127.0.0.2", None)):
                await bus.publish(
                    ev.PrinterConfigured(
                        source="api/test", site_id=SITE, printer_id=pid, address=address, name=name
                    )
                )

            async def known(pid: str) -> bool:
                return (await api.get(f"/api/v1/printers/{pid}", headers=h)).status_code == 200

            await eventually(lambda: known(HP), timeout_s=20)
            await eventually(lambda: known(LEX), timeout_s=20)

            # 31 days of readings every 6 hours (backdated: no waiting a month).
            pages = 10_000
            for k in range(31 * 4, -1, -1):
                at = now - dt.timedelta(hours=6 * k)
                pages += 37
                await bus.publish(hp_reading(at, pages))
                await bus.publish(lexmark_reading(at, pages // 2))

            async def coverage(pid: str) -> dict[str, Any]:
                r = await api.get(f"/api/v1/printers/{pid}/coverage", headers=h)
                assert r.status_code == 200, r.text
                got: dict[str, Any] = r.json()
                return got

            async def eligible() -> bool:
                return (await coverage(HP))["status"] == "eligible" and (await coverage(LEX))[
                    "status"
                ] == "eligible"

            await eventually(eligible, timeout_s=60)
            assert (await coverage(HP))["orders_counted"] == 0

            # --- the portal is down for an hour of simulated time --------------------------------
            expected: dict[str, list[uuid.UUID]] = {HP: [], LEX: []}

            async def step(minutes: int) -> None:
                sim.at += dt.timedelta(minutes=minutes)
                await asyncio.sleep(0.3)  # the syncer retries meanwhile (0.05 s to 0.2 s apart)

            low_yellow = crossed(HP, "4", "W2032X", 8.0, sim.at)
            await bus.publish(low_yellow)
            expected[HP].append(low_yellow.event_id)
            await step(5)

            placed = await api.post(
                "/api/v1/orders",
                headers=h,
                json={"printer_id": HP, "supply_index": "4", "supplier": "Office Supplies Ltd"},
            )
            assert placed.status_code == 201, placed.text
            first = placed.json()["id"]
            expected[HP].append((await order_event(bus, first, "created", "requested")).event_id)
            first_coverage = await coverage(HP)
            assert (first_coverage["status"], first_coverage["orders_counted"]) == ("eligible", 1)
            await step(5)

            # The same supply again: refused, naming the open order; nothing goes upstream.
            again = await api.post(
                "/api/v1/orders", headers=h, json={"printer_id": HP, "supply_index": "4"}
            )
            assert again.status_code == 409, again.text
            assert first in again.text
            await step(5)

            low_lex = crossed(LEX, "1", "56F2H00", 6.0, sim.at)
            await bus.publish(low_lex)
            expected[LEX].append(low_lex.event_id)
            await step(10)

            moved = await api.patch(
                f"/api/v1/orders/{first}",
                headers=h,
                json={"status": "ordered", "supplier_reference": "PO-2026-1207"},
            )
            assert moved.status_code == 200, moved.text
            expected[HP].append((await order_event(bus, first, "status", "ordered")).event_id)
            await step(10)

            # A second order for the printer (its cyan toner): the printer is now covered.
            cyan = await api.post(
                "/api/v1/orders", headers=h, json={"printer_id": HP, "supply_index": "2"}
            )
            assert cyan.status_code == 201, cyan.text
            second = cyan.json()["id"]
            expected[HP].append((await order_event(bus, second, "created", "requested")).event_id)
            covered = await coverage(HP)
            assert (covered["status"], covered["orders_counted"]) == ("covered", 2)
            assert covered["covered_since"] == cyan.json()["created_at"]
            await step(10)

            replaced = ev.SupplyReplaced(
                source="alerter/test",
                site_id=SITE,
                printer_id=LEX,
                occurred_at=sim.at,
                supply_index="1",
                description="Black Toner 56F2H00",
                part_number="56F2H00",
                previous_percent=6.0,
                percent=100.0,
            )
            await bus.publish(replaced)
            resolved = ev.AlertResolved(
                source="alerter/test",
                site_id=SITE,
                printer_id=LEX,
                occurred_at=sim.at,
                alert_id=low_lex.alert_id,
                rule="low",
                message="Black toner replaced",
            )
            await bus.publish(resolved)
            expected[LEX] += [replaced.event_id, resolved.event_id]
            for _ in range(3):  # past 02:00: the daily snapshot falls due while the portal is away
                await step(5)
            assert sim.at.hour == 2 and portal.received == []
            # The syncer kept trying through the proxy, which said the portal was not there.
            assert any(line.startswith("unreachable 127.0.0.1:") for line in proxy.log)

            # --- the portal is back -------------------------------------------------------------
            async with serving(portal, "127.0.0.1", portal_port, server_tls):
                wanted = {i for ids in expected.values() for i in ids}

                def delivered() -> bool:
                    events = {r.headers.get("X-TonerWatch-Event-Id") for r in portal.received}
                    return (
                        wanted <= {uuid.UUID(i) for i in events if i}
                        and len(portal.of_type("tonerwatch.fleet_snapshot.v1")) == 1
                        and len(portal.of_type("tonerwatch.reorder_point.v1")) == 2
                    )

                await eventually(delivered, timeout_s=60)

                # A shipment on the portal's downlink moves our order to shipped.
                portal.queue(
                    SITE,
                    DownlinkItem(
                        id="shp-0001",
                        kind="order_shipped",
                        order_id=first,
                        supplier_reference="SO-88123",
                        carrier="DHL",
                        tracking_number="JD0146000012345",
                        at=sim.at,
                    ),
                )

                async def shipped() -> bool:
                    r = await api.get(f"/api/v1/orders/{first}", headers=h)
                    return r.json()["status"] == "shipped"

                await eventually(shipped, timeout_s=30)
                # ... and the api's word on it goes back up, after the order's earlier events.
                went_shipped = await order_event(bus, first, "status", "shipped")
                expected[HP].append(went_shipped.event_id)

                def shipped_upstream() -> bool:
                    return any(
                        r.headers.get("X-TonerWatch-Event-Id") == str(went_shipped.event_id)
                        for r in portal.received
                    )

                await eventually(shipped_upstream, timeout_s=30)
                await asyncio.sleep(1.0)  # more retries and looks: nothing may come twice

    # Every event once, and each printer's in the order they happened.
    events = [r for r in portal.received if r.path == "/v1/events"]
    ids = [uuid.UUID(r.headers["X-TonerWatch-Event-Id"]) for r in events]
    assert len(ids) == len(set(ids)), "an event reached the portal twice"
    assert all(r.type in FORWARDED for r in events)
    for pid, order in expected.items():
        arrived = [i for i, r in zip(ids, events, strict=True) if r.document["printer_id"] == pid]
        assert arrived == order, pid
    for taken in portal.received:
        assert verify(taken.headers, taken.raw, SECRET)

    # The daily snapshot: both printers, their latest levels and meters, and service coverage.
    (snapshot,) = portal.of_type("tonerwatch.fleet_snapshot.v1")
    assert (snapshot["site_id"], snapshot["day"]) == (SITE, sim.at.date().isoformat())
    by_id = {p["printer_id"]: p for p in snapshot["printers"]}
    assert set(by_id) == {HP, LEX}
    hp = by_id[HP]
    assert (hp["vendor"], hp["serial"], hp["name"]) == ("HP", "CNB1M2N3P4", "Finance MFP")
    assert hp["location"] == "2nd floor, finance"
    assert {s["index"]: s["percent"] for s in hp["supplies"]} == {
        "1": 42.0,
        "2": 18.0,
        "3": 65.0,
        "4": 8.0,
    }
    assert hp["counters"]["lifetime_pages"] == pages
    assert hp["counters"]["colour_pages"] == 2_000
    assert hp["coverage"]["status"] == "covered" and hp["coverage"]["orders_counted"] == 2
    assert by_id[LEX]["counters"]["lifetime_pages"] == pages // 2
    assert by_id[LEX]["coverage"]["status"] == "eligible"

    # The reorder pushes: one per low alert, each with its printer's snapshot.
    pushes = {p["printer"]["printer_id"]: p for p in portal.of_type("tonerwatch.reorder_point.v1")}
    assert set(pushes) == {HP, LEX}
    assert (pushes[HP]["rule"], pushes[HP]["part_number"], pushes[HP]["percent"]) == (
        "low",
        "W2032X",
        8.0,
    )
    assert pushes[HP]["printer"]["serial"] == "CNB1M2N3P4"
    assert pushes[LEX]["part_number"] == "56F2H00"
    assert pushes[LEX]["printer"]["supplies"][0]["percent"] == 6.0

    # The portal holds one order per order id, in the order they were placed.
    assert portal.order_ids == [first, second]
    # Everything went through the office proxy (CONNECT tunnels to the portal).
    assert any(line == f"tunnel 127.0.0.1:{portal_port}" for line in proxy.log)
