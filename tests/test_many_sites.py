"""Many sites, one hub (issue 11): a hub nats-server, two site collectors on leaf nodes, all real.

Each site has its own simulated printers; each collector polls only its own. Site north's link is
cut (a TCP proxy between its leaf and the hub drops every connection): north keeps polling, and
when the link returns every reading it made reaches the hub's events stream exactly once, in
order per printer, and the hub's database through the hub's own api (its readings projection,
SQLite in tmp): each reading applied once, one history row per supply (count in = count out), in
the order north made them; south keeps reaching the hub's stream and database throughout. The collectors' statuses reach the hub
the same way; the hub's alerter raises one site-offline alert for north during the cut and
resolves it when north is heard again. North's credentials cannot reach south's subjects, work
or streams. Everything on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from tonerwatch.collector import run_collector
from tonerwatch_alerter.service import Settings as AlerterSettings
from tonerwatch_alerter.service import run as run_alerter
from tonerwatch_api.service import run as run_api
from tonerwatch_api.settings import Settings as ApiSettings
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port
from tonerwatch_shared.settings import load_settings
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.sites import (
    DOWN_STREAM,
    SiteAccount,
    SiteCredentials,
    down_stream_config,
    hub_accounts,
    hub_leafnodes,
    kick_site,
    site_subjects,
    site_user,
    source_sites,
)
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.tls import make_tls

log = logging.getLogger("test.many_sites")
HUB = Subjects()  # the product's own names: every server here is this test's alone
CUT_S = 6.0  # under the ~10 s after which nats-server's source retry back-off delays catch-up
CATCH_UP_BOUND_S = 60.0
STATUS_INTERVAL_S = 0.5  # collectors announce themselves often here (60 s by default)
OFFLINE_AFTER_S = 3.0  # and the hub's alerter calls a site offline soon (200 s by default)


# --- a cuttable link: a TCP proxy between a site's leaf and the hub's leaf listener --------------


class LinkProxy:
    """Forwards 127.0.0.1:port to the hub; cut() drops every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.port = free_tcp_port()
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


# --- the hub and the sites ----------------------------------------------------------------------


@dataclass
class Site:
    name: str
    credentials: SiteCredentials
    simulator: SnmpSimulator
    port: int  # the collector's own nats-server, 127.0.0.1 only
    printers: tuple[str, ...]


HUB_USER, HUB_PASSWORD = "hub", "hub-test-password"


def configured(site: Site, printer_id: str) -> ev.PrinterConfigured:
    return ev.PrinterConfigured(
        source="test-hub-api",
        site_id=site.name,
        printer_id=printer_id,
        address="127.0.0.1",
        port=site.simulator.port,
        credentials=ev.SnmpCredentials(community="jetdirect_m252dw"),
        interval_s=1.0,
    )


async def hub_statuses(bus: Bus) -> list[ev.CollectorStatus]:
    """Return the collectors' statuses in the hub's events stream, oldest first."""
    found = await stream_events(bus.nc, HUB.events_stream, HUB.filter(ev.CollectorStatus.area_what))
    return [e for e in found if isinstance(e, ev.CollectorStatus)]


async def hub_site_alerts(bus: Bus) -> list[ev.Event]:
    """Return the alerter's site offline/online events in the hub's events stream, oldest first."""
    found: list[ev.Event] = []
    for cls in (ev.SiteOffline, ev.SiteOnline):
        found += await stream_events(bus.nc, HUB.events_stream, HUB.filter(cls.area_what))
    return sorted(found, key=lambda e: e.occurred_at)


async def stream_events(
    nc: Client, stream: str, subject: str, domain: str | None = None
) -> list[ev.Event]:
    """Return the events stored in stream on subject up to now, in stream order."""
    js = nc.jetstream(domain=domain)
    last = (await js.stream_info(stream)).state.last_seq
    found: list[ev.Event] = []
    if not last:
        return found
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                break  # nothing more on this subject up to last
            found.extend(ev.unbatched(ev.parse_event(msg.data)))
            if msg.metadata.sequence.stream >= last:
                break
    finally:
        await sub.unsubscribe()
    return found


