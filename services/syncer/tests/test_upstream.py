"""The syncer against the reference portal: the daily snapshot, reorder pushes and month-end meter
reads arrive signed, compressed and as docs/upstream-openapi.yaml says."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.kv import ModelKv
from tonerwatch_shared.portal import Portal, Received, serving
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterIdentity,
    PrinterStatus,
    Supply,
    SupplyKind,
    SupplyState,
)
from tonerwatch_shared.signing import verify
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_shared.upstream import OPENAPI_PATH, DownlinkItem, document_id, openapi_document
from tonerwatch_syncer.fleet import FLEET_BUCKET, KnownPrinter
from tonerwatch_syncer.service import Settings, run

SECRET = "portal-shared-secret"
OPENAPI: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text())
# The first of a month, after the snapshot time: a snapshot and last month's meter reads are due.
TURN_OF_MONTH = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)


def test_the_checked_in_openapi_document_is_the_generated_one() -> None:
    # Regenerate with: uv run python -c "from tonerwatch_shared.upstream import write_openapi; write_openapi()"
    assert json.loads(json.dumps(openapi_document())) == OPENAPI


def validate_against_openapi(taken: Received) -> None:
    """Assert one request the portal took is what the OpenAPI document describes."""
    operation = OPENAPI["paths"][taken.path]["post"]
    headers = {k.lower(): v for k, v in taken.headers.items()}
    for parameter in operation["parameters"]:
        if parameter["in"] == "header" and parameter["required"]:
            assert parameter["name"].lower() in headers, (taken.path, parameter["name"])
            enum = parameter["schema"].get("enum")
            assert enum is None or headers[parameter["name"].lower()] in enum
    assert verify(taken.headers, taken.raw, SECRET)
    body = gzip.decompress(taken.raw) if headers.get("content-encoding") == "gzip" else taken.raw
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    Draft202012Validator({**OPENAPI, "$ref": ref}).validate(json.loads(body))


def reading(
    printer_id: str, serial: str, black: float, lifetime: int, site: str = "hq"
) -> ev.SupplyReading:
    return ev.SupplyReading(
        source="poller/test",
        site_id=site,
        printer_id=printer_id,
        address="127.0.0.1",
        printer=PrinterIdentity(
            vendor="HP",
            model="HP Color LaserJet MFP M479fdw",
            serial=serial,
            sys_location="Room 101",
            mac_address="a0:b1:c2:d3:e4:f5",
        ),
        supplies=(
            Supply(
                index="1.1",
                description="Black Cartridge HP W2030X",
                part_number="W2030X",
                kind=SupplyKind.TONER,
                colour="black",
                percent=black,
                state=SupplyState.LOW if black < 20 else SupplyState.OK,
            ),
        ),
        counters=Counters(lifetime_pages=lifetime, mono_pages=lifetime - 100, colour_pages=100),
        status=PrinterStatus(device_status="running", printer_status="idle"),
    )


@contextlib.asynccontextmanager
async def portal_and_syncer(
    bus: Bus,
    nats_url: str,
    clock: Callable[[], dt.datetime] = lambda: TURN_OF_MONTH,
    **knobs: Any,
) -> AsyncIterator[Portal]:
    portal = Portal(secret=SECRET)
    async with serving(portal, "127.0.0.1", free_tcp_port()) as url:
        settings = Settings(
            nats_url=nats_url,
            subject_root=bus.subjects.root,
            stream_prefix=bus.subjects.stream_prefix,
            sync_url=url,
            sync_allow_http=True,
            sync_secret=SECRET,
            sync_timeout_s=2,
            sync_snapshot_at=dt.time(2, 0),
            sync_schedule_check_s=0.2,
            **({"sync_downlink_interval_s": 0.3} | knobs),
        )
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run(settings, stop=stop, ready=ready, clock=clock))
        await asyncio.wait_for(ready.wait(), 15)
        try:
            yield portal
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)


async def test_daily_snapshot_and_month_end_reads_reach_the_portal(bus: Bus, nats_url: str) -> None:
    await bus.publish(reading("hp-m479-01", "CNBJM1A0Q1", 64.0, 12_000))
    await bus.publish(reading("hp-m479-02", "CNBJM1A0Q2", 35.0, 8_400))
    await bus.publish(reading("hp-m479-01", "CNBJM1A0Q1", 63.0, 12_150))  # the newer reading wins
    await bus.publish(
        ev.PrinterConfigured(
            source="api/test",
            site_id="hq",
            printer_id="hp-m479-02",
            address="127.0.0.1",
            name="Reception MFP",
            location="Ground floor, reception",
        )
    )
    await bus.publish(reading("lexmark-ms621-07", "7017AAA1", 80.0, 500, site="branch-2"))
    async with portal_and_syncer(bus, nats_url) as portal:
        await eventually(
            lambda: (
                len(portal.of_type("tonerwatch.fleet_snapshot.v1")) == 2
                and len(portal.of_type("tonerwatch.meter_reads.v1")) == 2
            ),
            timeout_s=20,
        )
        await asyncio.sleep(1.0)  # more looks at the schedule: nothing is sent twice
    snapshots = {d["site_id"]: d for d in portal.of_type("tonerwatch.fleet_snapshot.v1")}
    assert len(portal.of_type("tonerwatch.fleet_snapshot.v1")) == 2
    hq = snapshots["hq"]
    assert hq["day"] == "2026-12-01"
    assert hq["id"] == str(document_id("snapshot", "hq", "2026-12-01"))
    first, second = hq["printers"]
    assert (first["printer_id"], first["serial"], first["vendor"]) == (
        "hp-m479-01",
        "CNBJM1A0Q1",
        "HP",
    )
    assert first["counters"]["lifetime_pages"] == 12_150
    assert first["supplies"][0]["percent"] == 63.0 and first["location"] == "Room 101"
    assert (second["name"], second["location"]) == ("Reception MFP", "Ground floor, reception")
    # Service coverage from the readings alone: monitored since the first, no orders yet.
    assert first["coverage"]["status"] == "monitoring"
    assert first["coverage"]["orders_counted"] == 0 and first["coverage"]["monitored_since"]
    assert second["status"]["printer_status"] == "idle"
    assert [p["printer_id"] for p in snapshots["branch-2"]["printers"]] == ["lexmark-ms621-07"]

    reads = {d["site_id"]: d for d in portal.of_type("tonerwatch.meter_reads.v1")}
    assert reads["hq"]["period"] == "2026-11"
    assert {r["printer_id"]: r["counters"]["lifetime_pages"] for r in reads["hq"]["reads"]} == {
        "hp-m479-01": 12_150,
        "hp-m479-02": 8_400,
    }
    for taken in portal.received:
        validate_against_openapi(taken)
        if taken.path not in ("/v1/events", "/v1/downlink"):
            assert taken.headers["Content-Encoding"] == "gzip"
            assert len(taken.raw) < len(gzip.decompress(taken.raw))


async def test_reorder_point_pushes_the_printer_at_once(bus: Bus, nats_url: str) -> None:
    await bus.publish(reading("hp-m479-03", "CNBJM1A0Q3", 9.0, 20_000))
    alert = ev.ThresholdCrossed(
        source="alerter/test",
        site_id="hq",
        printer_id="hp-m479-03",
        alert_id="hp-m479-03:1.1:low",
        rule="low",
        severity="warning",
        supply_index="1.1",
        part_number="W2030X",
        percent=9.0,
        threshold=10.0,
        message="Black toner low",
    )
    # Before the snapshot time: only the alert and its push go.
    before = lambda: dt.datetime(2026, 12, 10, 1, 0, tzinfo=dt.UTC)  # noqa: E731
    async with portal_and_syncer(bus, nats_url, before) as portal:
        fleet = ModelKv(await bus.key_value(FLEET_BUCKET), KnownPrinter)
        for _ in range(100):  # the reading is folded into the fleet bucket first
            if (await fleet.read("hp-m479-03")).value is not None:
                break
            await asyncio.sleep(0.1)
        await bus.publish(alert)
        await eventually(lambda: portal.of_type("tonerwatch.reorder_point.v1"), timeout_s=10)
        synced = await wait_for_event(
            bus,
            bus.subjects.filter("sync.delivered"),
            lambda e: (
                isinstance(e, ev.UpstreamSynced)
                and e.forwarded_type == "tonerwatch.reorder_point.v1"
            ),
            timeout_s=10,
        )
    (push,) = portal.of_type("tonerwatch.reorder_point.v1")
    assert (push["rule"], push["part_number"], push["percent"]) == ("low", "W2030X", 9.0)
    assert push["printer"]["serial"] == "CNBJM1A0Q3"
    assert push["printer"]["supplies"][0]["percent"] == 9.0
    assert portal.of_type("tonerwatch.fleet_snapshot.v1") == []
    assert isinstance(synced, ev.UpstreamSynced) and synced.bytes_sent > 0
    assert synced.printer_id == "hp-m479-03"
    for taken in portal.received:
        validate_against_openapi(taken)


async def test_a_snapshot_the_portal_refused_goes_on_the_next_look(bus: Bus, nats_url: str) -> None:
    await bus.publish(reading("hp-m479-04", "CNBJM1A0Q4", 50.0, 1_000))
    async with portal_and_syncer(bus, nats_url) as portal:
        portal.down = True
        await eventually(lambda: portal.refused >= 2, timeout_s=10)
        portal.down = False
        await eventually(lambda: portal.of_type("tonerwatch.fleet_snapshot.v1"), timeout_s=10)
        await asyncio.sleep(0.6)
    assert len(portal.of_type("tonerwatch.fleet_snapshot.v1")) == 1


async def test_a_shipment_on_the_downlink_is_published_once_for_the_api(
    bus: Bus, nats_url: str
) -> None:
    await bus.publish(reading("hp-m479-05", "CNBJM1A0Q5", 12.0, 3_000))
    shipped = DownlinkItem(
        id="shp-20261201-0001",
        kind="order_shipped",
        order_id="o-5c1e9a7b3d20",
        supplier_reference="SO-88123",
        carrier="DHL",
        tracking_number="JD0146000012345",
        at=dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC),
    )
    async with portal_and_syncer(bus, nats_url) as portal:
        portal.queue("hq", shipped)
        update = await wait_for_event(
            bus,
            ev.UpstreamOrderUpdate.subject_filter(bus.subjects),
            lambda e: isinstance(e, ev.UpstreamOrderUpdate),
            timeout_s=15,
        )
        # The cursor moved on: the next requests ask only for what came after it.
        await eventually(
            lambda: any(
                d.get("cursor") == "1" for d in portal.of_type("tonerwatch.downlink_request.v1")
            ),
            timeout_s=10,
        )
    # Asked again with If-None-Match naming the cursor, the portal had nothing new: 304, no body.
    assert portal.not_modified >= 1
    assert isinstance(update, ev.UpstreamOrderUpdate)
    assert (update.kind, update.order_id, update.tracking_number) == (
        "order_shipped",
        "o-5c1e9a7b3d20",
        "JD0146000012345",
    )
    assert update.event_id == document_id("downlink", "hq", "shp-20261201-0001")
    assert update.subject(bus.subjects).endswith(".hq.order.upstream.o-5c1e9a7b3d20")
    for taken in portal.received:
        validate_against_openapi(taken)


async def test_a_long_poll_brings_a_shipment_at_once_though_the_interval_is_an_hour(
    bus: Bus, nats_url: str
) -> None:
    await bus.publish(reading("hp-m479-06", "CNBJM1A0Q6", 12.0, 3_000))
    shipped = DownlinkItem(
        id="shp-20261201-0002",
        kind="order_shipped",
        order_id="o-6d2f0a8c4e31",
        carrier="UPS",
        tracking_number="1Z999AA10123456784",
        at=dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC),
    )
    async with portal_and_syncer(
        bus, nats_url, sync_downlink_interval_s=3600, sync_downlink_wait_s=60
    ) as portal:
        # The site's request is held by the portal (Prefer: wait=60)...
        await eventually(lambda: portal._held.get("hq"), timeout_s=15)
        (asked,) = portal.of_type("tonerwatch.downlink_request.v1")
        # ... so what the portal gets meanwhile goes down at once, not at the next hourly ask.
        portal.queue("hq", shipped)
        update = await wait_for_event(
            bus,
            ev.UpstreamOrderUpdate.subject_filter(bus.subjects),
            lambda e: isinstance(e, ev.UpstreamOrderUpdate) and e.item_id == shipped.id,
            timeout_s=15,
        )
        # And the site listens again straight away (a new held request, after the new cursor).
        await eventually(
            lambda: any(
                d.get("cursor") == "1" for d in portal.of_type("tonerwatch.downlink_request.v1")
            ),
            timeout_s=15,
        )
        await eventually(lambda: portal._held.get("hq"), timeout_s=15)
    assert (
        isinstance(update, ev.UpstreamOrderUpdate)
        and update.tracking_number == shipped.tracking_number
    )
    assert asked["cursor"] is None
    # Two requests in all: one held until the shipment came, one held when the test stopped.
    assert len(portal.of_type("tonerwatch.downlink_request.v1")) == 2
    prefer = [r.headers.get("Prefer") for r in portal.received if r.path == "/v1/downlink"]
    assert prefer == ["wait=60", "wait=60"]
    for taken in portal.received:
        validate_against_openapi(taken)
