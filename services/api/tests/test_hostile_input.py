"""Hostile input at the API's door: NUL and invalid text, malformed JSON, oversized bodies and
queries, ids past int64, control characters in mail addresses, the last admin under concurrent
demotions, a live stream outliving its user, and login throttling that cannot lock a user out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import User
from tonerwatch_api.db.tx import create_user, ensure_admin, in_tx, run_tx
from tonerwatch_api.deps import AppState
from tonerwatch_api.domain.access import authenticate
from tonerwatch_api.routes.events import alert_frames
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus

ADMIN_PW = "hostile-admin-password"
TOKEN_URL = "/api/v1/auth/token"
BIG = 1 << 63  # past int64, let alone the INTEGER ids
ROW_ID_MAX = (1 << 31) - 1


def settings(**over: Any) -> Settings:
    return Settings(session_secret="hostile", admin_password=ADMIN_PW, cookie_secure=False, **over)


@pytest.fixture
async def app(db: Engine, bus: Bus) -> FastAPI:
    ensure_admin(db, ADMIN_PW)
    return create_app(db, bus, settings(max_body_bytes=64 << 10))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        yield c


async def bearer(
    client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PW
) -> dict[str, str]:
    r = await client.post(TOKEN_URL, data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def field_of(r: httpx.Response) -> tuple[int, str]:
    body = r.json()
    return r.status_code, body["fields"][0]["field"]


async def test_nul_in_a_json_field_is_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    h = await bearer(client)
    r = await client.post("/api/v1/sites", headers=h, json={"id": "hq", "name": "Head\x00Office"})
    assert field_of(r) == (422, "name"), r.text
    assert "NUL" in r.json()["error"]
    # Nested: a recipient of a site's alert settings.
    r = await client.put(
        "/api/v1/sites/default/alert-settings",
        headers=h,
        json={"recipients": ["ok@example.org", "x\x00@example.org"]},
    )
    assert field_of(r) == (422, "recipients.1"), r.text
    # A lone surrogate (valid JSON, not storable text) likewise.
    raw = b'{"id": "hq", "name": "\\ud800"}'
    r = await client.post(
        "/api/v1/sites", headers={**h, "Content-Type": "application/json"}, content=raw
    )
    assert field_of(r) == (422, "name"), r.text


async def test_nul_in_the_unauthenticated_login_form_query_and_path_is_refused(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(TOKEN_URL, data={"username": "ad\x00min", "password": "x"})
    assert field_of(r) == (422, "username"), r.text
    h = await bearer(client)
    r = await client.get("/api/v1/printers", headers=h, params={"q": "hp\x00"})
    assert field_of(r) == (422, "q"), r.text
    r = await client.get("/api/v1/sites/a%00b", headers=h)
    assert field_of(r) == (422, "path"), r.text
    r = await client.get("/api/v1/printers?q=%ff%fe", headers=h)
    assert field_of(r) == (422, "q"), r.text


async def test_malformed_json_nan_and_non_utf8_bodies_are_a_422_on_body(
    client: httpx.AsyncClient,
) -> None:
    h = {**(await bearer(client)), "Content-Type": "application/json"}
    for raw, words in (
        (b'{"id": "hq", ', "malformed JSON"),
        (b'{"id": "hq", "poll_interval_s": NaN}', "NaN is not a JSON number"),
        (b'{"id": "hq", "poll_interval_s": Infinity}', "Infinity is not a JSON number"),
        (b'{"id": "h\xffq"}', "not UTF-8"),
    ):
        r = await client.post("/api/v1/sites", headers=h, content=raw)
        assert field_of(r) == (422, "body"), r.text
        assert words in r.json()["error"], r.text


async def test_oversized_bodies_and_query_strings_are_refused_with_json(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    r = await client.post("/api/v1/sites", headers=h, json={"id": "hq", "name": "x" * (70 << 10)})
    assert r.status_code == 413 and r.json()["fields"][0]["field"] == "body", r.text

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the size is counted as the body arrives.
        for _ in range(80):
            yield b"x" * 1024

    r = await client.post("/api/v1/sites", headers=h, content=chunks())
    assert r.status_code == 413, r.text
    r = await client.get("/api/v1/printers", headers=h, params={"q": "x" * 9000})
    assert r.status_code == 414 and r.headers["content-type"] == "application/json", r.text


async def test_ids_past_the_id_columns_are_a_422_naming_the_id_never_a_500(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    for method, path, body in (
        ("GET", f"/api/v1/users/{BIG}", None),
        ("PATCH", f"/api/v1/users/{BIG}", {"role": "viewer"}),
        ("DELETE", f"/api/v1/users/{BIG}", None),
        ("GET", f"/api/v1/users/{BIG}/alerting", None),
        ("GET", f"/api/v1/groups/{BIG}", None),
        ("DELETE", f"/api/v1/groups/{BIG}", None),
        ("DELETE", f"/api/v1/tokens/{BIG}", None),
        ("POST", f"/api/v1/alerts/{BIG}/acknowledge", None),
    ):
        r = await client.request(method, path, headers=h, json=body)
        assert r.status_code == 422, (method, path, r.text)
        assert r.json()["fields"][0]["location"] == "path", r.text
    r = await client.get("/api/v1/printers", headers=h, params={"group": str(BIG)})
    assert field_of(r) == (422, "group.0"), r.text
    r = await client.put("/api/v1/users/1/alerting", headers=h, json={"responsible_groups": [BIG]})
    assert field_of(r) == (422, "responsible_groups.0"), r.text
    # Past the INTEGER column is refused as well; the largest id is a plain 404.
    assert (await client.get(f"/api/v1/users/{ROW_ID_MAX + 1}", headers=h)).status_code == 422
    assert (await client.get(f"/api/v1/users/{ROW_ID_MAX}", headers=h)).status_code == 404


@pytest.mark.parametrize(
    "address",
    ["ops@example.org\r\nBcc: all@example.org", "ops\x01@example.org", "ops@exa\x7fmple.org"],
)
async def test_control_characters_in_mail_recipients_are_refused_at_the_door(
    client: httpx.AsyncClient, address: str
) -> None:
    h = await bearer(client)
    r = await client.put(
        "/api/v1/sites/default/alert-settings", headers=h, json={"recipients": [address]}
    )
    assert field_of(r) == (422, "recipients.0"), r.text
    assert "control characters" in r.json()["error"]
    r = await client.post(
        "/api/v1/users",
        headers=h,
        json={"username": "mel", "password": "mel-password-1", "email": address},
    )
    assert field_of(r) == (422, "email"), r.text


async def test_two_admins_demoting_each_other_at_once_always_leave_one(
    pg: Engine, bus: Bus
) -> None:
    ensure_admin(pg, ADMIN_PW)
    app = create_app(pg, bus, settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:
        for n in range(10):
            # Each round in a tenant of its own with exactly two admins.
            tenant, names = f"round{n}", (f"ann{n}", f"bob{n}")
            for name in names:
                in_tx(
                    pg,
                    lambda s, name=name, tenant=tenant: create_user(
                        s, name, f"{name}-password", "admin", tenant
                    ),
                )
            heads = [await bearer(c, name, f"{name}-password") for name in names]
            ids = [await user_id(pg, name) for name in names]
            answers = await asyncio.gather(
                c.patch(f"/api/v1/users/{ids[1]}", headers=heads[0], json={"role": "viewer"}),
                c.patch(f"/api/v1/users/{ids[0]}", headers=heads[1], json={"role": "viewer"}),
            )
            codes = sorted(r.status_code for r in answers)
            # The loser's token may already be gone with its role: 403 or 409, never both 200.
            assert codes[0] == 200 and codes[1] in (403, 409), [r.text for r in answers]
            assert len(await run_tx(pg, lambda s, t=tenant: active_admins(s, t))) == 1


async def user_id(db: Engine, username: str) -> int:
    def find(s: Session) -> int:
        return s.exec(select(User.id).where(User.username == username)).one() or 0

    return await run_tx(db, find)


def active_admins(s: Session, tenant_id: str) -> list[str]:
    rows = s.exec(
        select(User.username).where(
            User.tenant_id == tenant_id,
            col(User.role).in_(("admin", "provider")),
            col(User.disabled).is_(False),
        )
    ).all()
    return list(rows)


class NeverGone:
    """Stands in for the request of an SSE client that stays."""

    async def is_disconnected(self) -> bool:
        return False


async def test_a_disabled_users_live_stream_ends_with_an_end_frame(
    app: FastAPI, client: httpx.AsyncClient, db: Engine
) -> None:
    in_tx(db, lambda s: create_user(s, "vera", "vera-password-1", "viewer"))
    h = await bearer(client, "vera", "vera-password-1")
    token = h["Authorization"].removeprefix("Bearer ")
    who = await run_tx(db, lambda s: authenticate(s, token, datetime.now(UTC)))
    assert who is not None
    st = app.state.tw
    assert isinstance(st, AppState)
    frames = alert_frames(NeverGone(), st, who, keepalive_s=0.2)  # type: ignore[arg-type]
    assert (await anext(frames)).startswith("retry:")
    assert (await asyncio.wait_for(anext(frames), 5)) == ": keep-alive\n\n"
    admin = await bearer(client)
    r = await client.patch(
        f"/api/v1/users/{await user_id(db, 'vera')}", headers=admin, json={"disabled": True}
    )
    assert r.status_code == 200, r.text
    end = await asyncio.wait_for(anext(frames), 5)
    assert end.startswith("event: end\n")
    # The token was revoked on disabling: either reason ends the stream.
    assert json.loads(end.split("data: ", 1)[1])["reason"] in ("user disabled", "logged out")
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(frames), 5)


async def test_wrong_guesses_from_one_address_do_not_lock_the_user_out_elsewhere(
    pg: Engine, bus: Bus
) -> None:
    ensure_admin(pg, ADMIN_PW)
    app = create_app(pg, bus, settings(login_backoff_s=0))

    def at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://tw.test")

    async with at("127.0.0.66") as attacker, at("127.0.0.7") as office:
        for i in range(5):
            r = await attacker.post(TOKEN_URL, data={"username": "admin", "password": f"g{i}"})
            assert r.status_code == 401
        r = await attacker.post(TOKEN_URL, data={"username": "admin", "password": ADMIN_PW})
        assert r.status_code == 429 and "retry-after" in r.headers
        # The real admin, elsewhere, is not locked out.
        assert (
            await office.post(TOKEN_URL, data={"username": "admin", "password": ADMIN_PW})
        ).status_code == 200
        # Spraying other usernames from the attacker's address hits the address limit (20).
        codes = [
            (
                await attacker.post(TOKEN_URL, data={"username": f"u{i}", "password": "x"})
            ).status_code
            for i in range(16)
        ]
        assert codes[:15] == [401] * 15 and codes[15] == 429, codes


async def test_a_failed_login_makes_the_pair_wait_with_doubling_back_off(
    pg: Engine, bus: Bus
) -> None:
    ensure_admin(pg, ADMIN_PW)
    app = create_app(pg, bus, settings(login_backoff_s=10))
    st = app.state.tw
    assert isinstance(st, AppState)
    now = [1000.0]
    st.login_limiter.clock = lambda: now[0]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tw.test") as c:

        async def guess(password: str = "wrong") -> httpx.Response:
            return await c.post(TOKEN_URL, data={"username": "admin", "password": password})

        # One typo is free: the second try follows at once.
        assert (await guess()).status_code == 401
        assert (await guess()).status_code == 401
        wait = await guess(ADMIN_PW)
        assert wait.status_code == 429 and wait.headers["retry-after"] == "10", wait.text
        assert "try again in 10 seconds" in wait.json()["error"]
        now[0] += 10
        assert (await guess()).status_code == 401
        now[0] += 10
        assert (await guess()).headers["retry-after"] == "10"  # 20 s after the third failure
        now[0] += 10
        # Another user from the same address is not held back by admin's back-off.
        in_tx(pg, lambda s: create_user(s, "olga", "olga-password-1", "operator"))
        r = await c.post(TOKEN_URL, data={"username": "olga", "password": "olga-password-1"})
        assert r.status_code == 200
        assert (await guess(ADMIN_PW)).status_code == 200


async def test_an_address_that_is_neither_ip_nor_host_name_is_a_422_on_address(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    for bad in (
        "999.1.1.1",
        "1.2.3",
        "0x7f.1",
        "printer..acme.example",
        "-lead.example",
        "fe80::zz",
    ):
        r = await client.post("/api/v1/printers", headers=h, json={"address": bad})
        assert field_of(r) == (422, "address"), (bad, r.text)
    # Plausible names and every IP form pass (and are never looked up: .invalid cannot resolve).
    for good in ("192.0.2.31", "printer-7.invalid", "PRN_LOBBY.invalid.", "2001:db8::31"):
        r = await client.post("/api/v1/printers", headers=h, json={"address": good})
        assert r.status_code == 201, (good, r.text)
    pid = r.json()["id"]
    r = await client.patch(f"/api/v1/printers/{pid}", headers=h, json={"address": "256.0.0.1"})
    assert field_of(r) == (422, "address"), r.text


async def test_snmpv3_keys_shorter_than_eight_characters_are_a_422_naming_the_key(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    v3 = {"version": "3", "user": "tonerwatch", "auth_protocol": "SHA256", "auth_key": "authpass"}
    r = await client.post(
        "/api/v1/printers",
        headers=h,
        json={"address": "192.0.2.41", "credentials": {**v3, "auth_key": "short"}},
    )
    assert field_of(r)[0] == 422 and "auth_key" in r.text and "8 characters" in r.text, r.text
    r = await client.post(
        "/api/v1/printers",
        headers=h,
        json={
            "address": "192.0.2.41",
            "credentials": {**v3, "priv_protocol": "AES", "priv_key": "1234567"},
        },
    )
    assert field_of(r)[0] == 422 and "priv_key" in r.text, r.text
    r = await client.post(
        "/api/v1/printers",
        headers=h,
        json={"address": "192.0.2.41", "credentials": {"version": "3"}},
    )
    assert field_of(r)[0] == 422 and "user" in r.text, r.text
    r = await client.post(
        "/api/v1/printers", headers=h, json={"address": "192.0.2.41", "credentials": v3}
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = await client.patch(
        f"/api/v1/printers/{pid}", headers=h, json={"snmp": {**v3, "auth_key": "1234"}}
    )
    assert field_of(r) == (422, "snmp"), r.text
    assert "auth_key" in r.json()["fields"][0]["message"], r.text
    r = await client.post(
        "/api/v1/discovery/jobs",
        headers=h,
        json={"targets": ["192.0.2.0/30"], "credentials": [{**v3, "auth_key": "x"}]},
    )
    assert field_of(r)[0] == 422 and "auth_key" in r.text, r.text


async def test_discovery_ranges_past_cidr_or_the_size_limit_are_a_422_on_targets(
    client: httpx.AsyncClient,
) -> None:
    h = await bearer(client)
    for bad in (
        "192.0.2.0/33",
        "0.0.0.0/0",
        "10.0.0.0/8",
        "999.1.1.0/24",
        "1.2.3",
        "2001:db8::/64",
    ):
        r = await client.post("/api/v1/discovery/jobs", headers=h, json={"targets": [bad]})
        assert field_of(r) == (422, "targets"), (bad, r.text)
    # Two blocks, each under the limit, over it together.
    r = await client.post(
        "/api/v1/discovery/jobs", headers=h, json={"targets": ["10.0.0.0/12", "10.16.0.0/12"]}
    )
    assert field_of(r) == (422, "targets"), r.text
    assert "limit" in r.json()["fields"][0]["message"], r.text


async def test_printers_stored_before_the_checks_still_read_and_edit(
    client: httpx.AsyncClient, db: Engine
) -> None:
    """Rows that today's checks would refuse (an old 999.1.1.1, a 4-character v3 key) still list,
    show and take edits of other fields."""
    from tonerwatch_api.db.models import Printer

    h = await bearer(client)
    r = await client.post("/api/v1/printers", headers=h, json={"address": "192.0.2.51"})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    with Session(db) as s:
        row = s.get(Printer, pid)
        assert row is not None
        row.address = "999.1.1.1"
        row.credentials = {
            "version": "3",
            "user": "old",
            "auth_protocol": "MD5",
            "auth_key": "abcd",
        }
        s.add(row)
        s.commit()
    r = await client.get(f"/api/v1/printers/{pid}", headers=h)
    assert r.status_code == 200 and r.json()["address"] == "999.1.1.1", r.text
    r = await client.get("/api/v1/printers", headers=h)
    assert r.status_code == 200 and pid in [p["id"] for p in r.json()["items"]], r.text
    r = await client.patch(f"/api/v1/printers/{pid}", headers=h, json={"name": "Kept"})
    assert r.status_code == 200 and r.json()["name"] == "Kept", r.text


async def test_a_request_uvicorn_cannot_parse_is_answered_in_json_not_plain_text(
    app: FastAPI,
) -> None:
    """A 200 kB query string passes the parser's limit: the 400 comes from the server, in JSON."""
    import socket

    import uvicorn

    from tonerwatch_api.service import uvicorn_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, settings(host="127.0.0.1", port=port)))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        for raw in (
            b"GET /api/v1/printers?q=" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: tw\r\n\r\n",
            b"\x00\x01NOT HTTP\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            await writer.drain()
            head, _, body = (await asyncio.wait_for(reader.read(), 10)).partition(b"\r\n\r\n")
            writer.close()
            assert head.startswith(b"HTTP/1.1 400"), head
            assert b"content-type: application/json" in head.lower(), head
            error = json.loads(body)
            assert error["status"] == 400 and error["fields"][0]["field"] == "request", error
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
