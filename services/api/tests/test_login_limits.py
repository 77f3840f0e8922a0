"""Failed logins are throttled per username and per address, on the token endpoint and the UI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.engine import Engine

from tonerwatch_api.app import create_app
from tonerwatch_api.db import create_user, ensure_admin, in_tx
from tonerwatch_api.login_limits import LoginLimiter
from tonerwatch_api.settings import Settings
from tonerwatch_api.state import AppState
from tonerwatch_shared.bus import Bus

ADMIN_PW = "admin-password-for-limits"
TOKEN_URL = "/api/v1/auth/token"


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Client:
    http: httpx.AsyncClient
    clock: FakeClock


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[Client]:
    ensure_admin(pg, ADMIN_PW)
    in_tx(pg, lambda s: create_user(s, "olga", "olga-password-123", "operator"))
    app = create_app(pg, bus, Settings(session_secret="limits", cookie_secure=False))
    clock = FakeClock()
    st = app.state.tw
    assert isinstance(st, AppState)
    st.login_limiter.clock = clock
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield Client(c, clock)


async def token(c: Client, username: str, password: str) -> httpx.Response:
    return await c.http.post(TOKEN_URL, data={"username": username, "password": password})


async def test_five_wrong_passwords_then_the_right_one_is_429_until_the_window_passes(
    client: Client,
) -> None:
    for _ in range(5):
        assert (await token(client, "admin", "guess")).status_code == 401
    right = await token(client, "admin", ADMIN_PW)
    assert right.status_code == 429, right.text
    assert "too many failed logins" in right.json()["error"]
    assert int(right.headers["retry-after"]) == 900
    assert "access_token" not in right.text
    # Other users (from the same address) still log in.
    assert (await token(client, "olga", "olga-password-123")).status_code == 200
    client.clock.now += 600
    blocked = await token(client, "admin", ADMIN_PW)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) == 300
    client.clock.now += 301
    assert (await token(client, "admin", ADMIN_PW)).status_code == 200


async def test_a_successful_login_resets_the_username_count(client: Client) -> None:
    for _ in range(4):
        assert (await token(client, "admin", "guess")).status_code == 401
    assert (await token(client, "admin", ADMIN_PW)).status_code == 200
    for _ in range(4):
        assert (await token(client, "admin", "guess")).status_code == 401
    assert (await token(client, "admin", ADMIN_PW)).status_code == 200


async def test_one_address_spraying_many_usernames_is_throttled(client: Client) -> None:
    for i in range(20):
        assert (await token(client, f"nobody{i}", "guess")).status_code == 401
    r = await token(client, "olga", "olga-password-123")
    assert r.status_code == 429 and "retry-after" in r.headers


async def ui_login(c: Client, username: str, password: str) -> httpx.Response:
    page = await c.http.get("/login")
    form_token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert form_token
    return await c.http.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "login_csrf": form_token.group(1),
            "next": "/",
        },
    )


async def test_ui_login_form_is_throttled_with_a_readable_page(client: Client) -> None:
    for _ in range(5):
        r = await ui_login(client, "admin", "guess")
        assert r.status_code == 303 and "error=invalid" in r.headers["location"]
    r = await ui_login(client, "admin", ADMIN_PW)
    assert r.status_code == 429 and r.headers["retry-after"] == "900"
    assert "Login paused" in r.text and "try again in 15 minutes" in r.text
    assert "tw_session" not in r.headers.get("set-cookie", "")
    # The API shares the count: the same user is refused there too.
    assert (await token(client, "admin", ADMIN_PW)).status_code == 429
    client.clock.now += 901
    ok = await ui_login(client, "admin", ADMIN_PW)
    assert ok.status_code == 303 and "tw_session" in ok.headers["set-cookie"]


def test_limiter_forgets_old_failures_and_bounds_its_memory() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(max_per_user=2, max_per_ip=100, window_s=60, max_keys=10, clock=clock)
    limiter.failed("Admin", "127.0.0.1")
    clock.now += 30
    limiter.failed("admin ", "127.0.0.1")
    assert limiter.retry_after("ADMIN", None) == 30  # usernames count case-insensitively
    clock.now += 31
    assert limiter.retry_after("admin", "127.0.0.1") is None
    for i in range(50):
        limiter.failed(f"user{i}", f"127.0.1.{i}")
    assert len(limiter._failures) <= 10 + 2
