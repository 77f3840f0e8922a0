"""SNMP secrets sealed at rest and on the bus: the api seals, only the poller opens; keys rotate.

A printer added through the REST API with a private community and one with SNMPv3 keys: the
database rows, the outbox, every event in the stream and the poller's KV bucket hold them sealed,
and the poller still polls the HP LaserJet recording with the community it opened.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from tonerwatch.services import service_module
from tonerwatch_api.db.models import OutboxEvent, Printer
from tonerwatch_api.db.sealed import reseal_all
from tonerwatch_api.db.tx import ensure_default_site, upgrade
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.sealing import (
    PREFIX,
    Sealer,
    SealingError,
    is_sealed,
    open_credentials,
    seal_credentials,
)
from tonerwatch_shared.settings import CommonSettings, SettingsError, load_settings
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.storage import make_engine
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import delete_streams, eventually

KEY_2025 = "k2025-" + "a" * 40
KEY_2026 = "k2026-" + "b" * 40
STRANGER = "stranger-" + "c" * 40
# The snmpsim recording of an HP LaserJet Pro M252dw answers to this community.
HP_COMMUNITY = "jetdirect_m252dw"
V3_AUTH = "auth-passphrase-of-the-ricoh"
V3_PRIV = "priv-passphrase-of-the-ricoh"
ADMIN_PW = "sealed-admin-password"


def test_a_sealed_value_opens_only_with_its_key_or_a_previous_one() -> None:
    old, new = Sealer(KEY_2025), Sealer(KEY_2026, [KEY_2025])
    sealed = old.seal(HP_COMMUNITY)
    assert is_sealed(sealed) and HP_COMMUNITY not in sealed
    assert old.seal(HP_COMMUNITY) != sealed, "a fresh nonce each time"
    assert new.open(sealed) == HP_COMMUNITY
    assert not new.is_current(sealed)
    rotated = new.reseal(sealed)
    assert new.is_current(rotated) and Sealer(KEY_2026).open(rotated) == HP_COMMUNITY
    with pytest.raises(SealingError, match="TONERWATCH_PREVIOUS_SECRET_KEYS"):
        Sealer(STRANGER).open(sealed)
    with pytest.raises(SealingError, match="TONERWATCH_SECRET_KEY is not set"):
        Sealer(None).open(sealed)
    # Legacy plaintext opens as itself; without a key nothing is sealed.
    assert new.open(HP_COMMUNITY) == HP_COMMUNITY
    assert Sealer(None).seal(HP_COMMUNITY) == HP_COMMUNITY
    with pytest.raises(ValueError, match="32"):
        Sealer("too-short")


def test_credentials_seal_their_secrets_but_not_the_public_community() -> None:
    sealer = Sealer(KEY_2026)
    public = ev.SnmpCredentials()
    assert seal_credentials(sealer, public) == public
    v3 = ev.SnmpCredentials(
        version="3",
        user="tonerwatch",
        auth_protocol="SHA256",
        auth_key=V3_AUTH,
        priv_protocol="AES",
        priv_key=V3_PRIV,
    )
    sealed = seal_credentials(sealer, v3)
    assert sealed.user == "tonerwatch" and sealed.community == "public"
    assert is_sealed(sealed.auth_key) and is_sealed(sealed.priv_key)
    assert open_credentials(sealer, sealed) == v3
    assert V3_AUTH not in sealed.model_dump_json()


def test_the_keys_come_from_settings_and_never_show(tmp_path: Path) -> None:
    (tmp_path / "tonerwatch_secret_key").write_text(KEY_2026)
    settings = load_settings(
        CommonSettings, secrets_dir=tmp_path, previous_secret_keys=f"{KEY_2025}, {STRANGER}"
    )
    assert settings.secret_key == KEY_2026
    assert settings.previous_secret_keys == [KEY_2025, STRANGER]
    assert KEY_2026 not in repr(settings) and KEY_2025 not in repr(settings)
    with pytest.raises(SettingsError, match="TONERWATCH_SECRET_KEY"):
        load_settings(CommonSettings, secret_key="short")
    with pytest.raises(SettingsError, match="TONERWATCH_PREVIOUS_SECRET_KEYS"):
        load_settings(CommonSettings, previous_secret_keys="short")


def _plain_rows(engine_url: str) -> str:
    """Return every stored printer credential and outbox payload as one text."""
    engine = make_engine(engine_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT credentials FROM printers")).all()
            outbox = conn.execute(text("SELECT payload FROM outbox")).all()
    finally:
        engine.dispose()
    return " ".join(str(r[0]) for r in [*rows, *outbox])


def test_rows_written_before_sealing_are_sealed_then_rotated_and_a_wrong_key_is_named(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'tw.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        ensure_default_site(engine, "default")
        legacy = ev.SnmpCredentials(community=HP_COMMUNITY)
        with Session(engine) as session:  # as an older release stored it: in the clear
            session.add(
                Printer(
                    id="p-hp-m252",
                    site_id="default",
                    address="127.0.0.1",
                    credentials=legacy.model_dump(),
                )
            )
            configured = ev.PrinterConfigured(
                source="api/old",
                site_id="default",
                printer_id="p-hp-m252",
                address="127.0.0.1",
                credentials=legacy,
            )
            session.add(
                OutboxEvent(event_id=str(configured.event_id), payload=configured.model_dump_json())
            )
            session.commit()
        assert HP_COMMUNITY in _plain_rows(url)

        assert reseal_all(engine, Sealer(KEY_2025)) == 2
        stored = _plain_rows(url)
        assert HP_COMMUNITY not in stored and PREFIX in stored
        assert reseal_all(engine, Sealer(KEY_2025)) == 0, "already current: nothing rewritten"

        # Rotation: the new key with the old one kept as previous re-seals every row.
        assert reseal_all(engine, Sealer(KEY_2026, [KEY_2025])) == 2
        with Session(engine) as session:
            printer = session.get(Printer, "p-hp-m252")
            assert printer is not None and printer.credentials is not None
            community = printer.credentials["community"]
        assert Sealer(KEY_2026).open(community) == HP_COMMUNITY
        with pytest.raises(SealingError):
            Sealer(KEY_2025).open(community)

        # A key the rows were not sealed with: a clear error at start, nothing overwritten.
        with pytest.raises(SealingError, match="TONERWATCH_PREVIOUS_SECRET_KEYS"):
            reseal_all(engine, Sealer(STRANGER))
        assert Sealer(KEY_2026).open(community) == HP_COMMUNITY
    finally:
        engine.dispose()


async def _stream_text(bus: Bus, stream: str) -> str:
    """Return the data of every message in a stream, joined."""
    info = await bus.js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await bus.js.get_msg(stream, seq)
        except Exception:  # deleted or purged (KV history)
            continue
        out.append((msg.data or b"").decode())
    return "\n".join(out)


async def test_the_api_seals_what_a_user_types_and_only_the_poller_opens_it(
    tmp_path: Path, nats_url: str, subjects: Subjects, snmp_agent: SnmpSimulator
) -> None:
    stop = asyncio.Event()
    db_url = f"sqlite:///{tmp_path / 'tonerwatch.db'}"
    common = {
        "nats_url": nats_url,
        "subject_root": subjects.root,
        "stream_prefix": subjects.stream_prefix,
        "nats_connect_attempts": 3,
        "secret_key": KEY_2026,
    }
    api_port = free_tcp_port()
    api = load_settings(
        service_module("api").Settings,
        database_url=db_url,
        port=api_port,
        admin_password=ADMIN_PW,
        data_dir=tmp_path / "api",
        **common,
    )
    poller = load_settings(
        service_module("poller").Settings,
        poll_timeout_s=0.5,
        data_dir=tmp_path / "poller",
        **common,
    )
    ready = {"api": asyncio.Event(), "poller": asyncio.Event()}
    tasks = [
        asyncio.create_task(service_module("api").run(api, stop=stop, ready=ready["api"])),
        asyncio.create_task(service_module("poller").run(poller, stop=stop, ready=ready["poller"])),
    ]
    bus = await Bus.connect(nats_url, subjects=subjects, name="test", attempts=3)
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(e.wait() for e in ready.values()))
        url = f"http://127.0.0.1:{api_port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            token = await client.post(
                "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PW}
            )
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            hp = await client.post(
                "/api/v1/printers",
                headers=headers,
                json={
                    "address": "127.0.0.1",
                    "port": snmp_agent.port,
                    "name": "HP LaserJet Pro M252dw",
                    "community": HP_COMMUNITY,
                    "interval_s": 30,
                },
            )
            assert hp.status_code == 201, hp.text
            ricoh = await client.post(
                "/api/v1/printers",
                headers=headers,
                json={
                    "address": "127.0.0.1",
                    "port": free_tcp_port(),
                    "name": "Ricoh IM C3000",
                    "credentials": {
                        "version": "3",
                        "user": "tonerwatch",
                        "auth_protocol": "SHA256",
                        "auth_key": V3_AUTH,
                        "priv_protocol": "AES",
                        "priv_key": V3_PRIV,
                    },
                    "interval_s": 30,
                },
            )
            assert ricoh.status_code == 201, ricoh.text

            async def hp_has_supplies() -> bool:
                body = (
                    await client.get(f"/api/v1/printers/{hp.json()['id']}", headers=headers)
                ).json()
                return bool(body.get("supplies"))

            # The poller opened the sealed community and the HP answered.
            await eventually(hp_has_supplies, timeout_s=45)

        secrets_in_clear = (HP_COMMUNITY, V3_AUTH, V3_PRIV)
        stored = _plain_rows(db_url)
        assert PREFIX in stored
        assert [s for s in secrets_in_clear if s in stored] == []
        events = await _stream_text(bus, subjects.events_stream)
        configured = [
            json.loads(line)
            for line in events.splitlines()
            if '"tonerwatch.printer_configured.v1"' in line
        ]
        assert len(configured) >= 2
        assert all(
            is_sealed(c["credentials"].get("auth_key") or c["credentials"]["community"])
            for c in configured
        )
        assert [s for s in secrets_in_clear if s in events] == []
        kv = await _stream_text(bus, f"KV_{subjects.name('POLLER_PRINTERS')}")
        assert PREFIX in kv
        assert [s for s in secrets_in_clear if s in kv] == []
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*tasks)
        await delete_streams(bus)
        await bus.drain()
