"""REST /events/stream: live alerts as server-sent events."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import ERRORS, AppState, Viewer, app_state
from tonerwatch_api.domain.access import Principal, still_allowed
from tonerwatch_api.domain.printers import printer_name
from tonerwatch_api.domain.tenancy import site_tenants
from tonerwatch_api.live import Live, PrinterChanged, sse, toast
from tonerwatch_shared.events import printer_of

router = APIRouter(prefix="/api/v1")
CHANGE_RECHECK_S = 5.0  # how often 'printer' frames re-check the caller (alert frames: each)


@router.get(
    "/events/stream",
    tags=["events"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream: a retry hint, then one 'alert' frame (JSON data) "
            "per alert raised or resolved, one 'printer' frame (data: {printer_id}) each time a "
            "printer's stored data changes (a reading, its status, an alert applied), and a "
            "comment every 15 s while quiet; the caller is checked again before every alert "
            "frame (and every 5 s of printer frames), and once logged out, disabled or deleted "
            "an 'end' frame (data: the reason) closes the stream",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": "retry: 5000\n\n"
                    + sse(
                        "alert",
                        {
                            "kind": "raised",
                            "severity": "warning",
                            "title": "Reception colour",
                            "message": "Low toner — Cyan Toner CF411A 8%, about 5 days left",
                            "printer_id": "p-3f2a9c01de",
                            "url": "/printers/p-3f2a9c01de",
                        },
                    )
                    + ": keep-alive\n\n",
                }
            },
        },
        **ERRORS,
    },
)
async def event_stream(request: Request, who: Viewer) -> StreamingResponse:
    """Server-sent events: 'alert' frames as alerts are raised or resolved in the caller's tenant, 'printer' frames as its printers' data changes."""
    st = app_state(request)
    return StreamingResponse(
        alert_frames(request, st, who),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def alert_frames(
    request: Request, st: AppState, who: Principal, keepalive_s: float = 15.0
) -> AsyncIterator[str]:
    """Yield SSE frames for the caller's tenant until the client leaves or the server stops."""
    tenants: dict[str, str] = {}

    async def ended() -> str | None:
        # Checked before every frame: a logged-out, disabled or deleted user hears no more.
        why = await run_tx(st.engine, lambda s: still_allowed(s, who, datetime.now(UTC)))
        return None if why is None else sse("end", {"reason": why})

    checked_at = time.monotonic()
    with st.live.listen() as queue:
        # Sent once listening, so a client that got it misses nothing after.
        yield "retry: 5000\n\n"
        while not st.stop.is_set():
            event = await next_or_stop(queue, st.stop, keepalive_s)
            if st.stop.is_set():
                return
            if event is None:
                if await request.is_disconnected():
                    return
                if (end := await ended()) is not None:
                    yield end
                    return
                yield ": keep-alive\n\n"
                continue
            if event.site_id not in tenants:
                tenants.update(await run_tx(st.engine, site_tenants))
            if tenants.get(event.site_id) != who.tenant_id:
                continue
            if isinstance(event, PrinterChanged):
                # Only an id (the page fetches what changed, with the caller's rights), so the
                # caller is checked again at most every CHANGE_RECHECK_S, not on every reading.
                now = time.monotonic()
                if now - checked_at >= CHANGE_RECHECK_S:
                    checked_at = now
                    if (end := await ended()) is not None:
                        yield end
                        return
                frame: dict[str, object] = {"printer_id": event.printer_id}
                if event.alerts:
                    frame["alerts"] = (
                        True  # the alerts list changed too (the Alerts page reloads it)
                    )
                yield sse("printer", frame)
                continue
            printer_id = printer_of(event) or ""
            name = await run_tx(st.engine, functools.partial(printer_name, printer_id=printer_id))
            if (end := await ended()) is not None:
                yield end
                return
            yield sse("alert", toast(event, name))


async def next_or_stop(
    queue: asyncio.Queue[Live], stop: asyncio.Event, timeout_s: float
) -> Live | None:
    """Return the next queued event, or None after timeout_s or once stop is set."""
    getter = asyncio.ensure_future(queue.get())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait(
            {getter, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
        if not getter.done():
            getter.cancel()
    return getter.result() if getter.done() and not getter.cancelled() else None
