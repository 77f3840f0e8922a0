"""The upstream contract: what the syncer sends a supplier's portal, where, and what the portal answers.

Every request is a signed POST (tonerwatch_shared.signing: one header set, the webhooks' too) to
`<TONERWATCH_SYNC_URL>/v1/...` with a JSON body, gzip-compressed (`Content-Encoding: gzip`) for
the fleet documents; the signature covers the body bytes as sent. Each body carries an id the
portal dedupes on (also `Idempotency-Key` and `X-TonerWatch-Event-Id`): delivery is at least
once. docs/upstream-openapi.yaml is generated from this module (`write_openapi`).

- `POST /v1/events`: alerts, replacements and orders as they happen (the event's JSON).
- `POST /v1/snapshots`: the daily fleet snapshot of one site (and at each month's turn).
- `POST /v1/reorders`: at once when a supply crosses its reorder point, with the printer's snapshot.
- `POST /v1/meter-reads`: every printer's page meters at the turn of the month, for billing.
- `POST /v1/downlink`: what the portal has for a site since a cursor (confirmations, shipments,
  cancellations, messages); the answer is signed by the portal with the same scheme.
"""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from tonerwatch_shared import events as ev
from tonerwatch_shared.coverage import Coverage
from tonerwatch_shared.events import SiteId
from tonerwatch_shared.printer.model import Counters, PrinterStatus, Supply

CONTRACT_VERSION = "1.1.0"
EVENTS_PATH = "/v1/events"
SNAPSHOTS_PATH = "/v1/snapshots"
REORDERS_PATH = "/v1/reorders"
METER_READS_PATH = "/v1/meter-reads"
DOWNLINK_PATH = "/v1/downlink"

# Namespace of document ids: derived from what a document is (site, day, kind), so a resend after
# a crash carries the same id and the portal drops the repeat.
_DOC_NS = uuid.UUID("0b9f7a52-3c1d-4e8a-9f6b-5d2e7c1a4b90")


def document_id(kind: str, *parts: str) -> uuid.UUID:
    """Return the stable id of the document of kind identified by parts (e.g. site and day)."""
    return uuid.uuid5(_DOC_NS, "/".join((kind, *parts)))


def _now() -> datetime:
    return datetime.now(UTC)


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PrinterEntry(_Doc):
    """One printer as the portal sees it: who it is, where, its supplies, meters and status."""

    printer_id: str = Field(description="TonerWatch's id of the printer (stable)")
    name: str | None = None
    address: str = Field(description="IP address or host name it is polled at")
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    mac_address: str | None = None
    location: str | None = Field(default=None, description="Configured location, else sysLocation")
    firmware: str | None = None
    supplies: tuple[Supply, ...] = ()
    counters: Counters = Field(default_factory=Counters)
    status: PrinterStatus = Field(default_factory=PrinterStatus)
    reachable: bool = True
    last_read_at: AwareDatetime | None = Field(
        default=None, description="When the printer last answered a poll"
    )
    coverage: Coverage | None = Field(
        default=None,
        description="Service coverage earned through TonerWatch (continuous monitoring, then "
        "orders), as our records show it when the document was made",
    )


class FleetSnapshot(_Doc):
    """Every printer of one site, with its service coverage: sent daily at the configured time."""

    type: Literal["tonerwatch.fleet_snapshot.v1"] = "tonerwatch.fleet_snapshot.v1"
    path: ClassVar[str] = SNAPSHOTS_PATH
    id: uuid.UUID = Field(description="uuid5 of site and day: the same on every resend")
    site_id: SiteId
    taken_at: AwareDatetime = Field(default_factory=_now)
    day: date = Field(description="The site-local day this snapshot is for")
    printers: tuple[PrinterEntry, ...] = ()


