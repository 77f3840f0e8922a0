"""Faults injected on purpose into real processes; every test counts what went in and came out.

The figures of each run are in docs/reliability.md (each test prints its own, `FIGURES ...`, with
`-s`). PostgreSQL, the SMTP server and the upstream portal are cut through TCP relays the test
controls (never the shared PostgreSQL itself); NATS, when killed, is a server of our own, with its
own store. Service processes are real (`tonerwatch serve NAME`), polling snmpsim printers on
loopback; time is compressed through the retry knobs (TONERWATCH_RETRY_CAP_S), never slept away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import FOR_HEADER, Bus
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port
from tonerwatch_shared.portal import Portal, serving
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.storage import make_engine
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import drop_streams_sync, eventually
from tonerwatch_shared.testing.relay import TcpRelay
from tonerwatch_shared.testing.tls import make_tls
from tonerwatch_shared.upstream import EVENTS_PATH

pytestmark = pytest.mark.timeout(180)

ADMIN_PW = "faults-admin-password"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    env.update(extra)
    return env


@pytest.fixture
def pg_schema(database_url: str) -> Iterator[str]:
    """Return a fresh schema on the shared PostgreSQL (dropped after)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def pg_relay(database_url: str) -> Iterator[TcpRelay]:
    """Return a relay in front of the shared PostgreSQL that the test may cut."""
    url = make_url(database_url)
    with TcpRelay(url.host or "127.0.0.1", url.port or 5432) as relay:
        yield relay


def relayed_url(database_url: str, relay: TcpRelay, schema: str) -> str:
    """Return database_url through relay, with schema as search_path."""
    url = make_url(database_url).set(host="127.0.0.1", port=relay.port)
    plain = url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
    sep = "&" if "?" in plain else "?"
    return f"{plain}{sep}options=-csearch_path%3D{schema}"


def _serve_api(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tonerwatch", "serve", "api"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=env,
    )


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None


def _wait(check: object, timeout_s: float, what: str, proc: subprocess.Popen[bytes]) -> object:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the process ended ({proc.returncode}) waiting for {what}"
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s}s")


def test_api_started_while_its_database_is_down_waits_not_ready_then_serves(
    tmp_path: Path, database_url: str, nats_url: str, pg_schema: str, pg_relay: TcpRelay
) -> None:
    """Injected: PostgreSQL unreachable at start for 20 schema checks. Out: alive, 503 naming
    the database, no traceback, no exit; ready and serving once it answers."""
    pg_relay.cut()
    port = free_tcp_port()
    tag = uuid.uuid4().hex[:8]
    log = tmp_path / "api.log"
    proc = _serve_api(
        _env(
            TONERWATCH_DATABASE_URL=relayed_url(database_url, pg_relay, pg_schema),
            TONERWATCH_NATS_URL=nats_url,
            TONERWATCH_SUBJECT_ROOT=f"f{tag}",
            TONERWATCH_STREAM_PREFIX=f"F{tag}",
            TONERWATCH_PORT=str(port),
            TONERWATCH_ADMIN_PASSWORD=ADMIN_PW,
            TONERWATCH_SCHEMA_CHECK_INTERVAL_S="0.25",
        ),
        log,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def not_ready() -> httpx.Response | None:
            r = _get(f"{base}/readyz")
            return r if r is not None and "database" in r.text else None

        ready = _wait(not_ready, 60, "/readyz naming the database", proc)
        assert isinstance(ready, httpx.Response)
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False and body["database"].startswith("unreachable"), body
        assert body["nats"] == "ok"
        health = _get(f"{base}/healthz")
        assert health is not None and health.status_code == 200
        # Far longer than a start-up retry: still waiting, still alive.
        refused = pg_relay.connections
        time.sleep(5)
        assert proc.poll() is None
        r = _get(f"{base}/readyz")
        assert r is not None and r.status_code == 503
        assert pg_relay.connections == refused  # nothing got through the cut

        pg_relay.restore()

        def is_ready() -> bool:
            r = _get(f"{base}/readyz")
            return r is not None and r.status_code == 200

        _wait(is_ready, 60, "ready after the database came back", proc)
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "admin", "password": ADMIN_PW},
            timeout=10,
        )
        assert token.status_code == 200, token.text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drop_streams_sync(nats_url, Subjects(f"f{tag}", f"F{tag}"))
    err = log.read_text()
    assert "Traceback" not in err, err[-3000:]
    assert "database unreachable, not ready until it answers" in err


