"""A device claiming a known printer's serial elsewhere does not take it over: a person decides.

Before: a clone answering discovery with an existing printer's serial moved that printer to the
clone's address, and the poller sent the user's community there.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tonerwatch_api.app import create_app
from tonerwatch_api.db.models import AuditEntry, OutboxEvent, Printer
from tonerwatch_api.db.tx import ensure_admin
from tonerwatch_api.projections.projector import apply_now
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.events import PrinterConfigured, PrinterFound, SnmpCredentials
from tonerwatch_shared.printer.model import PrinterIdentity

from .test_ui import log_in

ADMIN_PW = "correct horse battery staple"
M404 = PrinterIdentity(vendor="HP", model="LaserJet Pro M404dn", serial="PHBQ404404")


@pytest.fixture
async def client(pg: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    ensure_admin(pg, ADMIN_PW)
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(pg, bus, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        r = await c.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PW})
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield c


def _found(address: str, **kw: object) -> PrinterFound:
    fields: dict[str, object] = {
        "source": "discovery",
        "site_id": "default",
        "address": address,
        "identity": M404,
        "credentials": SnmpCredentials(community="public"),
    }
    fields.update(kw)
    return PrinterFound(**fields)  # type: ignore[arg-type]


def _queued_addresses(pg: Engine) -> list[str]:
    """Addresses of every PrinterConfigured queued so far (published or not)."""
    with Session(pg) as s:
        payloads = s.exec(select(OutboxEvent.payload)).all()
    out = []
    for payload in payloads:
        event = PrinterConfigured.model_validate_json(payload) if "configured" in payload else None
        if event is not None:
            out.append(event.address)
    return out


async def _add_m404(client: httpx.AsyncClient, pg: Engine, address: str) -> str:
    r = await client.post(
        "/api/v1/printers", json={"address": address, "community": "finance-secret"}
    )
    assert r.status_code == 201, r.text
    pid = str(r.json()["id"])
    # Its first sweep at its own address tells the api its serial.
    apply_now(pg, _found(address))
    return pid


async def test_clone_of_a_printer_a_person_added_is_a_proposal_confirmed_by_an_operator(
    client: httpx.AsyncClient, pg: Engine, bus: Bus
) -> None:
    pid = await _add_m404(client, pg, "127.0.0.71")
    assert apply_now(pg, _found("127.0.0.99", port=1161)) == "applied"

    shown = (await client.get(f"/api/v1/printers/{pid}")).json()
    assert (shown["address"], shown["proposed_address"], shown["proposed_port"]) == (
        "127.0.0.71",
        "127.0.0.99",
        1161,
    )
    # The community a person gave is never queued for the claimant's address.
    assert "127.0.0.99" not in _queued_addresses(pg)

    r = await client.post(f"/api/v1/printers/{pid}/address/confirm")
    assert r.status_code == 200, r.text
    assert (r.json()["address"], r.json()["port"], r.json()["proposed_address"]) == (
        "127.0.0.99",
        1161,
        None,
    )
    told = await wait_for_event(
        bus,
        bus.subjects.filter("printer.configured"),
        lambda e: isinstance(e, PrinterConfigured) and e.address == "127.0.0.99",
        timeout_s=10,
    )
    assert isinstance(told, PrinterConfigured) and told.credentials.community == "finance-secret"
    with Session(pg) as s:
        actions = s.exec(select(AuditEntry.action).where(AuditEntry.target == pid)).all()
    assert "printer.address.confirm" in actions
    # Nothing left to confirm.
    assert (await client.post(f"/api/v1/printers/{pid}/address/confirm")).status_code == 409


async def test_dismissed_proposal_leaves_the_printer_where_it_is(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    pid = await _add_m404(client, pg, "127.0.0.72")
    apply_now(pg, _found("127.0.0.98"))
    r = await client.delete(f"/api/v1/printers/{pid}/address/proposal")
    assert r.status_code == 200, r.text
    assert (r.json()["address"], r.json()["proposed_address"]) == ("127.0.0.72", None)
    assert (await client.delete(f"/api/v1/printers/{pid}/address/proposal")).status_code == 409
    # The clone answers the next sweep again: proposed again, still not moved.
    apply_now(pg, _found("127.0.0.98", event_id=uuid.uuid4()))
    with Session(pg) as s:
        printer = s.get(Printer, pid)
        assert printer is not None
        assert (printer.address, printer.proposed_address) == ("127.0.0.72", "127.0.0.98")


async def test_discovered_printer_a_person_edited_is_never_moved_by_discovery(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    apply_now(pg, _found("127.0.0.73"))
    with Session(pg) as s:
        printer = s.exec(select(Printer).where(Printer.serial == M404.serial)).one()
        pid = printer.id
        assert printer.origin == "discovered" and not printer.person_edited
    r = await client.patch(f"/api/v1/printers/{pid}", json={"community": "set-by-admin"})
    assert r.status_code == 200, r.text
    apply_now(pg, _found("127.0.0.97", event_id=uuid.uuid4()))
    with Session(pg) as s:
        printer = s.get(Printer, pid)
        assert printer is not None and printer.person_edited
        assert (printer.address, printer.proposed_address) == ("127.0.0.73", "127.0.0.97")
    assert "127.0.0.97" not in _queued_addresses(pg)


async def test_address_edited_by_hand_clears_the_proposal(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    pid = await _add_m404(client, pg, "127.0.0.74")
    apply_now(pg, _found("127.0.0.96"))
    r = await client.patch(f"/api/v1/printers/{pid}", json={"address": "127.0.0.75"})
    assert r.status_code == 200, r.text
    assert (r.json()["address"], r.json()["proposed_address"]) == ("127.0.0.75", None)


async def test_discovered_printer_nobody_edited_still_follows_its_serial_after_dhcp(
    pg: Engine,
) -> None:
    apply_now(pg, _found("127.0.0.76"))
    apply_now(pg, _found("127.0.0.95", event_id=uuid.uuid4()))
    with Session(pg) as s:
        printer = s.exec(select(Printer).where(Printer.serial == M404.serial)).one()
    assert (printer.address, printer.proposed_address) == ("127.0.0.95", None)


async def test_printer_page_shows_the_claim_with_move_and_dismiss_buttons(
    client: httpx.AsyncClient, pg: Engine
) -> None:
    pid = await _add_m404(client, pg, "127.0.0.77")
    apply_now(pg, _found("127.0.0.94"))
    del client.headers["Authorization"]
    assert (await log_in(client, ADMIN_PW)).status_code == 303
    page = (await client.get(f"/printers/{pid}")).text
    assert 'id="address-proposal"' in page and "127.0.0.94:161" in page
    assert f'data-api="POST /api/v1/printers/{pid}/address/confirm"' in page
    assert f'data-api="DELETE /api/v1/printers/{pid}/address/proposal"' in page