class ReorderPush(_Doc):
    """A supply crossed its reorder point (low threshold or the forecast's lead time)."""

    type: Literal["tonerwatch.reorder_point.v1"] = "tonerwatch.reorder_point.v1"
    path: ClassVar[str] = REORDERS_PATH
    id: uuid.UUID = Field(description="uuid5 of the alert event: the same on every resend")
    site_id: SiteId
    occurred_at: AwareDatetime
    alert_id: str = Field(description="Stable id of the condition (printer, supply, rule)")
    rule: str = Field(description="low (threshold) or forecast (runs out within the lead time)")
    supply_index: str | None = None
    part_number: str | None = None
    percent: float | None = None
    days_to_empty: float | None = None
    printer: PrinterEntry


class MeterRead(_Doc):
    """One printer's page meters at the turn of the month."""

    printer_id: str
    serial: str | None = None
    vendor: str | None = None
    model: str | None = None
    read_at: AwareDatetime | None = Field(
        default=None, description="When these counters were read from the printer"
    )
    counters: Counters = Field(default_factory=Counters)


class MeterReads(_Doc):
    """Billing meters of every printer of one site for a month, read at its end."""

    type: Literal["tonerwatch.meter_reads.v1"] = "tonerwatch.meter_reads.v1"
    path: ClassVar[str] = METER_READS_PATH
    id: uuid.UUID = Field(description="uuid5 of site and month: the same on every resend")
    site_id: SiteId
    period: str = Field(pattern=r"^\d{4}-\d{2}$", description="The month read, YYYY-MM")
    taken_at: AwareDatetime = Field(default_factory=_now)
    reads: tuple[MeterRead, ...] = ()


class DownlinkRequest(_Doc):
    """The syncer asks what the portal has for a site since the cursor it last got."""

    type: Literal["tonerwatch.downlink_request.v1"] = "tonerwatch.downlink_request.v1"
    path: ClassVar[str] = DOWNLINK_PATH
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    site_id: SiteId
    cursor: str | None = Field(default=None, description="From the previous answer; None: all")


class DownlinkItem(_Doc):
    """One thing the portal tells a site: an order confirmed, shipped or cancelled, or a message."""

    id: str = Field(min_length=1, max_length=128, description="The portal's id: applied once")
    kind: Literal["order_confirmed", "order_shipped", "order_cancelled", "message"]
    order_id: str | None = Field(default=None, description="TonerWatch's order id it is about")
    supplier_reference: str | None = Field(default=None, description="The portal's order number")
    carrier: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    reason: str | None = Field(default=None, description="Why an order was cancelled")
    text: str | None = Field(default=None, max_length=2000, description="A message's text")
    at: AwareDatetime


class DownlinkAnswer(_Doc):
    """The portal's answer: items after the cursor, oldest first, and the cursor to ask with next."""

    type: Literal["tonerwatch.downlink.v1"] = "tonerwatch.downlink.v1"
    site_id: SiteId
    items: tuple[DownlinkItem, ...] = ()
    cursor: str | None = Field(default=None, description="Send it back next time")


class Accepted(_Doc):
    """What the portal answers a delivery with (202; 200 and 409 mean it already had it)."""

    accepted: bool = True
    id: str | None = None


Document = FleetSnapshot | ReorderPush | MeterReads | DownlinkRequest


def cursor_etag(cursor: str | None) -> str | None:
    """Return the entity tag of a downlink cursor (`"<cursor>"`), None when it cannot be one.

    The syncer sends it as `If-None-Match` with its downlink request; a portal with nothing after
    the cursor answers 304 with no body, the cheapest exchange (docs/upstream-openapi.yaml).
    """
    if (
        not cursor
        or len(cursor) > 200
        or any(c == '"' or not (0x21 <= ord(c) <= 0x7E) for c in cursor)
    ):
        return None
    return f'"{cursor}"'


def gzip_body(body: bytes) -> bytes:
    """Return body gzip-compressed (mtime 0: the same bytes for the same body)."""
    return gzip.compress(body, compresslevel=6, mtime=0)