# ---------------------------------------------------------------------------------------------
# Events flowing from a simulated fleet through real service processes while a fault is injected.
# poller (SNMP on loopback) → own nats-server → api (PostgreSQL through a relay), alerter (SMTP
# through a relay) → syncer (the reference portal over HTTPS through a relay). Each test counts:
# every reading in the stream stored once, every mailed event mailed once, every forwarded event
# taken once, each printer's in the order of the stream.
# ---------------------------------------------------------------------------------------------

# Recordings with toner below 99 %: with the low threshold at 99 % every printer raises alerts.
FLEET = {"p0": "jetdirect_m252dw", "p1": "xerox_phaser", "p2": "jetdirect_m252dw"}
POLL_INTERVAL_S = 1.0
# Time compressed: production backs off up to TONERWATCH_RETRY_CAP_S 60 s, so an hour of outage
# is 60 capped retries; here a capped retry is RETRY_CAP_S and an hour of simulated time lasts
# 60 x RETRY_CAP_S of wall time. The old delivery limit (20, the api's 30) fits many times over.
RETRY_CAP_S = 0.2
SIMULATED_HOUR_S = 60 * RETRY_CAP_S
SYNC_SECRET = "faults-sync-secret"
MAILED = (ev.ThresholdCrossed, ev.AlertResolved, ev.SupplyReplaced)


