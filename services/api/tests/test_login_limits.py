"""Failed logins are throttled per (username, address) and per address, on the token endpoint and
the UI (test_hostile_input: back-off, and another address is never locked out)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.logins import LoginFailure
from tonerwatch_api.db.tx import create_user, ensure_admin, in_tx
from tonerwatch_api.deps import AppState
from tonerwatch_api.domain.login_limits import LoginLimiter
from tonerwatch_api.settings import Settings
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
    # No back-off here: these tests count failures at one instant of a fake clock.
    settings = Settings(session_secret="limits", cookie_secure=False, login_backoff_s=0)
    app = create_app(pg, bus, settings)
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


async def test_limiter_forgets_old_failures_and_counts_usernames_case_insensitively(
    db: Engine,
) -> None:
    clock = FakeClock()
    limiter = LoginLimiter(db, max_per_user=2, max_per_ip=100, window_s=60, clock=clock)
    first = await limiter.start("Admin", "127.0.0.1")
    assert first.retry_after is None
    await limiter.failed(first)
    clock.now += 30
    await limiter.failed(await limiter.start("admin ", "127.0.0.1"))
    refused = await limiter.start("ADMIN", "127.0.0.1")
    assert refused.retry_after == 30
    clock.now += 31
    assert (await limiter.start("admin", "127.0.0.1")).retry_after is None
    # Expired rows are swept by later attempts: the table holds only the window.
    clock.now += 61
    await limiter.start("someone", None)
    with Session(db) as s:
        assert [f.key for f in s.exec(select(LoginFailure)).all()] == ["user:someone@"]


async def test_long_sprayed_usernames_are_kept_short_and_distinct(db: Engine) -> None:
    limiter = LoginLimiter(db, max_per_user=1, max_per_ip=0, clock=FakeClock())
    a, b = "x" * 500 + "a", "x" * 500 + "b"
    await limiter.failed(await limiter.start(a, None))
    assert (await limiter.start(b, None)).retry_after is None
    assert (await limiter.start(a, None)).retry_after is not None


async def test_two_replicas_share_the_count_even_in_a_parallel_burst(pg: Engine, bus: Bus) -> None:
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(session_secret="limits", cookie_secure=False, login_backoff_s=0)
    apps = [create_app(pg, bus, settings) for _ in range(2)]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://tw.test")
        for a in apps
    ]
    try:
        # 16 wrong guesses at once, half on each replica: at most 5 are ever checked.
        answers = await asyncio.gather(
            *(
                clients[i % 2].post(TOKEN_URL, data={"username": "admin", "password": f"g{i}"})
                for i in range(16)
            )
        )
        codes = sorted(r.status_code for r in answers)
        assert codes.count(401) <= 5 and set(codes) <= {401, 429}, codes
        # Then one at a time, alternating replicas: exactly 5 guesses in all were ever checked.
        checked = codes.count(401)
        for i in range(10):
            r = await clients[i % 2].post(
                TOKEN_URL, data={"username": "admin", "password": f"later{i}"}
            )
            if r.status_code == 429:
                break
            assert r.status_code == 401
            checked += 1
        assert checked == 5
        for c in clients:
            r = await c.post(TOKEN_URL, data={"username": "admin", "password": ADMIN_PW})
            assert r.status_code == 429
    finally:
        for c in clients:
            await c.aclose()