# --- the OpenAPI document -----------------------------------------------------------------------

_HEADERS = [
    (
        "X-TonerWatch-Event-Id",
        "The body's id (event_id or id): dedupe on it, delivery is at least once",
        True,
    ),
    ("X-TonerWatch-Event-Type", "The body's type, e.g. tonerwatch.fleet_snapshot.v1", True),
    ("X-TonerWatch-Timestamp", "Unix seconds when it was sent", True),
    (
        "X-TonerWatch-Signature",
        "sha256=<hex>: HMAC-SHA256 with the shared secret over `<timestamp>.` followed by the "
        "body bytes as sent (compressed when Content-Encoding is gzip); absent without a secret",
        False,
    ),
    ("Idempotency-Key", "The same id again, for gateways that dedupe on it", True),
]


def _parameters() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "header",
            "required": required,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, text, required in _HEADERS
    ]


def _delivery(summary: str, schema: str, gzipped: bool, description: str) -> dict[str, Any]:
    params = _parameters()
    if gzipped:
        params.append(
            {
                "name": "Content-Encoding",
                "in": "header",
                "required": True,
                "description": "gzip: the JSON body is compressed; signed as sent",
                "schema": {"type": "string", "enum": ["gzip"]},
            }
        )
    return {
        "post": {
            "summary": summary,
            "description": description,
            "operationId": schema[0].lower() + schema[1:],
            "parameters": params,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
                },
            },
            "responses": {
                "202": _answer("Taken; it will not be sent again"),
                "200": _answer("Taken (same as 202)"),
                "409": _answer("Already taken (a repeat of an id): counted as delivered"),
                "401": {"description": "Signature missing, stale or wrong: retried, logged"},
                "5XX": {
                    "description": "Not taken: retried with back-off until the portal takes it"
                },
            },
        }
    }


def _answer(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
    }


EVENT_TYPES_SENT = (
    "tonerwatch.threshold_crossed.v1",
    "tonerwatch.alert_resolved.v1",
    "tonerwatch.supply_replaced.v1",
    "tonerwatch.order_changed.v1",
)


