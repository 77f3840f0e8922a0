"""Collector enrolment and revocation at a hub: one-time tokens, and a revoked site refused at once.

The hub folder is what `tonerwatch hub-config` writes (tonerwatch_shared.hub), with a test CA;
revocation runs against the hub's real nats-server (that folder's hub.conf) with each site's
leaf nats-server configured from the credentials its enrolment handed out. All on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_site, in_tx
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port, nats_server_binary, wait_for_tcp
from tonerwatch_shared.hub import HubLayout, SiteEntry, write_hub_config, write_site_bundle
from tonerwatch_shared.sites import SiteCredentials, site_domain, site_leafnodes
from tonerwatch_shared.testing.tls import make_tls

from .test_discovery_jobs import ADMIN_PW, bearer

SITES = ("acme-hq", "globex-plant")


@dataclass
class Hub:
    folder: Path
    layout: HubLayout

    @property
    def client_url(self) -> str:
        return f"nats://127.0.0.1:{self.layout.client_port}"

    @property
    def leaf_url(self) -> str:
        return f"tls://127.0.0.1:{self.layout.leaf_port}"


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    tls = make_tls(tmp_path / "pki", ["hub", *SITES])
    layout = HubLayout(
        hub_tls=tls["hub"],
        store_dir=tmp_path / "hub-store",
        leaf_port=free_tcp_port(),
        leaf_host="127.0.0.1",
        client_port=free_tcp_port(),
    )
    entries = [SiteEntry(s, tls[s].cert, tls[s].key) for s in SITES]
    write_hub_config(entries, tmp_path / "hub", layout)
    return Hub(tmp_path / "hub", layout)


def _app_client(db: Engine, bus: Bus, **settings: object) -> httpx.AsyncClient:
    app = create_app(
        db,
        bus,
        Settings(
            session_secret="test-secret",
            admin_password=ADMIN_PW,
            cookie_secure=False,
            **settings,  # type: ignore[arg-type]
        ),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tw.test")


@pytest.fixture
async def client(db: Engine, bus: Bus, hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(db, ADMIN_PW)

    def sites(s: object) -> None:
        for site in SITES:
            ensure_site(s, site)  # type: ignore[arg-type]
        ensure_site(s, "elsewhere", "other-tenant")  # type: ignore[arg-type]
        create_user(s, "viewer1", "viewer-password-1", "viewer")  # type: ignore[arg-type]

    in_tx(db, sites)
    async with _app_client(
        db, bus, hub_dir=hub.folder, hub_leaf_url=hub.leaf_url, nats_url=hub.client_url
    ) as c:
        yield c


async def _token(client: httpx.AsyncClient, site: str, **body: object) -> str:
    r = await client.post(
        f"/api/v1/sites/{site}/enrolments", json=body or None, headers=await bearer(client)
    )
    assert r.status_code == 201, r.text
    assert r.json()["command"].endswith(f"--token {r.json()['token']}")
    return str(r.json()["token"])


async def test_a_collector_trades_its_token_once_for_the_sites_files(
    client: httpx.AsyncClient, hub: Hub, tmp_path: Path
) -> None:
    token = await _token(client, "acme-hq")
    r = await client.post("/api/v1/enrol", json={"token": token})
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["site"] == "acme-hq" and bundle["hub_url"] == hub.leaf_url
    given = hub.folder / "sites" / "acme-hq"
    assert bundle["credentials"] == json.loads((given / "credentials.json").read_text())
    assert bundle["files"]["key.pem"] == (given / "key.pem").read_text()
    # Written at the site as `tonerwatch collector --enrol` does: the files it reads, owner-only.
    path = write_site_bundle(bundle, tmp_path / "box" / "site", bundle["hub_url"])
    credentials = SiteCredentials.read(path)
    issued = SiteCredentials.read(given / "credentials.json")
    assert (credentials.site, credentials.user, credentials.password) == (
        issued.site,
        issued.user,
        issued.password,
    )
    assert credentials.hub_url == hub.leaf_url
    assert credentials.tls.cert.read_bytes() == (given / "cert.pem").read_bytes()
    for name in ("credentials.json", "key.pem"):
        assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600
    # Once only: the same token again (a replay, or a second box) is refused.
    again = await client.post("/api/v1/enrol", json={"token": token})
    assert again.status_code == 404, again.text
    assert "cert.pem" not in again.text


async def test_expired_unknown_and_foreign_enrolments_are_refused(
    client: httpx.AsyncClient, db: Engine, bus: Bus
) -> None:
    token = await _token(client, "globex-plant", ttl_min=0.002)  # 120 ms
    await asyncio.sleep(0.3)
    assert (await client.post("/api/v1/enrol", json={"token": token})).status_code == 404
    forged = "twe_" + "A" * 43
    assert (await client.post("/api/v1/enrol", json={"token": forged})).status_code == 404
    admin = await bearer(client)
    # Another tenant's site looks absent; a site the hub has no credentials for cannot enrol.
    r = await client.post("/api/v1/sites/elsewhere/enrolments", headers=admin)
    assert r.status_code == 404, r.text
    r = await client.post("/api/v1/sites/default/enrolments", headers=admin)
    assert r.status_code == 409 and "hub-config" in r.json()["error"], r.text
    viewer = await bearer(client, "viewer1", "viewer-password-1")
    r = await client.post("/api/v1/sites/acme-hq/enrolments", headers=viewer)
    assert r.status_code == 403, r.text
    # An installation that is not a hub says so.
    async with _app_client(db, bus) as plain:
        r = await plain.post("/api/v1/sites/acme-hq/enrolments", headers=await bearer(plain))
        assert r.status_code == 409 and "TONERWATCH_HUB_DIR" in r.json()["error"], r.text


@pytest.fixture
def hub_server(hub: Hub) -> Iterator[subprocess.Popen[bytes]]:
    log = hub.folder / "nats-server.log"
    proc = subprocess.Popen(
        [str(nats_server_binary()), "-c", str(hub.folder / "hub.conf"), "-l", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_tcp("127.0.0.1", hub.layout.client_port, 15.0)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def _leafs(site: EmbeddedNats) -> int:
    async with httpx.AsyncClient(timeout=2.0) as c:
        return len((await c.get(f"http://127.0.0.1:{site.http_port}/leafz")).json()["leafs"] or [])


async def _until(check: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_revoked_collector_is_dropped_and_refused_while_the_other_site_stays(
    client: httpx.AsyncClient, hub: Hub, hub_server: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    leaves: dict[str, EmbeddedNats] = {}
    try:
        for site in SITES:
            r = await client.post("/api/v1/enrol", json={"token": await _token(client, site)})
            assert r.status_code == 200, r.text
            path = write_site_bundle(r.json(), tmp_path / site / "site", r.json()["hub_url"])
            credentials = SiteCredentials.read(path)
            assert credentials.hub_url is not None
            leaves[site] = EmbeddedNats(
                tmp_path / site / "nats",
                http_port=free_tcp_port(),
                server_name=f"collector-{site}",
                domain=site_domain(site),
                extra=site_leafnodes(credentials.hub_url, credentials),
            )
            await asyncio.to_thread(leaves[site].start)
        for site in SITES:
            assert await _until(lambda s=site: _leafs(leaves[s]), 20.0), f"{site} never joined"
        unused = await _token(client, "acme-hq")  # made before the revocation: void after it

        r = await client.post(
            "/api/v1/sites/acme-hq/revoke-collector", headers=await bearer(client)
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "site_id": "acme-hq",
            "changed": True,
            "kicked": 1,
            "voided_enrolments": 1,
        }

        async def acme_gone() -> bool:
            return await _leafs(leaves["acme-hq"]) == 0

        assert await _until(acme_gone, 2.0), "the revoked site's leaf is still connected"
        # It retries every second: every attempt is refused; the other site never noticed.
        await asyncio.sleep(3.0)
        assert await _leafs(leaves["acme-hq"]) == 0
        assert await _leafs(leaves["globex-plant"]) == 1
        log = (hub.folder / "nats-server.log").read_text()
        assert "Authorization Violation" in log or "authentication error" in log.lower()
        assert not (hub.folder / "sites" / "acme-hq").exists()
        assert (await client.post("/api/v1/enrol", json={"token": unused})).status_code == 404
        # Again: nothing left to change or drop, and it says so.
        r = await client.post(
            "/api/v1/sites/acme-hq/revoke-collector", headers=await bearer(client)
        )
        assert r.status_code == 200, r.text
        assert (r.json()["changed"], r.json()["kicked"]) == (False, 0)
        r = await client.post("/api/v1/sites/acme-hq/enrolments", headers=await bearer(client))
        assert r.status_code == 409, r.text
    finally:
        for leaf in leaves.values():
            await asyncio.to_thread(leaf.stop)
