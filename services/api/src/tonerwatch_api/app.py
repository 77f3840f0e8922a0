"""The FastAPI application: REST API, web UI, health, readiness and metrics, with JSON errors."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tonerwatch_api.db.sealed import seal_on_flush
from tonerwatch_api.db.tx import ping, run_tx
from tonerwatch_api.deps import AppState, app_state
from tonerwatch_api.domain.alerts import open_alert_counts
from tonerwatch_api.domain.errors import Conflict, Invalid, NotFound
from tonerwatch_api.domain.login_limits import LoginLimiter
from tonerwatch_api.domain.printers import printer_status_counts
from tonerwatch_api.input_guard import InputGuard
from tonerwatch_api.listing import ListingError
from tonerwatch_api.live import LiveAlerts
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections.outbox import Outbox, dead_outbox_events
from tonerwatch_api.routes import (
    alert_settings,
    alerts,
    api_docs,
    audit,
    auth,
    bulk_add,
    collectors,
    dead_letters,
    discovery_jobs,
    enrolments,
    events,
    exports,
    groups,
    mail_servers,
    network_usage,
    orders,
    printer_address,
    printers,
    sites,
    tenants,
    tokens,
    users,
)
from tonerwatch_api.schemas.common import VALIDATION_ERROR_EXAMPLE, ErrorOut, ReadyOut
from tonerwatch_api.settings import Settings
from tonerwatch_api.ui import bulk_add as bulk_add_page
from tonerwatch_api.ui import discovery_setting, login, pages
from tonerwatch_api.ui import printers as printer_pages
from tonerwatch_api.ui import tenants as tenant_pages
from tonerwatch_api.ui.common import LoginRequired, error_page, login_redirect
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.sealing import Sealer

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent


def create_app(
    engine: Engine,
    bus: Bus,
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    stop: asyncio.Event | None = None,
) -> FastAPI:
    """Return the app on an already migrated database and a connected bus."""
    # Every write through this engine seals SNMP secrets (rows and outbox events) from now on.
    seal_on_flush(engine, Sealer.from_settings(settings))
    app = FastAPI(
        title="TonerWatch API",
        version="1",
        description="Printer fleet supplies: sites, printers, supply levels, alerts.",
        docs_url=None,  # routes/api_docs.py: Swagger UI from a package, not a CDN
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    st = AppState(
        engine=engine,
        bus=bus,
        settings=settings,
        secret=settings.session_secret or secrets.token_urlsafe(32),
        metrics=metrics or Metrics(),
        outbox=Outbox(engine, bus),
        live=LiveAlerts(),
        stop=stop or asyncio.Event(),
        login_limiter=LoginLimiter(
            engine,
            max_per_user=settings.login_max_failures,
            max_per_ip=settings.login_max_failures_per_ip,
            window_s=settings.login_window_s,
            backoff_s=settings.login_backoff_s,
        ),
    )
    app.state.tw = st
    # REST first, in the order the OpenAPI document lists the resources; then the UI pages.
    for resource in (
        auth,
        sites,
        printers,
        bulk_add,
        alerts,
        exports,
        tokens,
        users,
        audit,
        discovery_jobs,
        network_usage,
        events,
        alert_settings,
        mail_servers,
        groups,
        orders,
        tenants,
        collectors,
        printer_address,
        enrolments,
        dead_letters,
    ):
        app.include_router(resource.router)
    # Bulk add before the printer pages: /printers/bulk is not a printer id.
    for ui_pages in (login, bulk_add_page, discovery_setting, printer_pages, pages, tenant_pages):
        app.include_router(ui_pages.router)
    app.include_router(api_docs.router)
    app.mount(api_docs.ASSETS, api_docs.SwaggerAssets(), name="api-docs-assets")
    app.mount("/static", StaticFiles(directory=HERE / "ui" / "static"), name="static")
    _install_errors(app)
    _install_ops(app)
    _install_openapi(app)
    # Outermost: hostile bodies, queries and paths are answered before any route sees them.
    app.add_middleware(InputGuard, max_body_bytes=settings.max_body_bytes)
    return app


def _install_openapi(app: FastAPI) -> None:
    """Make the OpenAPI document show the 422 body the handler sends, not FastAPI's default."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        doc = generate()
        document_validation_errors(doc)
        restore_example_nulls(doc)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def restore_example_nulls(doc: dict[str, Any]) -> None:
    """Put back the nulls FastAPI drops from schema examples (it encodes with exclude_none).

    Without them an example of an answer lacks its required nullable fields ("resolved_at": null),
    and {"poll_interval_s": null} (back to the default) would read as {}.
    """
    models: dict[str, list[type[BaseModel]]] = {}
    todo: list[type[BaseModel]] = [BaseModel]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("tonerwatch") and cls not in models.get(cls.__name__, []):
            models.setdefault(cls.__name__, []).append(cls)
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        found = models.get(re.sub(r"-(Input|Output)$", "", name), [])
        if "examples" not in schema or len(found) != 1:
            continue
        own = found[0].model_json_schema()
        if own.get("title") == schema.get("title") and "examples" in own:
            schema["examples"] = own["examples"]


