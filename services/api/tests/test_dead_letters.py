"""Dead letters visible and replayable: GET /dead-letters, POST .../{id}/replay, /metrics, Settings.

A mail consumer refuses (550) a threshold crossing for the provider's site and one for a customer's
site, and cannot read a broken message: three dead letters. Each admin sees only their own sites'
(the unreadable one only the provider), replays only those, and /metrics counts them per consumer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_admin
from tonerwatch_api.settings import Settings
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, ConsumerSpec, Poison, RetryPolicy
from tonerwatch_shared.testing.infra import eventually

from .test_ui import log_in

ADMIN_PW = "provider-admin-password"
CUSTOMER_PW = "acme-admin-password-1"
CONSUMER = "alerter-mail-test"


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(pg, bus, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


async def bearer(c: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    r = await c.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def crossed(site: str, printer: str) -> ev.ThresholdCrossed:
    return ev.ThresholdCrossed(
        source="alerter/test",
        site_id=site,
        printer_id=printer,
        alert_id=f"{printer}:1:low",
        rule="low",
        severity="warning",
        supply_index="1",
        supply_description="Black Cartridge HP W2030A",
        percent=4.0,
        threshold=10.0,
        message="Black Cartridge HP W2030A is low (4%)",
    )


async def test_dead_letters_listed_per_tenant_counted_and_replayed(
    client: httpx.AsyncClient, bus: Bus, pg: Engine
) -> None:
    provider = await bearer(client, "admin", ADMIN_PW)
    r = await client.post(
        "/api/v1/tenants",
        headers=provider,
        json={
            "id": "acme",
            "name": "Acme",
            "site": {"id": "acme-hq"},
            "admin": {"username": "it@acme", "password": CUSTOMER_PW},
        },
    )
    assert r.status_code == 201, r.text
    customer = await bearer(client, "it@acme", CUSTOMER_PW)

    bus.retry = RetryPolicy(base_s=0.02, cap_s=0.1, poison_after=3, ack_wait_s=5.0)
    mailbox_fixed = False
    mailed: list[str] = []

    async def mail(event: ev.Event, _msg: object) -> None:
        assert isinstance(event, ev.ThresholdCrossed)
        if not mailbox_fixed:
            raise Poison("550 5.1.1 mailbox unavailable")
        mailed.append(event.printer_id)

    ours, theirs = crossed("default", "p-hp479"), crossed("acme-hq", "p-acme-konica")
    await bus.publish(ours)
    await bus.publish(theirs)
    await bus.js.publish(bus.subjects.subject("acme-hq", "alert.crossed", "p-x"), b"{not json")
    stop = asyncio.Event()
    spec = ConsumerSpec(durable=CONSUMER, filter_subject=bus.subjects.area("alert"), ordered=True)
    task = asyncio.create_task(bus.consume(spec, mail, stop=stop))
    try:

        async def three() -> bool:
            return len(await bus.dead_letters()) == 3

        await eventually(three, timeout_s=15)

        # The provider at home: its own site's letter; the customer's unreadable one has a known
        # site (acme-hq, from the subject) so it is the customer's, not the provider's.
        mine = (await client.get("/api/v1/dead-letters", headers=provider)).json()["items"]
        assert [(d["site_id"], d["event_type"]) for d in mine] == [
            ("default", "tonerwatch.threshold_crossed.v1")
        ]
        (letter,) = mine
        assert letter["consumer"] == CONSUMER and letter["event_id"] == str(ours.event_id)
        assert "550 5.1.1" in letter["error"] and letter["deliveries"] == 1
        assert letter["subject"] == ours.subject(bus.subjects) and letter["dead_at"]

        acme = (await client.get("/api/v1/dead-letters", headers=customer)).json()["items"]
        assert [(d["site_id"], d["event_type"]) for d in acme] == [
            ("acme-hq", None),
            ("acme-hq", "tonerwatch.threshold_crossed.v1"),
        ]
        assert "unreadable" in acme[0]["error"]
        # The provider acting in acme sees what acme's admin sees.
        acting = {**provider, "X-TonerWatch-Tenant": "acme"}
        seen = (await client.get("/api/v1/dead-letters", headers=acting)).json()["items"]
        assert [d["id"] for d in seen] == [d["id"] for d in acme]

        # Gauge per consumer for Prometheus.
        metrics = (await client.get("/metrics")).text
        assert f'tonerwatch_dead_letters{{consumer="{CONSUMER}"}} 3' in metrics

        # Another tenant's letter cannot be replayed (nor known to exist).
        r = await client.post(f"/api/v1/dead-letters/{letter['id']}/replay", headers=customer)
        assert r.status_code == 404, r.text
        r = await client.post("/api/v1/dead-letters/999999/replay", headers=customer)
        assert r.status_code == 404
        # A viewer or operator is refused.
        r = await client.post(
            "/api/v1/users",
            headers=customer,
            json={"username": "desk@acme", "password": "desk-password-123", "role": "operator"},
        )
        assert r.status_code == 201, r.text
        desk = await bearer(client, "desk@acme", "desk-password-123")
        assert (await client.get("/api/v1/dead-letters", headers=desk)).status_code == 403

        # The mailbox is fixed: acme's admin replays its crossing; it is mailed and removed.
        mailbox_fixed = True
        theirs_letter = acme[1]
        r = await client.post(
            f"/api/v1/dead-letters/{theirs_letter['id']}/replay", headers=customer
        )
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        assert body == {"id": theirs_letter["id"], "consumer": CONSUMER, "replay_requested": True}

        async def replayed() -> bool:
            left = (await client.get("/api/v1/dead-letters", headers=customer)).json()["items"]
            return mailed == ["p-acme-konica"] and [d["id"] for d in left] == [acme[0]["id"]]

        await eventually(replayed, timeout_s=15)
        metrics = (await client.get("/metrics")).text
        assert f'tonerwatch_dead_letters{{consumer="{CONSUMER}"}} 2' in metrics
        audit = (await client.get("/api/v1/audit", headers=customer)).json()["items"]
        assert any(a["action"] == "dead_letter.replay" for a in audit)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_settings_page_lists_dead_letters_with_a_replay_button(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    bus.retry = RetryPolicy(base_s=0.02, cap_s=0.1, poison_after=3, ack_wait_s=5.0)

    async def refuse(event: ev.Event, _msg: object) -> None:
        raise Poison("550 5.1.1 mailbox unavailable")

    await bus.publish(crossed("default", "p-hp479"))
    stop = asyncio.Event()
    spec = ConsumerSpec(durable=CONSUMER, filter_subject=bus.subjects.area("alert"))
    task = asyncio.create_task(bus.consume(spec, refuse, stop=stop))
    try:

        async def one() -> bool:
            return len(await bus.dead_letters()) == 1

        await eventually(one, timeout_s=15)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    (letter,) = await bus.dead_letters()
    await log_in(client, ADMIN_PW)
    html = (await client.get("/settings")).text
    section = html[
        html.index('id="dead-letters"') : html.index("</section>", html.index('id="dead-letters"'))
    ]
    row = section[section.index(f'data-dead-letter="{letter.seq}"') :].split("</tr>")[0]
    assert "tonerwatch.threshold_crossed.v1" in row and "550 5.1.1" in row
    assert re.search(rf'data-api="POST /api/v1/dead-letters/{letter.seq}/replay"', row)