class Inbox:
    """aiosmtpd handler keeping what it accepts, in order."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 Message accepted"

    def event_ids(self) -> list[str]:
        return [str(m["Message-ID"]).strip("<>").split("@")[0] for m in self.messages]


@dataclass
class Stack:
    """The real processes of one fault test, and what they received."""

    tmp: Path
    nats: EmbeddedNats
    subjects: Subjects
    pg: TcpRelay
    smtp: TcpRelay
    upstream: TcpRelay
    inbox: Inbox
    portal: Portal
    database_url: str
    api_port: int = field(default_factory=free_tcp_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ops_ports: dict[str, int] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    bus: Bus | None = None

    def env(self, name: str) -> dict[str, str]:
        mail = [
            {
                "name": "faults",
                "host": "127.0.0.1",
                "port": self.smtp.port,
                "security": "none",
                "sender": "tonerwatch@example.org",
                "recipients": ["ops@example.org"],
            }
        ]
        common = {
            "TONERWATCH_NATS_URL": self.nats.url,
            "TONERWATCH_NATS_CONNECT_ATTEMPTS": "1000",
            "TONERWATCH_SUBJECT_ROOT": self.subjects.root,
            "TONERWATCH_STREAM_PREFIX": self.subjects.stream_prefix,
            "TONERWATCH_RETRY_BASE_S": "0.05",
            "TONERWATCH_RETRY_CAP_S": str(RETRY_CAP_S),
            "TONERWATCH_ACK_WAIT_S": "5",
            "TONERWATCH_LOG_FORMAT": "text",
            "TONERWATCH_OPS_PORT": str(self.ops_ports.setdefault(name, free_tcp_port())),
        }
        own = {
            "api": {
                "TONERWATCH_DATABASE_URL": self.database_url,
                "TONERWATCH_PORT": str(self.api_port),
                "TONERWATCH_ADMIN_PASSWORD": ADMIN_PW,
                "TONERWATCH_SCHEMA_CHECK_INTERVAL_S": "0.25",
            },
            "poller": {
                "TONERWATCH_POLL_TIMEOUT_S": "0.5",
                "TONERWATCH_POLL_RETRIES": "1",
                "TONERWATCH_JOB_ACK_WAIT_S": "5",
            },
            "alerter": {
                "TONERWATCH_LOW_PERCENT": "99",
                "TONERWATCH_CRITICAL_PERCENT": "1",
                "TONERWATCH_MAIL": json.dumps(mail),
            },
            "syncer": {
                "TONERWATCH_SYNC_URL": f"https://127.0.0.1:{self.upstream.port}",
                "TONERWATCH_SYNC_SECRET": SYNC_SECRET,
                "TONERWATCH_SYNC_CA_BUNDLE": str(self.tmp / "tls" / "ca.pem"),
                "TONERWATCH_SYNC_TIMEOUT_S": "3",
            },
        }[name]
        return _env(**common, **own)

    def start(self, name: str) -> None:
        self.starts[name] = self.starts.get(name, 0) + 1
        log = self.tmp / f"{name}.{self.starts[name]}.log"
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tonerwatch", "serve", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            env=self.env(name),
        )

    async def ready(self, name: str, timeout_s: float = 60) -> None:
        port = self.api_port if name == "api" else self.ops_ports[name]
        proc = self.procs[name]

        async def answers() -> bool:
            assert proc.poll() is None, f"{name} ended ({proc.returncode}): {self.log_tail(name)}"
            try:
                async with httpx.AsyncClient(timeout=3) as client:
                    r = await client.get(f"http://127.0.0.1:{port}/readyz")
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        await eventually(answers, timeout_s=timeout_s, interval_s=0.25)

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no flush, no goodbye."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tail(self, name: str) -> str:
        log = self.tmp / f"{name}.{self.starts.get(name, 1)}.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def tracebacks(self) -> dict[str, str]:
        found = {}
        for log in self.tmp.glob("*.log"):
            text_ = log.read_text(errors="replace")
            if "Traceback" in text_:
                found[log.name] = text_[-3000:]
        return found

    async def connect(self) -> Bus:
        self.bus = await Bus.connect(
            self.nats.url, subjects=self.subjects, name="faults", attempts=20
        )
        return self.bus

    async def monitor_fleet(self, snmp_port: int) -> None:
        assert self.bus is not None
        for printer_id, community in FLEET.items():
            await self.bus.publish(
                ev.PrinterConfigured(
                    source="test",
                    site_id="default",
                    printer_id=printer_id,
                    address="127.0.0.1",
                    port=snmp_port,
                    name=f"fault printer {printer_id}",
                    credentials=ev.SnmpCredentials(community=community),
                    interval_s=POLL_INTERVAL_S,
                )
            )

    async def set_low_percent(self, percent: float, revision: int) -> None:
        """Publish the default site's alert settings as the api would (its low threshold)."""
        assert self.bus is not None
        await self.bus.publish(
            ev.AlertSettingsConfigured(
                source="test", site_id="default", revision=revision, low_percent=percent
            )
        )

    async def stream(self) -> list[ev.Event]:
        """Every event the events stream holds, in stream order, without the copies the api split
        out of a batch for itself."""
        bus = self.bus
        assert bus is not None
        sub = await bus.js.pull_subscribe(
            f"{self.subjects.root}.>",
            stream=self.subjects.events_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0
            ),
        )
        found: list[ev.Event] = []
        try:
            while True:
                try:
                    msgs = await sub.fetch(256, timeout=2.0)
                except TimeoutError:
                    break
                for msg in msgs:
                    if FOR_HEADER in (msg.headers or {}):
                        continue  # a copy split out of its batch for one consumer (Bus._split_out)
                    with contextlib.suppress(ev.UnreadableEvent):
                        found.extend(ev.unbatched(ev.parse_event(msg.data)))
                if msgs and (msgs[-1].metadata.num_pending or 0) == 0:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return found

    def forwarded(self) -> list[str]:
        """Event ids the portal took on /v1/events, in the order they came."""
        return [
            str(r.document.get("event_id")) for r in self.portal.received if r.path == EVENTS_PATH
        ]