_FASTAPI_422 = {"$ref": "#/components/schemas/HTTPValidationError"}


def document_validation_errors(doc: dict[str, Any]) -> None:
    """Replace FastAPI's default 422 answers in doc with ErrorOut and an example (idempotent)."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    replaced = False
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            if answer.get("content", {}).get("application/json", {}).get("schema") == _FASTAPI_422:
                operation["responses"]["422"] = {
                    "description": "Invalid input: fields names each field at fault",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorOut"},
                            "example": VALIDATION_ERROR_EXAMPLE,
                        }
                    },
                }
                replaced = True
    if replaced and "ErrorOut" not in schemas:
        own = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(own.pop("$defs", {}))
        schemas["ErrorOut"] = own
    # FastAPI's shapes are never sent (the handler reshapes every validation error).
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/api/") and exc.status_code in (403, 404):
            return error_page(request, exc.status_code, str(exc.detail))
        return JSONResponse(
            {"error": str(exc.detail), "status": exc.status_code},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # Inputs are not echoed back: they may be credentials.
        fields = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            where = loc[0] if loc else "request"
            name = ".".join(loc[1:]) or where
            fields.append({"field": name, "location": where, "message": err.get("msg", "invalid")})
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(
            {"error": f"invalid request: {summary}", "status": 422, "fields": fields},
            status_code=422,
        )

    @app.exception_handler(ListingError)
    async def bad_listing(request: Request, exc: ListingError) -> Response:
        field = {"field": exc.param, "location": "query", "message": exc.message}
        return JSONResponse(
            {"error": f"invalid request: {exc}", "status": 422, "fields": [field]},
            status_code=422,
        )

    @app.exception_handler(Invalid)
    async def invalid_for_data(request: Request, exc: Invalid) -> Response:
        # A rule checked against stored data: answered exactly like a schema error.
        return await invalid(request, RequestValidationError(exc.errors()))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        if not request.url.path.startswith("/api/"):
            return error_page(request, 404, str(exc))
        return JSONResponse({"error": str(exc), "status": 404}, status_code=404)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return login_redirect(exc)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> Response:
        return JSONResponse({"error": str(exc), "status": 409}, status_code=409)


def _install_ops(app: FastAPI) -> None:
    @app.get(
        "/healthz",
        tags=["ops"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"example": "ok\n"}}}},
    )
    async def healthz() -> str:
        """The process is alive."""
        return "ok\n"

    @app.get(
        "/readyz",
        tags=["ops"],
        responses={
            200: {"model": ReadyOut, "description": "Ready"},
            503: {
                "model": ReadyOut,
                "description": "Not ready: the failing check says why",
                "content": {
                    "application/json": {
                        "example": {
                            "ready": False,
                            "database": "migrations pending: 0010",
                            "nats": "ok",
                        }
                    }
                },
            },
        },
    )
    async def readyz(request: Request) -> Response:
        """The database answers with its schema at head, and NATS answers."""
        st = app_state(request)
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(asyncio.to_thread(ping, st.engine), timeout=5)
            # A schema behind the code is not ready either: the routes would fail on it.
            checks["database"] = st.schema
        except Exception as exc:
            down = isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError))
            name = type(exc).__name__
            checks["database"] = f"unreachable ({name})" if down else f"failed: {name}"
        checks["nats"] = "ok" if st.bus.nc.is_connected else "disconnected"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {
                    "text/plain": {
                        "example": "# HELP tonerwatch_api_open_alerts Unresolved alerts by severity\n"
                        "# TYPE tonerwatch_api_open_alerts gauge\n"
                        'tonerwatch_api_open_alerts{severity="warning"} 3\n'
                        "# HELP tonerwatch_api_printers Printers by status\n"
                        "# TYPE tonerwatch_api_printers gauge\n"
                        'tonerwatch_api_printers{status="attention"} 2\n'
                        'tonerwatch_api_printers{status="ok"} 40\n'
                    }
                },
            }
        },
    )
    async def metrics(request: Request) -> Response:
        """Prometheus text format: events applied, projection lag, alerts, printers, dead letters."""
        st = app_state(request)
        alerts = await run_tx(st.engine, open_alert_counts)
        printers = await run_tx(st.engine, printer_status_counts)
        dead = await run_tx(st.engine, dead_outbox_events)
        try:
            letters: dict[str, int] | None = await asyncio.wait_for(
                st.bus.dead_letter_counts(), timeout=5
            )
        except Exception as exc:  # NATS away: the other families still answer
            log.warning("dead letter counts unavailable: %r", exc)
            letters = None
        return PlainTextResponse(
            st.metrics.render(alerts, printers, dead, letters),
            media_type="text/plain; version=0.0.4",
        )
