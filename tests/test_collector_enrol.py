"""`tonerwatch collector --enrol URL --token T`: a site's box trades its one-time token at the hub's
running api for its credentials folder, once; a restart reuses the folder; a replay is refused."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio

from tonerwatch_api.service import run
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.hub import HubLayout, SiteEntry, write_hub_config
from tonerwatch_shared.sites import SiteCredentials
from tonerwatch_shared.testing.tls import make_tls

PASSWORD = "enrol-provider-password"
LEAF_URL = "tls://hub.example:7422"  # only handed out here, never dialled


@pytest_asyncio.fixture(loop_scope="session")
async def api_url(tmp_path: Path, nats_url: str, bus: Bus) -> AsyncIterator[str]:
    """The hub's api (SQLite, real NATS) with a hub folder holding site acme-hq."""
    tls = make_tls(tmp_path / "pki", ["hub", "acme-hq"])
    layout = HubLayout(hub_tls=tls["hub"], store_dir=tmp_path / "hub-store", leaf_host="127.0.0.1")
    entry = SiteEntry("acme-hq", tls["acme-hq"].cert, tls["acme-hq"].key)
    write_hub_config([entry], tmp_path / "hub", layout)
    port = free_tcp_port()
    settings = Settings(
        nats_url=nats_url,
        data_dir=tmp_path / "data",
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        port=port,
        admin_password=PASSWORD,
        instance="enrol",
        hub_dir=tmp_path / "hub",
        hub_leaf_url=LEAF_URL,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            r = await c.post(
                "/api/v1/sites", json={"id": "acme-hq", "name": "ACME HQ"}, headers=await _admin(c)
            )
            assert r.status_code == 201, r.text
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _admin(c: httpx.AsyncClient) -> dict[str, str]:
    r = await c.post("/api/v1/auth/token", data={"username": "admin", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def tonerwatch(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command in a subprocess (off the event loop: the api answers meanwhile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tonerwatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


async def test_a_site_box_enrols_once_with_its_token(api_url: str, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as c:
        r = await c.post("/api/v1/sites/acme-hq/enrolments", headers=await _admin(c))
        assert r.status_code == 201, r.text
    token, command = r.json()["token"], r.json()["command"]
    assert command == f"tonerwatch collector --enrol {api_url} --token {token}"

    box = tmp_path / "box"
    enrol = ["collector", "--enrol", api_url, "--token", token, "--data-dir", str(box)]
    done = await tonerwatch(*enrol, "--enrol-only")
    assert done.returncode == 0, done.stderr
    assert f"enrolled; the site's files are in {box / 'site'}/" in done.stdout
    credentials = SiteCredentials.read(box / "site" / "credentials.json")
    assert (credentials.site, credentials.user, credentials.hub_url) == (
        "acme-hq",
        "site-acme-hq",
        LEAF_URL,
    )
    assert credentials.tls.key.is_file() and credentials.tls.ca.is_file()
    assert stat.S_IMODE((box / "site").stat().st_mode) == 0o700
    assert stat.S_IMODE(credentials.tls.key.stat().st_mode) == 0o600

    # The same command again (a restarted container): the folder is used, the token not traded.
    again = await tonerwatch(*enrol, "--enrol-only")
    assert again.returncode == 0, again.stderr
    assert SiteCredentials.read(box / "site" / "credentials.json") == credentials

    # The token on another box: refused, in one line, exit 2, nothing written.
    other = tmp_path / "other-box"
    replay = await tonerwatch(
        "collector", "--enrol", api_url, "--token", token, "--data-dir", str(other), "--enrol-only"
    )
    assert replay.returncode == 2
    assert "enrolment refused (404)" in replay.stderr and "Traceback" not in replay.stderr
    assert not (other / "site" / "credentials.json").exists()

    # The answer holds the site's password: plain http is refused except on loopback.
    insecure = await tonerwatch(
        "collector", "--enrol", "http://hub.example", "--token", token, "--enrol-only"
    )
    assert insecure.returncode == 2 and "use https://" in insecure.stderr