@contextlib.asynccontextmanager
async def stack(tmp_path: Path, database_url: str, schema: str) -> AsyncIterator[Stack]:
    """Run own NATS, relays to PostgreSQL, SMTP and the portal; services are started by the test."""
    (tmp_path / "nats").mkdir()
    tls = make_tls(tmp_path / "tls", ["hub"])["hub"]
    (tmp_path / "tls" / "ca.pem").write_bytes(tls.ca.read_bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    inbox = Inbox()
    smtp_port = free_tcp_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    portal = Portal(secret=SYNC_SECRET)
    portal_port = free_tcp_port()
    tag = uuid.uuid4().hex[:8]
    subjects = Subjects(f"x{tag}", f"X{tag}")
    url = make_url(database_url)
    try:
        with (
            EmbeddedNats(tmp_path / "nats") as nats_server,
            TcpRelay(url.host or "127.0.0.1", url.port or 5432) as pg,
            TcpRelay("127.0.0.1", smtp_port) as smtp,
            TcpRelay("127.0.0.1", portal_port) as upstream,
        ):
            async with serving(portal, "127.0.0.1", portal_port, context):
                s = Stack(
                    tmp=tmp_path,
                    nats=nats_server,
                    subjects=subjects,
                    pg=pg,
                    smtp=smtp,
                    upstream=upstream,
                    inbox=inbox,
                    portal=portal,
                    database_url=relayed_url(database_url, pg, schema),
                )
                await s.connect()
                try:
                    yield s
                finally:
                    s.stop_all()
                    if s.bus is not None:
                        with contextlib.suppress(Exception):
                            await s.bus.nc.close()
    finally:
        controller.stop()


async def start_services(
    s: Stack, names: Iterable[str] = ("api", "alerter", "syncer", "poller")
) -> None:
    for name in names:
        s.start(name)
    for name in names:
        await s.ready(name)


def _engine_for(database_url: str, schema: str) -> Engine:
    return make_engine(database_url, schema=schema)


def stored_readings(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT event_id FROM processed_events WHERE consumer = 'api-readings'")
        )
        return {str(r[0]) for r in rows}


@dataclass
class Tally:
    """What went in and what came out of one run."""

    readings_in: int
    supply_rows_in: int
    readings_out: int
    supply_rows_out: int
    mailed_in: int
    mails_out: int
    mail_repeats: int
    forwarded_in: int
    forwarded_out: int
    portal_repeats: int


async def settle_and_count(
    s: Stack, engine: Engine, timeout_s: float = 45, mail_repeats_allowed: int = 0
) -> Tally:
    """Stop the poller (no new reading), wait until everything published came out, check it all.

    mail_repeats_allowed: an alerter SIGKILLed between the SMTP server's "250" and its own record
    of it sends that one mail again after the restart (at least once, the same Message-ID, so a
    mail client shows one); at most one per kill, never another event's.
    """
    s.procs["poller"].terminate()
    s.procs["poller"].wait(timeout=20)
    events = await s.stream()
    readings = [e for e in events if isinstance(e, ev.SupplyReading)]
    reading_ids = {str(r.event_id) for r in readings}
    mailed = [
        e
        for e in events
        if isinstance(e, MAILED)
        and (not isinstance(e, ev.AlertResolved) or e.superseded_by is None)
    ]
    mailed_ids = [str(e.event_id) for e in mailed]
    forwarded = [
        e
        for e in events
        if isinstance(e, (ev.ThresholdCrossed, ev.AlertResolved, ev.SupplyReplaced))
    ]
    forwarded_ids = [str(e.event_id) for e in forwarded]
    assert readings, "no reading was published"
    assert mailed, "no alert was raised"

    await until(lambda: reading_ids - stored_readings(engine), "readings not stored", timeout_s)
    await until(lambda: set(mailed_ids) - set(s.inbox.event_ids()), "events not mailed", timeout_s)
    await until(lambda: set(forwarded_ids) - set(s.forwarded()), "events not forwarded", timeout_s)
    # Nothing more arrives late (a duplicate would): let the consumers go idle, then count.
    await asyncio.sleep(2)

    stored = stored_readings(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM readings")).scalar_one()
        latest = {
            (str(p), str(i)): t
            for p, i, t in conn.execute(
                text("SELECT printer_id, supply_index, updated_at FROM supply_states")
            )
        }
    # Count in = count out: every reading stored once, nothing stored that was not published.
    assert stored == reading_ids
    assert len(reading_ids) == len(readings)
    assert rows == sum(len(r.supplies) for r in readings)
    # The state shown is the newest reading's, whatever order the readings were stored in.
    newest: dict[tuple[str, str], dt.datetime] = {}
    for r in readings:
        for sup in r.supplies:
            key = (r.printer_id, str(sup.index))
            newest[key] = max(newest.get(key, r.occurred_at), r.occurred_at)
    for key, at in newest.items():
        got = latest[key]
        got = got if got.tzinfo else got.replace(tzinfo=dt.UTC)
        assert got == at, (key, got, at)
    # The api's alerts: open exactly where the alert's last event is a crossing.
    last: dict[str, bool] = {}
    for e in events:
        if isinstance(e, ev.ThresholdCrossed):
            last[e.alert_id] = True
        elif isinstance(e, ev.AlertResolved):
            last[e.alert_id] = False

    def api_open() -> dict[str, bool]:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT alert_id, bool_or(resolved_at IS NULL) FROM alerts"
                    " WHERE printer_id IS NOT NULL GROUP BY alert_id"
                )
            ).all()
        return {str(a): bool(o) for a, o in rows}

    await eventually(lambda: api_open() == last, timeout_s=timeout_s, interval_s=0.3)
    # One mail per mailed event, none twice, each printer's in the order they happened.
    mails = s.inbox.event_ids()
    assert sorted(set(mails)) == sorted(mailed_ids)
    assert len(mails) - len(set(mails)) <= mail_repeats_allowed, mails
    per_printer_order(mailed, list(dict.fromkeys(mails)))
    # Upstream: every alert taken once, each printer's in order.
    assert sorted(set(s.forwarded())) == sorted(forwarded_ids)
    assert len(s.forwarded()) == len(forwarded_ids)
    per_printer_order(forwarded, s.forwarded())
    assert not s.tracebacks(), s.tracebacks()
    return Tally(
        readings_in=len(readings),
        supply_rows_in=sum(len(r.supplies) for r in readings),
        readings_out=len(stored),
        supply_rows_out=rows,
        mailed_in=len(mailed_ids),
        mails_out=len(s.inbox.messages),
        mail_repeats=len(mails) - len(set(mails)),
        forwarded_in=len(forwarded_ids),
        forwarded_out=len(s.forwarded()),
        portal_repeats=s.portal.duplicates,
    )


