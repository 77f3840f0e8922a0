"""A reference upstream portal: takes what the syncer sends (docs/upstream-openapi.yaml) and serves a downlink.

For integrators (`tonerwatch portal`: see what an installation sends, before writing their own)
and for the tests. It checks every delivery's signature (tonerwatch_shared.signing), drops repeats
by id (and a second "created" of one order id: one order, however often it is sent), keeps what it took in memory (and appends it to a JSON-lines file when given one), and
answers downlink requests from per-site queues that `POST /admin/downlink` (or `Portal.queue`)
fills (304 with no body when If-None-Match names the cursor and nothing came after it; with
`Prefer: wait=N` a request with nothing to answer is held until something is queued or N s pass). `/admin/*` is unsigned: bind the portal to loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tonerwatch_shared.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    ReplayGuard,
    SignatureRejected,
    sign,
)
from tonerwatch_shared.upstream import (
    DOWNLINK_PATH,
    EVENTS_PATH,
    METER_READS_PATH,
    REORDERS_PATH,
    SNAPSHOTS_PATH,
    DownlinkAnswer,
    DownlinkItem,
    DownlinkRequest,
    cursor_etag,
)

log = logging.getLogger("tonerwatch.portal")

DELIVERY_PATHS = (EVENTS_PATH, SNAPSHOTS_PATH, REORDERS_PATH, METER_READS_PATH)
MAX_BODY_BYTES = 64 * 1024 * 1024
ORDER_CHANGED = "tonerwatch.order_changed.v1"


# The longest a downlink request is held (Prefer: wait=N asks for N seconds).
MAX_HOLD_S = 3600.0


def prefer_wait(prefer: str | None) -> float:
    """Return the seconds a `Prefer: wait=N` header asks to hold a request (RFC 7240), else 0."""
    for part in (prefer or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return max(0.0, min(MAX_HOLD_S, float(value.strip())))
            except ValueError:
                return 0.0
    return 0.0


@dataclass(frozen=True)
class Received:
    """One delivery the portal took: where, its headers, the bytes as sent and the JSON inside."""

    path: str
    headers: dict[str, str]
    raw: bytes
    document: dict[str, Any]
    at: float

    @property
    def type(self) -> str:
        """Return the document's type (e.g. tonerwatch.fleet_snapshot.v1)."""
        return str(self.document.get("type", ""))