def openapi_document() -> dict[str, Any]:
    """Return the portal's side of the upstream contract as an OpenAPI 3.1 document."""
    models: list[type[BaseModel]] = [
        FleetSnapshot,
        ReorderPush,
        MeterReads,
        DownlinkRequest,
        DownlinkAnswer,
        Accepted,
        ev.ThresholdCrossed,
        ev.AlertResolved,
        ev.SupplyReplaced,
        ev.OrderChanged,
    ]
    _, top = models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(sorted(top["$defs"].items()))
    schemas["Event"] = {
        "description": "An event as published on our bus; its `type` says which",
        "oneOf": [
            {"$ref": "#/components/schemas/ThresholdCrossed"},
            {"$ref": "#/components/schemas/AlertResolved"},
            {"$ref": "#/components/schemas/SupplyReplaced"},
            {"$ref": "#/components/schemas/OrderChanged"},
        ],
    }
    downlink = _delivery(
        "What the portal has for a site since a cursor",
        "DownlinkRequest",
        False,
        "Polled by the syncer every TONERWATCH_SYNC_DOWNLINK_INTERVAL_S per site. The portal "
        "answers 200 with the items after the cursor, oldest first, and the next cursor, signed "
        "with the same headers (X-TonerWatch-Signature over its answer's body); an item is applied "
        'once, by its id. With a cursor the request carries `If-None-Match: "<cursor>"`: a '
        "portal with nothing after it should answer 304 with no body (any 200 is still taken).",
    )
    downlink["post"]["parameters"].append(
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": 'The cursor sent in the body, quoted ("<cursor>"): answer 304 when '
            "nothing came after it",
            "schema": {"type": "string"},
        }
    )
    downlink["post"]["parameters"].append(
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "description": "wait=N (RFC 7240), sent when TONERWATCH_SYNC_DOWNLINK_WAIT_S is set: "
            "a long poll. A portal that supports it holds a request it has nothing for until it "
            "has, or N seconds passed; one that does not answers at once (both are fine)",
            "schema": {"type": "string", "examples": ["wait=600"]},
        }
    )
    downlink["post"]["responses"] = {
        "200": {
            "description": "Items after the cursor (maybe none) and the next cursor; signed",
            "headers": {
                "X-TonerWatch-Timestamp": {"schema": {"type": "string"}},
                "X-TonerWatch-Signature": {"schema": {"type": "string"}},
            },
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/DownlinkAnswer"}}
            },
        },
        "304": {
            "description": "Nothing after the cursor named in If-None-Match; no body, no signature",
            "headers": {"ETag": {"schema": {"type": "string"}}},
        },
        "401": {"description": "Signature missing, stale or wrong"},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TonerWatch upstream contract (the portal's side)",
            "version": CONTRACT_VERSION,
            "description": (
                "What a TonerWatch installation's syncer sends a supplier's portal, when, how it "
                "is signed and what the portal answers. Generated from "
                "shared/src/tonerwatch_shared/upstream.py; the reference portal "
                "(`tonerwatch portal`) implements it. Signing: HMAC-SHA256 over `<timestamp>.` "
                "+ body, the same headers as TonerWatch's webhooks; verify with "
                "tonerwatch_shared.signing.check, refuse timestamps more than 300 s off, drop "
                "ids already taken. Delivery is at least once and, per printer, in order."
            ),
        },
        "servers": [
            {
                "url": "{base}",
                "variables": {"base": {"default": "https://portal.example.com/tonerwatch"}},
            }
        ],
        "paths": {
            EVENTS_PATH: _delivery(
                "An alert, replacement or order as it happens",
                "Event",
                False,
                "Sent at once for each of: " + ", ".join(EVENT_TYPES_SENT) + ". Events of one "
                "printer arrive in the order they happened; an alert's crossed and resolved "
                "carry `seq` (the printer's sequence), and the syncer never sends one older than "
                "what it sent for that alert_id (a receiver may keep the highest seq per alert_id "
                "and drop older). The (deprecated) header "
                "X-TonerWatch-Event repeats the type for portals built before 1.0; it goes in 2.0.",
            ),
            SNAPSHOTS_PATH: _delivery(
                "The daily fleet snapshot of a site",
                "FleetSnapshot",
                True,
                "Once a day per site at TONERWATCH_SYNC_SNAPSHOT_AT (site-local time, "
                "TONERWATCH_SYNC_TIMEZONE): every printer with address, vendor, model, serial, "
                "location, supplies, page meters, status and service coverage.",
            ),
            REORDERS_PATH: _delivery(
                "A supply reached its reorder point",
                "ReorderPush",
                True,
                "At once when a supply crosses its low threshold or its forecast runs out "
                "within the lead time, with the printer's latest snapshot.",
            ),
            METER_READS_PATH: _delivery(
                "Month-end meter reads of a site",
                "MeterReads",
                True,
                "At the turn of each month (site-local), every printer's page meters for billing.",
            ),
            DOWNLINK_PATH: downlink,
        },
        "components": {"schemas": schemas},
    }


OPENAPI_PATH = Path(__file__).resolve().parents[3] / "docs" / "upstream-openapi.yaml"


def openapi_yaml() -> str:
    """Return the OpenAPI document as YAML (needs PyYAML, a development dependency)."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    header = "# Generated by tonerwatch_shared.upstream.write_openapi(); do not edit by hand.\n"
    text: str = yaml.safe_dump(openapi_document(), sort_keys=False, allow_unicode=True, width=100)
    return header + text


def write_openapi(path: Path = OPENAPI_PATH) -> Path:
    """Write docs/upstream-openapi.yaml; return its path."""
    path.write_text(openapi_yaml())
    return path