async def until(missing: Any, what: str, timeout_s: float) -> None:
    """Wait until missing() is empty; fail naming what is still missing."""
    left: list[Any] = []

    def none_left() -> bool:
        left[:] = sorted(missing())
        return not left

    try:
        await eventually(none_left, timeout_s=timeout_s, interval_s=0.3)
    except AssertionError as exc:
        raise AssertionError(f"{what} within {timeout_s}s: {len(left)}: {left[:10]}") from exc


def per_printer_order(published: list[ev.Event], arrived: list[str]) -> None:
    """Assert that, per printer, arrived lists the events in the order published holds them."""
    printer = {str(e.event_id): ev.printer_of(e) for e in published}
    for pid in {p for p in printer.values()}:
        want = [str(e.event_id) for e in published if ev.printer_of(e) == pid]
        got = [i for i in arrived if printer.get(i) == pid]
        assert got == want, f"printer {pid}: arrived {got}, published {want}"


async def flowing(s: Stack, engine: Engine, at_least: int = 3) -> None:
    """Wait until at least at_least readings of every printer are stored."""
    seen: dict[str, int] = {}

    async def each_stored() -> bool:
        stored = stored_readings(engine)
        seen.clear()
        for e in await s.stream():
            if isinstance(e, ev.SupplyReading) and str(e.event_id) in stored:
                seen[e.printer_id] = seen.get(e.printer_id, 0) + 1
        return set(seen) == set(FLEET) and min(seen.values()) >= at_least

    try:
        await eventually(each_stored, timeout_s=45, interval_s=0.5)
    except AssertionError as exc:
        raise AssertionError(f"stored readings per printer: {seen}") from exc