@dataclass
class Portal:
    """The portal's state: what it took, what it has to say per site, and whether it is "down"."""

    secret: str | None = None
    store: Path | None = None
    received: list[Received] = field(default_factory=list)
    downlink: dict[str, list[DownlinkItem]] = field(default_factory=dict)
    # Set to answer every delivery 503 (an outage), to test retries.
    down: bool = False
    refused: int = 0
    duplicates: int = 0
    # Downlink requests answered 304 (nothing after the cursor in If-None-Match).
    not_modified: int = 0
    # Our order ids whose creation the portal took, in order: a second "created" of one is a repeat.
    order_ids: list[str] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set)
    # Long polls waiting for something to be queued, per site.
    _held: dict[str, list[asyncio.Future[None]]] = field(default_factory=dict)
    _guard: ReplayGuard | None = None

    def __post_init__(self) -> None:
        if self.secret:
            self._guard = ReplayGuard(self.secret)

    def of_type(self, doc_type: str) -> list[dict[str, Any]]:
        """Return the documents taken of doc_type, in the order they came."""
        return [r.document for r in self.received if r.type == doc_type]

    def queue(self, site_id: str, item: DownlinkItem) -> None:
        """Add item to what the portal tells site_id on its next downlink request (or a held one)."""
        self.downlink.setdefault(site_id, []).append(item)
        for waiting in self._held.pop(site_id, []):
            if not waiting.done():
                waiting.set_result(None)

    def release(self) -> None:
        """Answer every held long poll now (the portal is stopping)."""
        for held in self._held.values():
            for waiting in held:
                if not waiting.done():
                    waiting.set_result(None)
        self._held.clear()

    async def _hold(self, site_id: str, wait_s: float) -> None:
        """Return when something is queued for site_id or after wait_s (a long poll)."""
        waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held.setdefault(site_id, []).append(waiting)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiting, wait_s)

    async def deliver(self, request: web.Request) -> web.Response:
        """Take one signed delivery (202), a repeat of an id (200), or refuse it (401/503)."""
        if self.down:
            self.refused += 1
            return web.json_response({"error": "portal down"}, status=503)
        raw = await request.read()
        headers = dict(request.headers)
        try:
            fresh = self._admit(headers, raw)
        except SignatureRejected as exc:
            log.warning("refused %s: %s", request.path, exc)
            return web.json_response({"error": str(exc)}, status=401)
        doc_id = headers.get(EVENT_ID_HEADER, "")
        if not fresh:
            self.duplicates += 1
            return web.json_response({"accepted": True, "id": doc_id}, status=200)
        body = gzip.decompress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "body is not JSON"}, status=400)
        if self._repeat_order(document):
            self.duplicates += 1
            return web.json_response({"accepted": True, "id": doc_id}, status=200)
        taken = Received(request.path, headers, raw, document, time.time())
        self.received.append(taken)
        log.info("took %s %s (%d bytes)", headers.get(EVENT_TYPE_HEADER), doc_id, len(raw))
        if self.store is not None:
            with self.store.open("a") as out:
                out.write(
                    json.dumps({"path": taken.path, "at": taken.at, "document": document}) + "\n"
                )
        return web.json_response({"accepted": True, "id": doc_id}, status=202)

    def _repeat_order(self, document: dict[str, Any]) -> bool:
        """Return whether document creates an order the portal already has (else note the order)."""
        if document.get("type") != ORDER_CHANGED or document.get("change") != "created":
            return False
        order_id = str(document.get("order_id"))
        if order_id in self.order_ids:
            return True
        self.order_ids.append(order_id)
        return False

    def _admit(self, headers: dict[str, str], raw: bytes) -> bool:
        if self._guard is not None:
            return self._guard.admit(headers, raw)
        doc_id = headers.get(EVENT_ID_HEADER, "")
        if doc_id in self._ids:
            return False
        self._ids.add(doc_id)
        return True

    async def answer_downlink(self, request: web.Request) -> web.Response:
        """Return the items queued for the site after the request's cursor, signed."""
        raw = await request.read()
        try:
            if self._guard is not None:
                self._guard.admit(dict(request.headers), raw)
            asked = DownlinkRequest.model_validate_json(raw)
        except SignatureRejected as exc:
            return web.json_response({"error": str(exc)}, status=401)
        except ValueError as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        self.received.append(
            Received(request.path, dict(request.headers), raw, json.loads(raw), time.time())
        )
        start = int(asked.cursor) if asked.cursor and asked.cursor.isdigit() else 0
        wait_s = prefer_wait(request.headers.get("Prefer"))
        if wait_s and start >= len(self.downlink.get(asked.site_id, [])):
            await self._hold(asked.site_id, wait_s)
        items = self.downlink.get(asked.site_id, [])
        etag = cursor_etag(str(len(items)))
        if start >= len(items) and etag and request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        answer = DownlinkAnswer(
            site_id=asked.site_id, items=tuple(items[start:]), cursor=str(len(items))
        )
        body = answer.model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers.update(sign(body, self.secret, int(time.time())))
        return web.Response(body=body, headers=headers)

    async def admin_queue(self, request: web.Request) -> web.Response:
        """Queue a downlink item: body {"site_id": ..., "item": {...}} (unsigned, loopback only)."""
        raw = await request.json()
        item = DownlinkItem.model_validate(raw["item"])
        self.queue(str(raw["site_id"]), item)
        return web.json_response({"queued": item.id}, status=201)

    async def admin_received(self, request: web.Request) -> web.Response:
        """Return what the portal took, optionally only of ?type=."""
        wanted = request.query.get("type")
        docs = [
            {"path": r.path, "at": r.at, "bytes": len(r.raw), "document": r.document}
            for r in self.received
            if wanted is None or r.type == wanted
        ]
        return web.json_response(docs)

    def app(self) -> web.Application:
        """Return the aiohttp application serving the contract's paths under /."""
        # The signature covers the bytes as sent: aiohttp must not inflate gzip bodies before we check.
        app = web.Application(
            client_max_size=MAX_BODY_BYTES, handler_args={"auto_decompress": False}
        )
        for path in DELIVERY_PATHS:
            app.router.add_post(path, self.deliver)
        app.router.add_post(DOWNLINK_PATH, self.answer_downlink)
        app.router.add_post("/admin/downlink", self.admin_queue)
        app.router.add_get("/admin/received", self.admin_received)
        return app


@contextlib.asynccontextmanager
async def serving(
    portal: Portal, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve portal on host:port while the block runs; yield its base URL (the syncer's TONERWATCH_SYNC_URL)."""
    runner = web.AppRunner(portal.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://{host}:{port}"
    finally:
        portal.release()
        await runner.cleanup()


__all__ = ["DELIVERY_PATHS", "Portal", "Received", "prefer_wait", "serving"]
