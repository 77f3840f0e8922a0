"""`tonerwatch tenant` as a provider runs it against a running api (REST): create a customer with
its first site and admin, list every tenant, disable one; customers and bad credentials refused."""

from __future__ import annotations

import asyncio
import json
import os
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

PASSWORD = "cli-provider-password"


@pytest_asyncio.fixture(loop_scope="session")
async def api_url(tmp_path: Path, nats_url: str, bus: Bus) -> AsyncIterator[str]:
    """The api service on SQLite and real NATS, its bootstrap admin the provider."""
    port = free_tcp_port()
    settings = Settings(
        nats_url=nats_url,
        data_dir=tmp_path / "data",
        subject_root=bus.subjects.root,
        stream_prefix=bus.subjects.stream_prefix,
        port=port,
        admin_password=PASSWORD,
        instance="cli",
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def tonerwatch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the command in a subprocess (off the event loop: the api answers meanwhile)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tonerwatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
        check=False,
    )


async def test_a_provider_creates_and_lists_customers_from_the_command_line(api_url: str) -> None:
    env = {"TONERWATCH_URL": api_url, "TONERWATCH_PASSWORD": PASSWORD}
    made = await tonerwatch(
        "tenant",
        "create",
        "acme",
        "--name",
        "ACME Corporation",
        "--site",
        "acme-hq",
        "--admin-email",
        "it@acme.example",
        "--user",
        "admin",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    assert "tenant acme (ACME Corporation) created" in made.stdout
    assert "first site: acme-hq" in made.stdout
    assert "first admin: it@acme.example" in made.stdout
    password = made.stdout.split("their password (shown once): ")[1].strip()
    # The generated password is the customer admin's: it logs in, in its own tenant.
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as c:
        r = await c.post(
            "/api/v1/auth/token", data={"username": "it@acme.example", "password": password}
        )
        assert r.status_code == 200
        h = {"Authorization": f"Bearer {r.json()['access_token']}"}
        sites = (await c.get("/api/v1/sites", headers=h)).json()["items"]
        assert [s["id"] for s in sites] == ["acme-hq"]
        # A provider's API token works as TONERWATCH_TOKEN.
        r = await c.post("/api/v1/auth/token", data={"username": "admin", "password": PASSWORD})
        token = r.json()["access_token"]

    listed = await tonerwatch(
        "tenant", "list", "--json", env={"TONERWATCH_URL": api_url, "TONERWATCH_TOKEN": token}
    )
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(t["id"], t["sites"], t["users"], t["provider"]) for t in rows] == [
        ("acme", 1, 1, False),
        ("default", 1, 1, True),
    ]
    table = await tonerwatch(
        "tenant", "list", env={"TONERWATCH_URL": api_url, "TONERWATCH_TOKEN": token}
    )
    assert "ACME Corporation" in table.stdout and "provider" in table.stdout

    off = await tonerwatch(
        "tenant", "disable", "acme", env={"TONERWATCH_URL": api_url, "TONERWATCH_TOKEN": token}
    )
    assert off.returncode == 0 and off.stdout.strip() == "acme: disabled"

    # Taken id: the api's reason in one line, exit 2. A customer admin: refused, no traceback.
    again = await tonerwatch(
        "tenant",
        "create",
        "acme",
        "--name",
        "x",
        env={"TONERWATCH_URL": api_url, "TONERWATCH_TOKEN": token},
    )
    assert again.returncode == 2 and "409" in again.stderr and "taken" in again.stderr
    await tonerwatch(
        "tenant", "enable", "acme", env={"TONERWATCH_URL": api_url, "TONERWATCH_TOKEN": token}
    )
    customer = await tonerwatch(
        "tenant",
        "list",
        "--user",
        "it@acme.example",
        env={"TONERWATCH_URL": api_url, "TONERWATCH_PASSWORD": password},
    )
    assert customer.returncode == 2 and "403" in customer.stderr
    assert "Traceback" not in customer.stderr and customer.stderr.count("\n") == 1
    nobody = await tonerwatch("tenant", "list", env={"TONERWATCH_URL": api_url})
    assert nobody.returncode == 2 and "TONERWATCH_TOKEN" in nobody.stderr
    gone = await tonerwatch(
        "tenant", "list", env={"TONERWATCH_URL": "http://127.0.0.1:1", "TONERWATCH_TOKEN": token}
    )
    assert gone.returncode == 2 and "cannot reach the api" in gone.stderr


async def test_a_provider_switches_to_a_customer_tenant_from_the_command_line(
    api_url: str,
) -> None:
    env = {"TONERWATCH_URL": api_url, "TONERWATCH_PASSWORD": PASSWORD}
    made = await tonerwatch(
        "tenant",
        "create",
        "globex",
        "--name",
        "Globex",
        "--site",
        "globex-plant",
        "--admin-email",
        "it@globex.example",
        "--user",
        "admin",
        "--json",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    customer_password = json.loads(made.stdout)["admin_password"]

    async def sites(*args: str, extra: dict[str, str] | None = None) -> list[str]:
        done = await tonerwatch(
            "tenant", "api", "GET", "/sites", "--user", "admin", *args, env=env | (extra or {})
        )
        assert done.returncode == 0, done.stderr
        return [s["id"] for s in json.loads(done.stdout)["items"]]

    # The provider's own view, then Globex's: --tenant, or TONERWATCH_TENANT for a whole shell.
    own = await sites()
    assert "globex-plant" not in own
    assert await sites("--tenant", "globex") == ["globex-plant"]
    assert await sites(extra={"TONERWATCH_TENANT": "globex"}) == ["globex-plant"]
    # A write in the customer's tenant, as its admin would make it.
    patched = await tonerwatch(
        "tenant",
        "api",
        "--tenant",
        "globex",
        "patch",
        "/sites/globex-plant",
        "--data",
        '{"monitor_found": true}',
        "--user",
        "admin",
        env=env,
    )
    assert patched.returncode == 0, patched.stderr
    assert json.loads(patched.stdout)["monitor_found"] is True
    # The same site is not the provider's own to change.
    outside = await tonerwatch(
        "tenant",
        "api",
        "PATCH",
        "/sites/globex-plant",
        "--data",
        '{"monitor_found": false}',
        "--user",
        "admin",
        env=env,
    )
    assert outside.returncode == 2 and "404" in outside.stderr
    # A customer's admin cannot switch to another tenant.
    other = await tonerwatch(
        "tenant",
        "api",
        "--tenant",
        "default",
        "GET",
        "/sites",
        "--user",
        "it@globex.example",
        env={"TONERWATCH_URL": api_url, "TONERWATCH_PASSWORD": customer_password},
    )
    assert other.returncode == 2 and "403" in other.stderr
    bad = await tonerwatch(
        "tenant", "api", "POST", "/sites", "--data", "{nope", "--user", "admin", env=env
    )
    assert bad.returncode == 2 and "--data is not JSON" in bad.stderr