@pytest.fixture
def fault_db(database_url: str, pg_schema: str) -> Iterator[Engine]:
    engine = _engine_for(database_url, pg_schema)
    yield engine
    engine.dispose()


def record(name: str, tally: Tally, **extra: object) -> None:
    """Print the figures of a run (for docs/reliability.md)."""
    print(f"\nFIGURES {name}: {dataclasses.asdict(tally)} {extra}")


async def test_postgresql_cut_longer_than_the_old_retry_window_loses_and_forges_nothing(
    tmp_path: Path, database_url: str, pg_schema: str, fault_db: Engine, snmp_agent: SnmpSimulator
) -> None:
    """Injected: PostgreSQL unreachable (relay cut) while the fleet is polled, for far more
    capped retries than the old delivery limit. Out: every reading stored once, state newest."""
    async with stack(tmp_path, database_url, pg_schema) as s:
        await start_services(s)
        await s.monitor_fleet(snmp_agent.port)
        await flowing(s, fault_db)
        before = len(stored_readings(fault_db))
        s.pg.cut()
        cut_at = time.monotonic()
        # Readings go on being published while the database is away.
        published_at_cut = len([e for e in await s.stream() if isinstance(e, ev.SupplyReading)])
        # Meanwhile every alert resolves and crosses again (the site's low threshold down to 1 %
        # and back up): the api must end with each alert as its last event left it.
        await flip_alerts(s)
        await eventually(
            lambda: s.pg.refused >= 40 and time.monotonic() - cut_at > 40 * RETRY_CAP_S,
            timeout_s=60,
        )
        during = len([e for e in await s.stream() if isinstance(e, ev.SupplyReading)])
        assert during > published_at_cut, "no reading was published during the cut"
        assert s.procs["api"].poll() is None
        refused = s.pg.refused
        outage_s = time.monotonic() - cut_at
        s.pg.restore()
        tally = await settle_and_count(s, fault_db)
    record(
        "pg-cut",
        tally,
        stored_before_cut=before,
        outage_s=round(outage_s, 1),
        refused_connections=refused,
        published_during_cut=during - published_at_cut,
    )


async def test_smtp_and_upstream_down_for_a_simulated_hour_every_alert_mailed_and_forwarded_once(
    tmp_path: Path, database_url: str, pg_schema: str, fault_db: Engine, snmp_agent: SnmpSimulator
) -> None:
    """Injected: the SMTP server and the upstream portal unreachable from before the first alert
    for an hour of compressed time (60 capped retries), while every alert crosses, resolves
    (the site's low threshold lowered) and crosses again (raised back). Out: every alert event
    mailed once and taken by the portal once, each printer's in the order raised."""
    async with stack(tmp_path, database_url, pg_schema) as s:
        s.smtp.cut()
        s.upstream.cut()
        cut_at = time.monotonic()
        await start_services(s)
        await s.monitor_fleet(snmp_agent.port)
        await flowing(s, fault_db)

        # Every alert resolves and crosses again: order now matters at every receiver.
        await flip_alerts(s)
        await eventually(lambda: time.monotonic() - cut_at > SIMULATED_HOUR_S, timeout_s=60)
        await eventually(lambda: s.smtp.refused >= 5 and s.upstream.refused >= 5, timeout_s=30)
        assert s.inbox.messages == [] and s.portal.received == []
        refused = (s.smtp.refused, s.upstream.refused)
        outage_s = round(time.monotonic() - cut_at, 1)
        s.smtp.restore()
        s.upstream.restore()
        tally = await settle_and_count(s, fault_db)
    record("smtp-upstream-hour", tally, refused_smtp_upstream=refused, outage_s=outage_s)


async def flip_alerts(s: Stack) -> None:
    """Have every open low alert resolve and cross again, by the site's low threshold (1 %, 99 %)."""

    async def count(kind: type[ev.Event]) -> int:
        return sum(1 for e in await s.stream() if isinstance(e, kind))

    async def at_least(kind: type[ev.Event], n: int) -> bool:
        return await count(kind) >= n

    crossed = await count(ev.ThresholdCrossed)
    assert crossed > 0, "no alert raised yet"
    resolved = await count(ev.AlertResolved)
    await s.set_low_percent(1, revision=1)
    await eventually(lambda: at_least(ev.AlertResolved, resolved + crossed), 30, 0.5)
    await s.set_low_percent(99, revision=2)
    await eventually(lambda: at_least(ev.ThresholdCrossed, 2 * crossed), 30, 0.5)