class HubDatabase:
    """The hub api's SQLite database, read as the api writes it (WAL: reads never block it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db:
            return list(db.execute(sql, params))

    async def applied_readings(self) -> set[uuid.UUID]:
        """Return the ids of the readings the api's readings projection applied."""
        rows = await asyncio.to_thread(
            self._rows, "SELECT event_id FROM processed_events WHERE consumer = 'api-readings'"
        )
        return {uuid.UUID(str(r[0])) for r in rows}

    async def history(self, printers: tuple[str, ...]) -> list[tuple[int, str, str, str]]:
        """Return the readings table's rows of these printers: (id, printer, supply, occurred_at)."""
        marks = ",".join("?" * len(printers))
        rows = await asyncio.to_thread(
            self._rows,
            "SELECT id, printer_id, supply_index, occurred_at FROM readings "
            f"WHERE printer_id IN ({marks}) ORDER BY id",
            printers,
        )
        return [(int(str(i)), str(p), str(s), str(t)) for i, p, s, t in rows]


def db_time(event: ev.Event) -> str:
    """Return event.occurred_at as the api's SQLite columns hold it (naive UTC, microseconds)."""
    return (
        event.occurred_at.astimezone(UTC)
        .replace(tzinfo=None)
        .isoformat(sep=" ", timespec="microseconds")
    )


@pytest.fixture
async def printers_north(printer_walks_dir: Path) -> AsyncIterator[SnmpSimulator]:
    async with SnmpSimulator([printer_walks_dir / "jetdirect_m252dw.snmprec"]) as simulator:
        yield simulator


@pytest.fixture
async def printers_south(printer_walks_dir: Path) -> AsyncIterator[SnmpSimulator]:
    async with SnmpSimulator([printer_walks_dir / "jetdirect_m252dw.snmprec"]) as simulator:
        yield simulator


