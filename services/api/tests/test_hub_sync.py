"""Enrolment and revocation through the api with `tonerwatch hub-sync` beside the hub's nats-server.

The Kubernetes shape (README "Many sites, one hub"), as real processes on 127.0.0.1: the hub
folder `hub-config` wrote is only read (a Secret there; here its files are checked unchanged),
the api records the hub's wanted sites in the NATS bucket, and hub-sync (its own process)
renders the server's config, reloads it and drops a revoked site's live leaf. Each site is a
real leaf nats-server configured from what its enrolment handed out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from tonerwatch_api.db.tx import ensure_admin, ensure_default_site, ensure_site, in_tx, upgrade
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port, nats_server_binary, wait_for_tcp
from tonerwatch_shared.hub import (
    HubLayout,
    SiteEntry,
    revoke_in_config,
    write_hub_config,
    write_site_bundle,
)
from tonerwatch_shared.hub_sync import HUB_SITES_BUCKET, read_wanted
from tonerwatch_shared.sites import SiteCredentials, site_domain, site_leafnodes
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_shared.testing.tls import make_tls

from .test_discovery_jobs import ADMIN_PW, bearer
from .test_enrolments import _app_client

SITES = ("acme-hq", "globex-plant")


class HubProcs:
    """The hub's nats-server and its hub-sync, each a process; the folder read-only to both."""

    def __init__(self, tmp: Path) -> None:
        tls = make_tls(tmp / "pki", ["hub", *SITES])
        self.folder = tmp / "hub"
        self.run = tmp / "run"  # the emptyDir the sidecar writes and the server reads
        self.layout = HubLayout(
            hub_tls=tls["hub"],
            store_dir=tmp / "hub-store",
            leaf_port=free_tcp_port(),
            leaf_host="127.0.0.1",
            client_port=free_tcp_port(),
        )
        write_hub_config(
            [SiteEntry(s, tls[s].cert, tls[s].key) for s in SITES], self.folder, self.layout
        )
        self.secrets = json.loads((self.folder / "secrets.json").read_text())
        self.server: subprocess.Popen[bytes] | None = None
        self.sync: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.layout.client_port}"

    @property
    def conf(self) -> Path:
        return self.run / "hub.conf"

    @property
    def log(self) -> Path:
        return self.run / "nats-server.log"

    def folder_digest(self) -> dict[str, str]:
        return {
            str(p.relative_to(self.folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.folder.rglob("*"))
            if p.is_file() and p.name != ".lock"
        }

    def hub_sync(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tonerwatch",
            "hub-sync",
            "--hub-dir",
            str(self.folder),
            "--conf",
            str(self.conf),
            "--nats-url",
            self.url,
            *extra,
        ]

    def render_bootstrap(self) -> None:
        """What an init container does for a new pod: the folder alone (no bucket state yet)."""
        subprocess.run(self.hub_sync("--render-only"), check=True, capture_output=True)

    def start_server(self) -> None:
        self.server = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(self.conf), "-l", str(self.log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for_tcp("127.0.0.1", self.layout.client_port, 15.0)

    def start_sync(self, resync_s: float = 600.0) -> None:
        self.sync = subprocess.Popen(
            self.hub_sync("--resync-s", str(resync_s)),
            stdout=subprocess.DEVNULL,
            stderr=(self.run / "hub-sync.log").open("ab"),
        )

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)

    def stop_sync(self) -> None:
        self._stop(self.sync)
        self.sync = None

    def stop_server(self) -> None:
        self._stop(self.server)
        self.server = None


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[HubProcs]:
    hub = HubProcs(tmp_path)
    hub.render_bootstrap()
    hub.start_server()
    hub.start_sync()
    try:
        yield hub
    finally:
        hub.stop_sync()
        hub.stop_server()


@pytest.fixture
async def hub_bus(procs: HubProcs) -> AsyncIterator[Bus]:
    """The api's bus at the hub: user "hub" of account HUB, as the hub's services connect."""
    bus = await Bus.connect(
        procs.url, subjects=Subjects(), name="api", user="hub", password=procs.secrets["hub"]
    )
    yield bus
    await bus.drain()


@pytest.fixture
async def client(
    sqlite_engine: Engine, hub_bus: Bus, procs: HubProcs
) -> AsyncIterator[httpx.AsyncClient]:
    upgrade(sqlite_engine)
    ensure_default_site(sqlite_engine, "default")
    ensure_admin(sqlite_engine, ADMIN_PW)

    def sites(s: object) -> None:
        for site in SITES:
            ensure_site(s, site)  # type: ignore[arg-type]

    in_tx(sqlite_engine, sites)
    async with _app_client(
        sqlite_engine,
        hub_bus,
        hub_dir=procs.folder,
        hub_sync=True,
        hub_leaf_url=f"tls://127.0.0.1:{procs.layout.leaf_port}",
        nats_url=procs.url,
    ) as c:
        yield c


async def _leafs(site: EmbeddedNats) -> int:
    async with httpx.AsyncClient(timeout=2.0) as c:
        return len((await c.get(f"http://127.0.0.1:{site.http_port}/leafz")).json()["leafs"] or [])


def _refusals(procs: HubProcs) -> int:
    """How many leaf connections the hub refused for a bad user or password so far."""
    text = procs.log.read_text() if procs.log.exists() else ""
    return sum(
        1
        for line in text.splitlines()
        if "authorization violation" in line.lower() or "authentication error" in line.lower()
    )


async def _enrol(client: httpx.AsyncClient, site: str, box: Path) -> EmbeddedNats:
    admin = await bearer(client)
    r = await client.post(f"/api/v1/sites/{site}/enrolments", headers=admin)
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/enrol", json={"token": r.json()["token"]})
    assert r.status_code == 200, r.text
    credentials = SiteCredentials.read(
        write_site_bundle(r.json(), box / "site", r.json()["hub_url"])
    )
    assert credentials.hub_url is not None
    leaf = EmbeddedNats(
        box / "nats",
        http_port=free_tcp_port(),
        server_name=f"collector-{site}",
        domain=site_domain(site),
        extra=site_leafnodes(credentials.hub_url, credentials),
    )
    await asyncio.to_thread(leaf.start)
    return leaf


async def test_enrol_and_revoke_through_the_bucket_and_hub_sync_converges_after_a_restart(
    client: httpx.AsyncClient, procs: HubProcs, hub_bus: Bus, tmp_path: Path
) -> None:
    before = procs.folder_digest()
    leaves: dict[str, EmbeddedNats] = {}
    try:
        for site in SITES:
            leaves[site] = await _enrol(client, site, tmp_path / site)
        for site in SITES:
            await eventually(lambda s=site: _leafs(leaves[s]), 20.0)
        kv = await hub_bus.key_value(HUB_SITES_BUCKET)
        wanted = await read_wanted(kv)
        assert {s: w.revoked for s, w in wanted.items()} == {s: False for s in SITES}

        # Revoke: the api records it; hub-sync rewrites, reloads and drops the live leaf.
        refused = _refusals(procs)
        r = await client.post(
            "/api/v1/sites/acme-hq/revoke-collector", headers=await bearer(client)
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "site_id": "acme-hq",
            "changed": True,
            "kicked": None,
            "voided_enrolments": 0,
        }

        async def acme_gone() -> bool:
            return await _leafs(leaves["acme-hq"]) == 0

        await eventually(acme_gone, 20.0)
        # It redials every second: the hub refuses it (seen in the hub's log), it stays out.
        await eventually(lambda: _refusals(procs) > refused, 20.0)
        assert await _leafs(leaves["acme-hq"]) == 0
        assert await _leafs(leaves["globex-plant"]) == 1
        conf = procs.conf.read_text()
        assert '"site-acme-hq"' not in conf and '"site-globex-plant"' in conf
        # A revoked site cannot enrol again; revoking again changes nothing.
        r = await client.post("/api/v1/sites/acme-hq/enrolments", headers=await bearer(client))
        assert r.status_code == 409 and "revoked" in r.json()["error"], r.text
        r = await client.post(
            "/api/v1/sites/acme-hq/revoke-collector", headers=await bearer(client)
        )
        assert (r.status_code, r.json()["changed"]) == (200, False), r.text
        r = await client.post(
            "/api/v1/sites/nowhere/revoke-collector", headers=await bearer(client)
        )
        assert r.status_code == 404, r.text
        # The api never wrote the hub folder (a read-only Secret on Kubernetes).
        assert procs.folder_digest() == before

        # A new pod: hub-sync and the server gone, the config rendered anew from the folder
        # alone (the init container), so the revoked site gets in again for a moment...
        procs.stop_sync()
        procs.stop_server()
        procs.conf.unlink()
        (procs.run / "wanted.json").unlink()
        procs.render_bootstrap()
        assert '"site-acme-hq"' in procs.conf.read_text()
        procs.start_server()
        await eventually(lambda: _leafs(leaves["acme-hq"]), 30.0)
        # ...until hub-sync reads the bucket (no api involved): dropped and refused again.
        refused = _refusals(procs)
        procs.start_sync()
        await eventually(acme_gone, 30.0)
        await eventually(lambda: _refusals(procs) > refused, 20.0)
        await eventually(lambda: _leafs(leaves["globex-plant"]), 20.0)
        assert await _leafs(leaves["acme-hq"]) == 0
        assert '"site-acme-hq"' not in procs.conf.read_text()
        assert procs.folder_digest() == before
    finally:
        for leaf in leaves.values():
            await asyncio.to_thread(leaf.stop)


async def test_hub_sync_takes_up_a_changed_folder_on_its_next_read(procs: HubProcs) -> None:
    """An updated Secret (here: the folder rewritten by hand) reaches the server with no event."""
    procs.stop_sync()
    (procs.run / "hub-sync.log").unlink()
    procs.start_sync(resync_s=2.5)

    def watching() -> bool:  # started and converged: what follows is a change it must notice
        return "hub-sync: watching" in (procs.run / "hub-sync.log").read_text()

    await eventually(watching, 60.0)
    # The site's files as its collector has them, before the folder forgets them.
    box = procs.run / "globex-box"
    shutil.copytree(procs.folder / "sites" / "globex-plant", box)
    credentials = SiteCredentials.read(box / "credentials.json")
    assert '"site-globex-plant"' in procs.conf.read_text()
    await asyncio.to_thread(revoke_in_config, procs.folder, "globex-plant")

    def taken_up() -> bool:
        return '"site-globex-plant"' not in procs.conf.read_text()

    await eventually(taken_up, 30.0)
    assert '"site-acme-hq"' in procs.conf.read_text()
    # ...and the server runs it: the site's own, once valid, credentials are refused.
    refused = _refusals(procs)
    leaf = EmbeddedNats(
        procs.run / "globex",
        http_port=free_tcp_port(),
        server_name="collector-globex-plant",
        domain=site_domain("globex-plant"),
        extra=site_leafnodes(f"tls://127.0.0.1:{procs.layout.leaf_port}", credentials),
    )
    await asyncio.to_thread(leaf.start)
    try:
        await eventually(lambda: _refusals(procs) > refused, 30.0)
        assert await _leafs(leaf) == 0
    finally:
        await asyncio.to_thread(leaf.stop)
