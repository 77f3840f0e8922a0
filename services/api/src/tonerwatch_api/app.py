"""The FastAPI application: REST API, web UI, health, readiness and metrics, with JSON errors."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from tonerwatch_api import alert_settings, api, pages, ui
from tonerwatch_api.db import ping, run_tx
from tonerwatch_api.listing import ListingError
from tonerwatch_api.live import LiveAlerts
from tonerwatch_api.login_limits import LoginLimiter
from tonerwatch_api.metrics import Metrics
from tonerwatch_api.projections import Outbox
from tonerwatch_api.settings import Settings
from tonerwatch_api.state import AppState, app_state
from tonerwatch_api.store import Conflict, NotFound, open_alert_counts, printer_status_counts
from tonerwatch_shared.bus import Bus

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
    app = FastAPI(
        title="TonerWatch API",
        version="1",
        description="Printer fleet supplies: sites, printers, supply levels, alerts.",
        docs_url="/api/docs",
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
            max_per_user=settings.login_max_failures,
            max_per_ip=settings.login_max_failures_per_ip,
            window_s=settings.login_window_s,
        ),
    )
    app.state.tw = st
    app.include_router(api.router)
    app.include_router(alert_settings.router)
    app.include_router(ui.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _install_errors(app)
    _install_ops(app)
    return app


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/api/") and exc.status_code in (403, 404):
            return ui.error_page(request, exc.status_code, str(exc.detail))
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

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        if not request.url.path.startswith("/api/"):
            return ui.error_page(request, 404, str(exc))
        return JSONResponse({"error": str(exc), "status": 404}, status_code=404)

    @app.exception_handler(ui.LoginRequired)
    async def login_required(request: Request, exc: ui.LoginRequired) -> Response:
        return ui.login_redirect(exc)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> Response:
        return JSONResponse({"error": str(exc), "status": 409}, status_code=409)


def _install_ops(app: FastAPI) -> None:
    @app.get("/healthz", tags=["ops"], response_class=PlainTextResponse)
    async def healthz() -> str:
        """The process is alive."""
        return "ok\n"

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> Response:
        """The database and NATS answer."""
        st = app_state(request)
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(asyncio.to_thread(ping, st.engine), timeout=5)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"failed: {type(exc).__name__}"
        checks["nats"] = "ok" if st.bus.nc.is_connected else "disconnected"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        """Prometheus text format: events applied, projection lag, alerts, printers."""
        st = app_state(request)
        alerts = await run_tx(st.engine, open_alert_counts)
        printers = await run_tx(st.engine, printer_status_counts)
        return PlainTextResponse(
            st.metrics.render(alerts, printers), media_type="text/plain; version=0.0.4"
        )