async def test_two_sites_poll_their_own_printers_and_north_loses_nothing_in_a_cut(
    tmp_path: Path, printers_north: SnmpSimulator, printers_south: SnmpSimulator
) -> None:
    started = time.monotonic()
    tls = make_tls(tmp_path / "tls", ["hub", "north", "south"])
    accounts = [
        SiteAccount("north", "north-leaf-pw", "north-admin-pw"),
        SiteAccount("south", "south-leaf-pw", "south-admin-pw"),
    ]
    leaf_port = free_tcp_port()
    hub_server = EmbeddedNats(
        tmp_path / "hub",
        server_name="hub",
        domain="hub",
        extra=hub_leafnodes(leaf_port, tls["hub"])
        + hub_accounts(
            HUB, accounts, hub_user=HUB_USER, hub_password=HUB_PASSWORD, system_password="sys-pw"
        ),
    )
    hub_url = await asyncio.to_thread(hub_server.start)
    proxy = LinkProxy(leaf_port)
    await proxy.start()
    stop = asyncio.Event()
    collectors: list[asyncio.Task[None]] = []
    hub_bus: Bus | None = None
    # What the test connects to the sites, closed in the end also when an assertion fails on
    # the way (a connection outliving the sites' servers reconnects for the rest of the session).
    to_close = contextlib.AsyncExitStack()
    try:
        # Hub side: the services' events stream, and each site's SITE_DOWN in its own account.
        hub_bus = await Bus.connect(
            hub_url, subjects=HUB, name="hub-api", user=HUB_USER, password=HUB_PASSWORD, attempts=3
        )
        await hub_bus.ensure_event_stream()
        # The hub's api, as the hub's services run it: its projections fill its database.
        api_ready = asyncio.Event()
        api_settings = load_settings(
            ApiSettings,
            nats_url=hub_url,
            nats_user=HUB_USER,
            nats_password=HUB_PASSWORD,
            subject_root=HUB.root,
            stream_prefix=HUB.stream_prefix,
            data_dir=tmp_path / "hub-api",
            port=free_tcp_port(),
            admin_password="hub-admin-password",
            instance="hub-api",
        )
        collectors.append(
            asyncio.create_task(run_api(api_settings, stop=stop, ready=api_ready), name="hub-api")
        )
        await asyncio.wait_for(api_ready.wait(), 60)
        hub_db = HubDatabase(tmp_path / "hub-api" / "tonerwatch.db")
        for account in accounts:
            admin = await nats.connect(
                hub_url, user=f"admin-{account.site}", password=account.admin_password
            )
            try:
                await admin.jetstream().add_stream(down_stream_config(HUB, account.site))
            finally:
                await admin.close()

        sites = {
            "north": Site(
                "north",
                SiteCredentials("north", site_user("north"), "north-leaf-pw", tls["north"]),
                printers_north,
                free_tcp_port(),
                ("hp-north-1", "hp-north-2"),
            ),
            "south": Site(
                "south",
                SiteCredentials("south", site_user("south"), "south-leaf-pw", tls["south"]),
                printers_south,
                free_tcp_port(),
                ("hp-south-1",),
            ),
        }
        # The credentials file round-trips (what `tonerwatch collector --credentials` reads).
        for site in sites.values():
            site.credentials.write(tmp_path / f"{site.name}.json")
            assert SiteCredentials.read(tmp_path / f"{site.name}.json") == site.credentials

        links = {"north": f"tls://127.0.0.1:{proxy.port}", "south": f"tls://127.0.0.1:{leaf_port}"}
        for site in sites.values():
            ready = asyncio.Event()
            collectors.append(
                asyncio.create_task(
                    run_collector(
                        links[site.name],
                        SiteCredentials.read(tmp_path / f"{site.name}.json"),
                        tmp_path / f"site-{site.name}",
                        stop=stop,
                        ready=ready,
                        port=site.port,
                        instance=f"collector-{site.name}",
                        poll_timeout_s=0.5,
                        poll_retries=0,
                        status_interval_s=STATUS_INTERVAL_S,
                    )
                )
            )
            await asyncio.wait_for(ready.wait(), 30)
        await source_sites(hub_bus.js, HUB, list(sites))
        # The hub's alerter, judging the collectors' statuses.
        alerter_ready = asyncio.Event()
        alerter_settings = load_settings(
            AlerterSettings,
            nats_url=hub_url,
            nats_user=HUB_USER,
            nats_password=HUB_PASSWORD,
            subject_root=HUB.root,
            stream_prefix=HUB.stream_prefix,
            instance="hub-alerter",
            collector_offline_after_s=OFFLINE_AFTER_S,
            collector_check_s=0.2,
        )
        collectors.append(
            asyncio.create_task(run_alerter(alerter_settings, stop=stop, ready=alerter_ready))
        )
        await asyncio.wait_for(alerter_ready.wait(), 30)

        # The hub's api configures each site's printers; only the site's collector polls them.
        for site in sites.values():
            for printer in site.printers:
                await hub_bus.publish(configured(site, printer))

        async def hub_readings() -> list[ev.SupplyReading]:
            assert hub_bus is not None
            found = await stream_events(hub_bus.nc, HUB.events_stream, HUB.filter("supply.reading"))
            return [e for e in found if isinstance(e, ev.SupplyReading)]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            readings = await hub_readings()
            counts = {
                p: sum(r.printer_id == p for r in readings)
                for s in sites.values()
                for p in s.printers
            }
            if min(counts.values()) >= 2:
                break
            await asyncio.sleep(0.5)
        assert min(counts.values()) >= 2, counts
        # Each collector announces itself, across its leaf, to the hub: its site, its printers,
        # and what the hub has yet to take from it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = await hub_statuses(hub_bus)
            newest = {s.site_id: s for s in statuses}
            if all(
                site in newest
                and newest[site].printers == len(sites[site].printers)
                and newest[site].queue_depth == 0
                for site in sites
            ):
                break
            await asyncio.sleep(0.5)
        for site in sites.values():
            status = newest[site.name]
            assert status.collector_id == f"collector-{site.name}"
            assert status.printers == len(site.printers), status
            assert status.version and status.started_at <= status.occurred_at
            # Every poll partition of the site is held by its poller: none waits.
            assert status.queue_depth == 0, status
        for reading in readings:
            assert reading.source == f"poller/collector-{reading.site_id}"
            assert reading.printer_id in sites[reading.site_id].printers

        # Cut north's link. North keeps polling into its own stream; south goes on reaching the hub.
        north_local = await nats.connect(f"nats://127.0.0.1:{sites['north'].port}")
        to_close.push_async_callback(north_local.close)
        north_stream = site_subjects(HUB, "north").events_stream
        north_filter = HUB.filter("supply.reading", site="north")
        south_before = sum(r.site_id == "south" for r in await hub_readings())
        south_rows_before = len(await hub_db.history(sites["south"].printers))
        north_at_hub_before = sum(r.site_id == "north" for r in await hub_readings())
        cut_at = time.time()
        await proxy.cut()
        # A change made at the hub meanwhile: a new printer at north, polled once the link is back.
        await hub_bus.publish(configured(sites["north"], "hp-north-3"))
        await asyncio.sleep(CUT_S)
        during = await hub_readings()
        north_made = [
            e
            for e in await stream_events(north_local, north_stream, north_filter)
            if e.occurred_at.timestamp() > cut_at + 1.0  # surely made with the link down
        ]
        assert len(north_made) >= 2 * (CUT_S - 2), "north stopped polling while cut off"
        assert sum(r.site_id == "south" for r in during) > south_before, "south was held up"
        # ...and into the hub's database.
        for _ in range(40):  # bounded: 40 x 0.25 s
            if len(await hub_db.history(sites["south"].printers)) > south_rows_before:
                break
            await asyncio.sleep(0.25)
        assert len(await hub_db.history(sites["south"].printers)) > south_rows_before, (
            "south's readings stopped reaching the hub's database during north's cut"
        )
        made_ids = {e.event_id for e in north_made}
        assert not made_ids & {r.event_id for r in during}, "north's readings got out while cut"
        assert sum(r.site_id == "north" for r in during) <= north_at_hub_before + 4

        # North reads nothing of south's and cannot write there: isolation is a hub property.
        # A reading forged at north for a south printer, with a fresh event id.
        foreign = north_made[0].model_copy(
            update={"site_id": "south", "printer_id": "hp-south-1", "event_id": uuid.uuid4()}
        )
        north_bus = await Bus.connect(
            f"nats://127.0.0.1:{sites['north'].port}",
            subjects=site_subjects(HUB, "north"),
            name="intruder",
            attempts=3,
        )
        to_close.push_async_callback(north_bus.drain)

        # North is silent at the hub: one site-offline alert for north (not one per printer).
        offline = [e for e in await hub_site_alerts(hub_bus) if isinstance(e, ev.SiteOffline)]
        assert [(e.site_id, e.collector_id) for e in offline] == [("north", "collector-north")]

        await proxy.start()  # restore
        restored_at = time.monotonic()
        await north_bus.publish(foreign)  # on tw.south.supply.reading.* at north
        await north_bus.nc.publish(HUB.subject("south", "supply.reading", "x"), foreign.to_bytes())
        caught_up_s: float | None = None
        while time.monotonic() - restored_at < CATCH_UP_BOUND_S:
            at_hub = {r.event_id for r in await hub_readings()}
            if made_ids <= at_hub:
                caught_up_s = time.monotonic() - restored_at
                break
            await asyncio.sleep(0.25)
        assert caught_up_s is not None, "north's readings made during the cut never reached the hub"
        log.warning("north caught up %.1f s after the link came back", caught_up_s)
        print(
            f"\nnorth: {len(made_ids)} readings made during a {CUT_S:.0f} s cut, at the hub "
            f"{caught_up_s:.1f} s after the link came back"
        )

        # Exactly once, in order per printer: the hub holds each of north's readings once, in the
        # order north made them.
        await asyncio.sleep(2.0)
        final = await hub_readings()
        north_local_all = [e for e in await stream_events(north_local, north_stream, north_filter)]
        at_hub_north = [r for r in final if r.site_id == "north"]
        ids = [r.event_id for r in at_hub_north]
        assert len(ids) == len(set(ids)), "a reading reached the hub twice"
        local_order = [e.event_id for e in north_local_all]
        hub_order = [i for i in ids if i in set(local_order)]
        assert hub_order == [i for i in local_order if i in set(hub_order)]
        assert len(hub_order) >= len(local_order) - 4  # all but the newest few still in flight
        for printer in sites["north"].printers:
            times = [r.occurred_at for r in at_hub_north if r.printer_id == printer]
            assert times == sorted(times)
        assert foreign.event_id not in {r.event_id for r in final}

        # The hub's database: every reading north made during the cut applied exactly once, one
        # history row per supply (count in = count out), in the order north made them.
        for _ in range(120):  # bounded: 120 x 0.25 s
            applied = await hub_db.applied_readings()
            if made_ids <= applied:
                break
            await asyncio.sleep(0.25)
        assert made_ids <= applied, f"{len(made_ids - applied)} readings of the cut not in the DB"
        assert foreign.event_id not in applied
        rows = await hub_db.history(sites["north"].printers)
        per_reading: dict[tuple[str, str], int] = {}
        for _row_id, printer, _supply, at in rows:
            per_reading[(printer, at)] = per_reading.get((printer, at), 0) + 1
        made_readings = [e for e in north_made if isinstance(e, ev.SupplyReading)]
        count_in = sum(len(e.supplies) for e in made_readings)
        count_out = sum(per_reading.get((e.printer_id, db_time(e)), 0) for e in made_readings)
        assert count_in > 0 and count_out == count_in, f"count in {count_in}, out {count_out}"
        for event in made_readings:
            assert per_reading.get((event.printer_id, db_time(event))) == len(event.supplies)
        for printer in sites["north"].printers:
            times = [at for _id, p, _s, at in rows if p == printer]  # rows are in id order
            assert times == sorted(times), f"{printer}: rows not in the order north made them"
        log.warning("north's cut: %d readings, %d rows in the hub's DB", len(made_ids), count_out)
        # North is heard again: its alert resolved, once; south was never offline.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            judged = await hub_site_alerts(hub_bus)
            if any(isinstance(e, ev.SiteOnline) for e in judged):
                break
            await asyncio.sleep(0.25)
        assert [e.offline_event_id for e in judged if isinstance(e, ev.SiteOnline)] == [
            offline[0].event_id
        ]
        assert [e for e in judged if isinstance(e, ev.SiteOffline)] == offline
        # North's statuses made during the cut were kept at the site and reached the hub too.
        north_statuses = [s for s in await hub_statuses(hub_bus) if s.site_id == "north"]
        assert any(
            cut_at + 1.0 < s.occurred_at.timestamp() < cut_at + CUT_S for s in north_statuses
        )

        # The printer configured at the hub during the cut reached north and is polled there.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            new = [r for r in await hub_readings() if r.printer_id == "hp-north-3"]
            if new:
                break
            await asyncio.sleep(0.5)
        assert new and all(r.source == "poller/collector-north" for r in new)

        # South was never affected: its readings came all along, only from its own collector.
        assert all(r.source == "poller/collector-south" for r in final if r.site_id == "south")

        # North's view: nothing of south's work ever reaches north's server.
        at_north = await stream_events(north_local, north_stream, HUB.all)
        assert not [e for e in at_north if e.site_id == "south" and e.event_id != foreign.event_id]
        configured_at_north = {
            e.printer_id for e in at_north if isinstance(e, ev.PrinterConfigured)
        }
        assert configured_at_north == {"hp-north-1", "hp-north-2", "hp-north-3"}
        # The hub's JetStream API beyond creating its own source consumer is closed to north...
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await north_local.request(f"$JS.hub.API.STREAM.INFO.{DOWN_STREAM}", b"", timeout=2)
        # ...and south's domain does not answer north at all.
        south_stream = site_subjects(HUB, "south").events_stream
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await north_local.request(
                f"$JS.site-south.API.STREAM.INFO.{south_stream}", b"", timeout=2
            )
        # South's work published at the hub now never reaches a subscriber at north.
        overheard: list[bytes] = []

        async def overhear(msg: Msg) -> None:
            overheard.append(msg.data)

        spy = await north_local.subscribe(f"{HUB.root}.south.>", cb=overhear)
        await north_local.flush()
        removed = ev.PrinterRemoved(
            source="test-hub-api", site_id="south", printer_id="hp-south-ghost"
        )
        await hub_bus.publish(removed)
        await asyncio.sleep(1.5)
        await spy.unsubscribe()
        assert overheard == []
        south_local = await nats.connect(f"nats://127.0.0.1:{sites['south'].port}")
        to_close.push_async_callback(south_local.close)
        at_south = await stream_events(
            south_local, site_subjects(HUB, "south").events_stream, HUB.all
        )
        assert removed.event_id in {e.event_id for e in at_south}  # it did go where it belongs
        # North's leaf credentials are refused as a client of the hub.
        with pytest.raises((nats.errors.Error, OSError)):
            bad = await nats.connect(
                hub_url,
                user=site_user("north"),
                password="north-leaf-pw",
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
            )
            await bad.close()
        await to_close.aclose()
        log.warning("two sites, one cut: %.1f s in all", time.monotonic() - started)
    finally:
        with contextlib.suppress(Exception):
            await to_close.aclose()
        stop.set()
        for task in collectors:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        if hub_bus is not None:
            with contextlib.suppress(Exception):
                await hub_bus.drain()
        await proxy.cut()
        await asyncio.to_thread(hub_server.stop)