async def test_nats_killed_and_restarted_loses_and_forges_nothing(
    tmp_path: Path, database_url: str, pg_schema: str, fault_db: Engine, snmp_agent: SnmpSimulator
) -> None:
    """Injected: our own nats-server SIGKILLed while events flow and alerts are resolving,
    restarted on its store 5 s later; the alerts cross again after. Out: every reading published
    (acked) stored once, every alert event mailed and taken once, in order per printer."""
    async with stack(tmp_path, database_url, pg_schema) as s:
        await start_services(s)
        await s.monitor_fleet(snmp_agent.port)
        await flowing(s, fault_db)
        events = await s.stream()
        before = len([e for e in events if isinstance(e, ev.SupplyReading)])
        crossed = len([e for e in events if isinstance(e, ev.ThresholdCrossed)])
        assert crossed > 0
        # The alerts start resolving (site low threshold to 1 %) and NATS dies among them.
        assert s.bus is not None
        await s.set_low_percent(1, revision=1)
        await eventually(lambda: _count(s, ev.AlertResolved, 1), timeout_s=30, interval_s=0.05)
        await s.bus.nc.close()
        assert s.nats.proc is not None
        s.nats.proc.send_signal(signal.SIGKILL)
        s.nats.proc.wait(timeout=10)
        await asyncio.sleep(5)
        s.nats.start()
        await s.connect()
        for name in ("api", "alerter", "syncer", "poller"):
            assert s.procs[name].poll() is None, f"{name} ended: {s.log_tail(name)}"

        async def more_published() -> bool:
            n = len([e for e in await s.stream() if isinstance(e, ev.SupplyReading)])
            return n >= before + 2 * len(FLEET)

        await eventually(more_published, timeout_s=45, interval_s=1)
        await eventually(lambda: _count(s, ev.AlertResolved, crossed), timeout_s=30, interval_s=0.5)
        # ... and cross again after the restart.
        await s.set_low_percent(99, revision=2)
        await eventually(
            lambda: _count(s, ev.ThresholdCrossed, 2 * crossed), timeout_s=30, interval_s=0.5
        )
        tally = await settle_and_count(s, fault_db)
    record("nats-kill", tally, published_before_kill=before)


async def _count(s: Stack, kind: type[ev.Event], at_least: int) -> bool:
    """Return whether the events stream holds at least at_least events of kind."""
    return sum(1 for e in await s.stream() if isinstance(e, kind)) >= at_least


async def test_api_and_alerter_sigkilled_mid_batch_lose_nothing(
    tmp_path: Path, database_url: str, pg_schema: str, fault_db: Engine, snmp_agent: SnmpSimulator
) -> None:
    """Injected: the api and the alerter SIGKILLed while readings and alerts are in flight,
    restarted. Out: every reading stored once, every alert mailed (the one mail in flight at the
    kill possibly twice, same Message-ID) and forwarded once, in order."""
    async with stack(tmp_path, database_url, pg_schema) as s:
        await start_services(s, ("api", "syncer", "poller"))
        await s.monitor_fleet(snmp_agent.port)
        await flowing(s, fault_db)
        # The alerter starts on a backlog of readings and is killed while working through it.
        s.start("alerter")
        await eventually(lambda: len(s.inbox.messages) >= 1, timeout_s=45, interval_s=0.05)
        s.kill("alerter")
        s.kill("api")
        killed = {"mails_at_kill": len(s.inbox.messages)}
        await asyncio.sleep(1)
        s.start("api")
        s.start("alerter")
        await s.ready("api")
        await s.ready("alerter")
        # The restarted alerter goes on from where the killed one was: resolve, cross again.
        await flip_alerts(s)
        tally = await settle_and_count(s, fault_db, mail_repeats_allowed=1)
    record("sigkill", tally, **killed)
