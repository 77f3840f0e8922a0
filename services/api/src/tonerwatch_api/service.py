"""The api service: migrate (or wait for `tonerwatch migrate`), bootstrap, serve HTTP and run the projections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

from tonerwatch_api.app import create_app
from tonerwatch_api.db.schema import (
    DatabaseUnreachable,
    MigrationLockTimeout,
    pending_migrations,
)
from tonerwatch_api.db.schema import schema_at_head as _schema_at_head
from tonerwatch_api.db.sealed import reseal_all
from tonerwatch_api.db.tx import bootstrap, ensure_admin, in_tx, upgrade
from tonerwatch_api.deps import AppState
from tonerwatch_api.domain.alert_settings import reannounce_all
from tonerwatch_api.domain.coverage_announce import CoverageAnnouncer
from tonerwatch_api.domain.mail_servers import reannounce_mail_servers
from tonerwatch_api.domain.retention import run_upkeep
from tonerwatch_api.input_guard import JsonErrorHttpTools
from tonerwatch_api.projections.activity import run_activity
from tonerwatch_api.projections.printers import ProjectionOptions
from tonerwatch_api.projections.projector import Projector
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.lifecycle import sleep_until_stopped, stop_event
from tonerwatch_shared.sealing import Sealer
from tonerwatch_shared.settings import SettingsError
from tonerwatch_shared.storage import make_engine, sqlite_url

log = logging.getLogger(__name__)

# Start-up failures an operator fixes outside the program: `serve` prints them in one line, exit 2.
START_ERRORS = (DatabaseUnreachable, MigrationLockTimeout)

__all__ = [
    "START_ERRORS",
    "DatabaseUnreachable",
    "MigrationLockTimeout",
    "Settings",
    "create_app",
    "database_url",
    "ensure_admin",
    "migrate",
    "run",
    "run_background",
    "schema_at_head",
]


def database_url(settings: Settings) -> str:
    """Return the configured database URL, or SQLite in the data dir."""
    if settings.database_url:
        return settings.database_url
    if settings.data_dir is None:
        raise SettingsError(
            "TONERWATCH_DATABASE_URL is not set and neither is TONERWATCH_DATA_DIR: "
            "set one (e.g. TONERWATCH_DATA_DIR=/var/lib/tonerwatch)"
        )
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return sqlite_url(Path(settings.data_dir))


def migrate(settings: Settings) -> str:
    """Bring the api's schema to head and return the database's URL (password hidden); `tonerwatch migrate`.

    On PostgreSQL under the migration advisory lock (see db/schema.py), so it is safe beside api
    replicas or another migrate. Raises DatabaseUnreachable or MigrationLockTimeout (one-line messages).
    """
    engine = make_engine(database_url(settings))
    try:
        upgrade(engine, settings.migrate_lock_timeout_s)
        # With the key at hand, rows still in the clear (or under a previous key) are sealed now.
        reseal_all(engine, Sealer.from_settings(settings))
        return engine.url.render_as_string(hide_password=True)
    finally:
        engine.dispose()


def schema_at_head(settings: Settings) -> bool:
    """Return whether the database is at the newest migration (read without loading Alembic)."""
    engine = make_engine(database_url(settings))
    try:
        return _schema_at_head(engine)
    finally:
        engine.dispose()


async def run_background(st: AppState, stop: asyncio.Event) -> None:
    """Run the projections, the outbox, the live alert feed and the activity consumers until stop is set."""
    options = ProjectionOptions(
        source=st.source,
        sealer=Sealer.from_settings(st.settings),
        auto_monitor_discovered=st.settings.auto_monitor_discovered,
        default_interval_s=st.settings.default_interval_s,
        coverage_rules=st.settings.coverage_rules,
    )
    projector = Projector(
        st.engine, st.bus, st.outbox, st.metrics, options, on_applied=st.live.printer_changed
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(projector.run(stop))
        tg.create_task(st.outbox.run(stop))
        tg.create_task(st.live.run(st.bus, stop))
        tg.create_task(run_activity(st.engine, st.bus, stop))
        tg.create_task(run_upkeep(st.engine, st.settings, stop))
        # The api is the record of service coverage: the syncer's snapshot uses what it announces.
        announcer = CoverageAnnouncer(
            st.engine,
            st.bus,
            st.settings.coverage_rules,
            st.source,
            reannounce_s=st.settings.coverage_reannounce_s,
        )
        tg.create_task(announcer.run(stop, st.settings.coverage_announce_interval_s))


async def run(
    settings: Settings, *, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None
) -> None:
    """Serve the API and UI and run the projections until stop is set; then drain.

    With TONERWATCH_MIGRATE_ON_START (the default) the schema is migrated first. Without, a schema
    behind the code keeps the api serving but not ready (/readyz 503 "migrations pending: ...") until
    `tonerwatch migrate` has run; only then does it bootstrap and start its consumers. A database
    that does not answer at start is waited for the same way (/readyz 503 "unreachable ...",
    docs/reliability.md), never a traceback and an exit.
    """
    stop = stop_event(stop)
    engine = make_engine(database_url(settings))
    try:
        bus = await _connect_answering_health(settings, stop)
        try:
            await bus.ensure_event_stream()
            app = create_app(engine, bus, settings, stop=stop)
            server = _Server(uvicorn_config(app, settings))
            bootstrapped = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_run_once_migrated(app.state.tw, bootstrapped, stop))
                serving = tg.create_task(_serve(server, stop))
                tg.create_task(_signal_ready(server, bootstrapped, ready, stop))
                await stop.wait()
                server.should_exit = True
                await serving
        finally:
            await bus.drain()
    finally:
        await asyncio.to_thread(engine.dispose)


def _waiting_app() -> FastAPI:
    """Return the app served while NATS is not yet connected: alive, not ready."""
    waiting = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @waiting.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @waiting.get("/readyz")
    async def readyz() -> JSONResponse:
        return JSONResponse({"ready": False, "nats": "NATS not connected yet"}, status_code=503)

    return waiting


async def _connect_answering_health(settings: Settings, stop: asyncio.Event) -> Bus:
    """Return the connected bus; meanwhile the port answers /healthz (alive) and /readyz (503).

    A NATS outage at start must not look like a dead process to a liveness probe; SIGTERM (stop)
    ends the wait at once (BusStopped).
    """
    waiting = _Server(uvicorn_config(_waiting_app(), settings))
    serving = asyncio.create_task(_serve(waiting, stop))
    try:
        connecting = asyncio.create_task(Bus.for_service(settings, "api", stop=stop))
        done, _ = await asyncio.wait({serving, connecting}, return_when=asyncio.FIRST_COMPLETED)
        if serving in done and not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            serving.result()  # the port is taken: report that
        return await connecting
    finally:
        waiting.should_exit = True
        with contextlib.suppress(RuntimeError):  # "stopped unexpectedly": we stopped it
            await serving


# What a database that went away says; anything else while bootstrapping is a real error.
DATABASE_DOWN = (DatabaseUnreachable, OperationalError, InterfaceError, OSError)


async def _run_once_migrated(
    st: AppState, bootstrapped: asyncio.Event, stop: asyncio.Event
) -> None:
    while True:
        if not await _wait_for_schema(st, stop):
            return
        try:
            await _bootstrap(st)
            st.schema = "ok"
            break
        except DATABASE_DOWN as exc:  # gone again between the check and the bootstrap
            st.schema = f"unreachable ({type(exc).__name__})"
            log.warning("database went away while bootstrapping, waiting for it: %s", _line(exc))
            if await sleep_until_stopped(stop, st.settings.schema_check_interval_s):
                return
    bootstrapped.set()
    await run_background(st, stop)


async def _bootstrap(st: AppState) -> None:
    """Make the default site and admin, seal secrets, announce the alert settings."""
    settings = st.settings
    generated = await asyncio.to_thread(
        bootstrap,
        st.engine,
        settings.default_site,
        settings.admin_password,
        settings.migrate_lock_timeout_s,
    )
    if generated:
        # Shown once, to whoever started the service; `tonerwatch up` prints it itself.
        log.warning("created user 'admin' with generated password %s — change it", generated)
    # Rows written before sealing, without a key, or with a previous key: sealed with the current one.
    sealer = Sealer.from_settings(settings)
    if not sealer.enabled:
        log.warning("TONERWATCH_SECRET_KEY is not set: SNMP secrets are stored and sent unsealed")
    await asyncio.to_thread(reseal_all, st.engine, sealer)
    # The api is the system of record for alert settings: remind the alerter at every start.
    await asyncio.to_thread(in_tx, st.engine, lambda s: reannounce_all(s, st.source))
    await asyncio.to_thread(
        in_tx,
        st.engine,
        lambda s: reannounce_mail_servers(s, settings.default_site, st.source),
    )


def _line(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()
    return first[0] if first else type(exc).__name__


async def _wait_for_schema(st: AppState, stop: asyncio.Event) -> bool:
    """Return True once the schema is at head (readiness names what is pending meanwhile), False on stop.

    With migrate_on_start it migrates; a database that does not answer is waited for (checked
    every schema_check_interval_s), an unreachable one named in /readyz. A migration lock held
    too long (MigrationLockTimeout) still ends the service: that is for an operator.
    """
    st.schema = "schema not checked yet"
    settings = st.settings
    while not stop.is_set():
        try:
            if settings.migrate_on_start:
                await asyncio.to_thread(upgrade, st.engine, settings.migrate_lock_timeout_s)
                pending = None
            else:
                pending = await asyncio.wait_for(
                    asyncio.to_thread(pending_migrations, st.engine), timeout=30
                )
        except DATABASE_DOWN as exc:
            pending = f"unreachable ({type(exc).__name__})"
            if pending != st.schema:
                log.warning("database unreachable, not ready until it answers: %s", _line(exc))
        except MigrationLockTimeout:
            raise
        except Exception as exc:  # the database may come later: keep checking, stay not ready
            pending = f"schema check failed: {type(exc).__name__}"
        if pending is None:
            # Ready ("ok") only once bootstrapped: the admin must exist when /readyz says 200.
            st.schema = "bootstrapping"
            return True
        if pending != st.schema and not pending.startswith("unreachable"):
            log.warning("%s — not ready until `tonerwatch migrate` has run", pending)
        st.schema = pending
        if await sleep_until_stopped(stop, settings.schema_check_interval_s):
            return False
    return False


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process-wide stop event decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(server: uvicorn.Server, stop: asyncio.Event) -> None:
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits the process when it cannot bind; turn that into an error we can report.
        raise RuntimeError(
            f"cannot listen on {server.config.host}:{server.config.port} "
            "(in use? set TONERWATCH_PORT / TONERWATCH_HOST)"
        ) from None
    if not stop.is_set():
        raise RuntimeError("the HTTP server stopped unexpectedly")


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """Return the uvicorn config: our signal handling, our logging, bounded shutdown."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=5,
        lifespan="off",
        # No websocket route: "auto" would import the websockets package (17 modules) for none.
        ws="none",
        http=JsonErrorHttpTools,  # unparseable requests (a 200 kB query) answered in JSON too
    )


async def _signal_ready(
    server: uvicorn.Server,
    bootstrapped: asyncio.Event,
    ready: asyncio.Event | None,
    stop: asyncio.Event,
) -> None:
    # uvicorn sets `started` once the socket listens; it offers no event to await.
    while not server.started and not stop.is_set():  # noqa: ASYNC110 (uvicorn has only a flag)
        await asyncio.sleep(0.05)
    if not server.started:
        return
    log.info("api listening on http://%s:%d", server.config.host, bound_port(server))
    # Ready for `up` once the schema is at head and the default site and admin exist.
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait(
            [asyncio.create_task(bootstrapped.wait()), stopping],
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        stopping.cancel()
    if bootstrapped.is_set() and ready is not None:
        ready.set()


def bound_port(server: uvicorn.Server) -> int:
    """Return the port the server listens on (useful when configured as 0)."""
    with contextlib.suppress(Exception):
        for s in server.servers:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
    return int(server.config.port)