async def hub_leafs(http_port: int, site: str) -> list[dict[str, object]]:
    """Return the hub's live leaf connections bound to a site's account (its /leafz)."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        leafz = (await client.get(f"http://127.0.0.1:{http_port}/leafz")).json()
    return [leaf for leaf in leafz.get("leafs") or [] if leaf.get("account") == f"SITE_{site}"]


async def test_a_revoked_site_is_dropped_at_once_and_refused_after(
    tmp_path: Path, printers_north: SnmpSimulator
) -> None:
    tls = make_tls(tmp_path / "tls", ["hub", "north"])
    north = SiteAccount("north", "north-leaf-pw", "north-admin-pw")
    leaf_port, http_port = free_tcp_port(), free_tcp_port()

    def accounts(site: SiteAccount) -> str:
        return hub_leafnodes(leaf_port, tls["hub"]) + hub_accounts(
            HUB, [site], hub_user=HUB_USER, hub_password=HUB_PASSWORD, system_password="sys-pw"
        )

    hub_server = EmbeddedNats(
        tmp_path / "hub",
        server_name="hub",
        domain="hub",
        http_port=http_port,
        extra=accounts(north),
    )
    hub_url = await asyncio.to_thread(hub_server.start)
    stop = asyncio.Event()
    collector: asyncio.Task[None] | None = None
    try:
        admin = await nats.connect(hub_url, user="admin-north", password="north-admin-pw")
        await admin.jetstream().add_stream(down_stream_config(HUB, "north"))
        await admin.close()
        ready = asyncio.Event()
        collector = asyncio.create_task(
            run_collector(
                f"tls://127.0.0.1:{leaf_port}",
                SiteCredentials("north", site_user("north"), "north-leaf-pw", tls["north"]),
                tmp_path / "site-north",
                stop=stop,
                ready=ready,
                instance="collector-north",
            )
        )
        await asyncio.wait_for(ready.wait(), 30)
        assert len(await hub_leafs(http_port, "north")) == 1

        # Revoke: the accounts without north's leaf user, reloaded; reload alone keeps the live
        # leaf (docs/design/sites.md § 4), the kick drops it.
        await asyncio.to_thread(
            hub_server.reload, accounts(dataclasses.replace(north, revoked=True))
        )
        await asyncio.sleep(0.5)
        # The reload alone left the live leaf in place: what the kick is for.
        assert len(await hub_leafs(http_port, "north")) == 1
        system = await nats.connect(hub_url, user="sys", password="sys-pw")
        try:
            assert await kick_site(system, "north") == 1
        finally:
            await system.close()
        for _ in range(100):  # the kicked connection closes (bounded: 100 x 0.05 s)
            if not await hub_leafs(http_port, "north"):
                break
            await asyncio.sleep(0.05)
        assert await hub_leafs(http_port, "north") == [], "the revoked site's leaf is still there"
        # The collector redials every second (site_leafnodes' reconnect): watch its attempts at
        # the hub until several were refused; not one of them may be let in meanwhile.
        refused = 0
        for _ in range(300):  # bounded: 300 x 0.05 s
            assert await hub_leafs(http_port, "north") == [], "a revoked site was let back in"
            log_text = hub_server.log_file.read_text().lower()
            refused = log_text.count("authorization violation") + log_text.count(
                "authentication error"
            )
            if refused >= 3:
                break
            await asyncio.sleep(0.05)
        assert refused >= 3, "the revoked collector's redials were not seen refused"
        assert await hub_leafs(http_port, "north") == []
    finally:
        stop.set()
        if collector is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(collector, 30)
        await asyncio.to_thread(hub_server.stop)
