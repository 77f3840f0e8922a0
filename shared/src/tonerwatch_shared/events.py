"""Versioned events, the only way services talk: frozen models, JSON on NATS, schemas checked in.

Rules: a reader ignores fields it does not know (tolerant); a producer never removes or changes the
meaning of a field in place — a breaking change is a new version (`...v2`) alongside the old one.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from tonerwatch_shared import subjects as sj
from tonerwatch_shared.coverage import Coverage
from tonerwatch_shared.ordering import SEQ_MAX
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterIdentity,
    PrinterStatus,
    Supply,
    SupplyKind,
    Tray,
)
from tonerwatch_shared.snmp.target import SnmpTarget

SiteId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Fields every event carries; `event_id` is also the Nats-Msg-Id, so JetStream drops repeats."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # The subject's `area.what` (see subjects.py); the events stream's subjects come from these.
    area_what: ClassVar[str]
    # Whether the subject ends in a key (printer or job id) after area.what.
    keyed: ClassVar[bool] = False
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: AwareDatetime = Field(default_factory=_now)
    source: str = Field(description="Service (and instance) that produced the event")
    site_id: SiteId

    def subject_key(self) -> str | None:
        """Return the last subject token (printer or job id), or None for unkeyed events."""
        return None

    def subject(self, subjects: sj.Subjects) -> str:
        """Return the NATS subject this event is published on."""
        return subjects.subject(self.site_id, self.area_what, self.subject_key())

    @classmethod
    def subject_area(cls) -> str:
        """Return the area token of this event's subjects (e.g. "alert")."""
        return sj.area_of(cls.area_what)

    @classmethod
    def subject_filter(cls, subjects: sj.Subjects, site: str = "*") -> str:
        """Return the filter matching this event type on site (every site by default)."""
        return subjects.filter(cls.area_what, site=site, keyed=cls.keyed)

    def to_bytes(self) -> bytes:
        """Return the JSON wire form."""
        return self.model_dump_json().encode()


class SnmpCredentials(BaseModel):
    """How to talk SNMP to one printer; secrets never appear in repr or logs."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"version": "2c", "community": "public"},
                {
                    "version": "3",
                    "user": "tonerwatch",
                    "auth_protocol": "SHA256",
                    "auth_key": "example-auth-passphrase",
                    "priv_protocol": "AES",
                    "priv_key": "example-priv-passphrase",
                },
            ]
        },
    )

    version: Literal["1", "2c", "3"] = "2c"
    community: str = Field(default="public", repr=False)
    user: str | None = None
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] | None = None
    auth_key: str | None = Field(default=None, repr=False)
    priv_protocol: Literal["DES", "AES", "AES192", "AES256"] | None = None
    priv_key: str | None = Field(default=None, repr=False)

    def target(
        self, address: str, port: int = 161, *, timeout_s: float, retries: int
    ) -> SnmpTarget:
        """Return the SNMP target for address:port with these credentials."""
        return SnmpTarget(
            host=address,
            port=port,
            version=self.version,
            community=self.community,
            user=self.user,
            auth_protocol=self.auth_protocol,
            auth_key=self.auth_key,
            priv_protocol=self.priv_protocol,
            priv_key=self.priv_key,
            timeout=timeout_s,
            retries=retries,
        )


class PrinterEvent(Event):
    """An event about one printer: keyed (and ordered) by its printer_id."""

    keyed: ClassVar[bool] = True
    printer_id: str = Field(min_length=1, max_length=128)

    def subject_key(self) -> str | None:
        """Return the printer id, the subject's last token."""
        return self.printer_id


class SequencedEvent(PrinterEvent):
    """A printer event that carries the printer's sequence number (tonerwatch_shared.ordering)."""

    seq: int | None = Field(
        default=None,
        ge=0,
        le=SEQ_MAX,
        description="Grows with every event the poller publishes about the printer (an alert "
        "event carries its cause's): receivers drop an event older than what they applied. "
        "None from producers older than the field: then occurred_at orders",
    )


def printer_of(event: Event) -> str | None:
    """Return the printer an event is about (None for events about no one printer)."""
    return event.printer_id if isinstance(event, PrinterEvent) else None


class PrinterFound(Event):
    """Discovery (or a manual add) identified a printer at an address."""

    type: Literal["tonerwatch.printer_found.v1"] = "tonerwatch.printer_found.v1"
    area_what: ClassVar[str] = sj.PRINTER_FOUND
    job_id: str | None = None
    address: str
    port: int = 161
    identity: PrinterIdentity
    credentials_name: str | None = Field(default=None, description="Which credential set answered")
    supplies: tuple[Supply, ...] = ()
    bytes_sent: int = 0
    bytes_received: int = 0
    device_key: str | None = Field(
        default=None,
        description="The key discovery knows the printer by: sn.<vendor>.<serial> or mac.<12 hex>",
    )
    credentials: SnmpCredentials | None = Field(
        default=None,
        description="The credential set that answered; stays on the internal bus, never shown",
    )


class PrinterConfigured(PrinterEvent):
    """A printer is to be monitored (or its settings changed): the poller's source of truth."""

    type: Literal["tonerwatch.printer_configured.v1"] = "tonerwatch.printer_configured.v1"
    area_what: ClassVar[str] = sj.PRINTER_CONFIGURED
    address: str
    port: int = 161
    protocol: Literal["snmp", "ipp", "both"] = "snmp"
    ipp_port: int = 631
    ipp_tls: bool = False
    credentials: SnmpCredentials = Field(default_factory=SnmpCredentials)
    monitored: bool = True
    interval_s: float = Field(default=300.0, gt=0)
    name: str | None = None
    location: str | None = None


class PrinterRemoved(PrinterEvent):
    """A printer is no longer monitored."""

    type: Literal["tonerwatch.printer_removed.v1"] = "tonerwatch.printer_removed.v1"
    area_what: ClassVar[str] = sj.PRINTER_REMOVED


class PrinterCoverage(PrinterEvent):
    """A printer's service coverage from the api's records (system of record), with what it rests on.

    Published by the api when the printer's continuous monitoring or its orders change, at start
    and once a day for every printer (the event id is derived from the content: a repeat is
    dropped). Ordered by occurred_at: a receiver keeps the newest. The syncer's daily snapshot
    evaluates it again at its own time (tonerwatch_shared.coverage.evaluate with `coverage.rule`),
    so a syncer that never saw the printer's older readings or orders still sends the api's figure.
    """

    type: Literal["tonerwatch.printer_coverage.v1"] = "tonerwatch.printer_coverage.v1"
    area_what: ClassVar[str] = sj.PRINTER_COVERAGE
    monitoring_since: AwareDatetime | None = Field(
        description="Start of the current continuous monitoring (printers.monitoring_since)"
    )
    last_seen_at: AwareDatetime | None = Field(
        default=None, description="The printer's newest reading when published"
    )
    orders_at: tuple[AwareDatetime, ...] = Field(
        default=(),
        description="When each order placed through TonerWatch (not cancelled) was placed",
    )
    coverage: Coverage = Field(description="The coverage as of occurred_at, with the rule applied")


class PollRequested(PrinterEvent):
    """Someone asked for a printer to be polled now, out of its schedule (the poller answers)."""

    type: Literal["tonerwatch.poll_requested.v1"] = "tonerwatch.poll_requested.v1"
    area_what: ClassVar[str] = sj.POLL_REQUESTED
    requested_by: str | None = Field(default=None, description="Username of who asked")


class SupplyReading(SequencedEvent):
    """One successful poll of one printer: supplies, trays, counters, status, and what it cost."""

    type: Literal["tonerwatch.supply_reading.v1"] = "tonerwatch.supply_reading.v1"
    area_what: ClassVar[str] = sj.SUPPLY_READING
    address: str
    protocol: Literal["snmp", "ipp", "both"] = "snmp"
    printer: PrinterIdentity
    supplies: tuple[Supply, ...] = ()
    trays: tuple[Tray, ...] = ()
    counters: Counters = Field(default_factory=Counters)
    status: PrinterStatus = Field(default_factory=PrinterStatus)
    missing: tuple[str, ...] = ()
    bytes_sent: int = 0
    bytes_received: int = 0
    requests: int = 0
    duration_ms: float = 0.0
    anomalies: tuple[str, ...] = Field(
        default=(),
        description="What the device sent that was cut, clamped or dropped, and walks a guard "
        "stopped ('<where>: <what>')",
    )


READING_BATCH_TYPE: Literal["tonerwatch.supply_reading_batch.v1"] = (
    "tonerwatch.supply_reading_batch.v1"
)
# Readings per batch at most (the poller's own bound is lower: README "Readings in batches").
READING_BATCH_MAX = 1000


class SupplyReadingBatch(Event):
    """Readings of one site published together: one durable publish, one delivery per consumer.

    Each reading keeps its own event_id and seq, so a consumer applies (and dedupes, and orders)
    them as if each had come alone; Bus.consume hands them to handlers one by one, or all to a
    batch handler. Published on `<root>.<site>.supply.reading.~batch` (subjects.BATCH_KEY), which
    every readings filter matches and no printer's subject is. Consumers older than this type set
    it aside as unknown: upgrade them before the poller (README "Readings in batches").
    """

    type: Literal["tonerwatch.supply_reading_batch.v1"] = READING_BATCH_TYPE
    area_what: ClassVar[str] = sj.SUPPLY_READING
    keyed: ClassVar[bool] = True
    readings: tuple[SupplyReading, ...] = Field(
        min_length=1,
        max_length=READING_BATCH_MAX,
        description="The readings, in the order they were made; all of this event's site",
    )

    @model_validator(mode="after")
    def _one_site(self) -> SupplyReadingBatch:
        if any(r.site_id != self.site_id for r in self.readings):
            raise ValueError("every reading of a batch is of the batch's site")
        return self

    def subject_key(self) -> str | None:
        """Return the batch key (subjects.BATCH_KEY), never a printer's."""
        return sj.BATCH_KEY

    def subject(self, subjects: sj.Subjects) -> str:
        """Return the batch subject of the site's readings."""
        return subjects.batch_subject(self.site_id, self.area_what)


def encode_batch(
    readings: list[bytes],
    *,
    site_id: str,
    source: str,
    event_id: uuid.UUID,
    occurred_at: datetime | None = None,
) -> bytes:
    """Return the JSON of a SupplyReadingBatch of readings already serialized (not parsed again)."""
    head = json.dumps(
        {
            "type": READING_BATCH_TYPE,
            "event_id": str(event_id),
            "occurred_at": (occurred_at or _now()).isoformat(),
            "source": source,
            "site_id": site_id,
        },
        separators=(",", ":"),
    ).encode()
    return b"".join((head[:-1], b',"readings":[', b",".join(readings), b"]}"))


def unbatched(event: Event) -> tuple[Event, ...]:
    """Return the events a message carries: a batch's readings, or the event itself."""
    return event.readings if isinstance(event, SupplyReadingBatch) else (event,)


class PrinterUnreachable(SequencedEvent):
    """A printer missed N polls in a row, or failed once for a reason retrying will not mend
    (a refused SNMPv3 key); published again when the reason changes while it stays down."""

    type: Literal["tonerwatch.printer_unreachable.v1"] = "tonerwatch.printer_unreachable.v1"
    area_what: ClassVar[str] = sj.PRINTER_UNREACHABLE
    address: str
    consecutive_failures: int
    reason: str
    last_success_at: AwareDatetime | None = None
    failure: str | None = Field(
        default=None,
        max_length=40,
        description="Why, as a kind (tonerwatch_shared.failures): auth_failed, unknown_user, "
        "priv_failed, unknown_engine_id, bad_credentials, bad_address, timeout, refused, "
        "unresolvable, ...; None from pollers older than the field",
    )


class PrinterReachable(SequencedEvent):
    """A printer that was unreachable answered again."""

    type: Literal["tonerwatch.printer_reachable.v1"] = "tonerwatch.printer_reachable.v1"
    area_what: ClassVar[str] = sj.PRINTER_REACHABLE
    address: str


class ThresholdCrossed(SequencedEvent):
    """A supply or the printer needs attention: one event per crossing, not per poll."""

    type: Literal["tonerwatch.threshold_crossed.v1"] = "tonerwatch.threshold_crossed.v1"
    area_what: ClassVar[str] = sj.THRESHOLD_CROSSED
    alert_id: str = Field(description="Stable id of the condition (printer, supply, rule)")
    rule: str = Field(
        description="low, critical, empty, forecast, almost_full, full, jammed, door_open, ..."
    )
    severity: Literal["info", "warning", "critical"]
    supply_index: str | None = None
    supply_description: str | None = None
    part_number: str | None = None
    kind: str | None = None
    colour: str | None = None
    percent: float | None = None
    threshold: float | None = None
    days_to_empty: float | None = None
    message: str
    supersedes: str | None = Field(
        default=None,
        description="The alert_id of the same supply's alert this one replaces (resolved with "
        "superseded_by pointing here)",
    )


class AlertResolved(SequencedEvent):
    """The condition behind an alert cleared (new cartridge, jam cleared)."""

    type: Literal["tonerwatch.alert_resolved.v1"] = "tonerwatch.alert_resolved.v1"
    area_what: ClassVar[str] = sj.ALERT_RESOLVED
    alert_id: str
    rule: str
    message: str = ""
    superseded_by: str | None = Field(
        default=None,
        description="The alert_id of the alert that took its place (low -> critical -> empty on "
        "the same supply): the condition goes on under that alert, so nobody is told it cleared",
    )


class SupplyReplaced(SequencedEvent):
    """A supply's level jumped up: a new cartridge."""

    type: Literal["tonerwatch.supply_replaced.v1"] = "tonerwatch.supply_replaced.v1"
    area_what: ClassVar[str] = sj.SUPPLY_REPLACED
    supply_index: str
    description: str
    part_number: str | None = None
    previous_percent: float | None = None
    percent: float | None = None


OrderStatus = Literal["requested", "ordered", "shipped", "delivered", "cancelled"]


class SiteAccount(BaseModel):
    """A site's account with its supplier: where orders ship to and who is billed."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_number": "C-204118",
                    "ship_to_name": "ACME Ltd, Facilities",
                    "ship_to_address": "1 Harbour Street\nBristol\nBS1 4AA",
                    "ship_to_country": "GB",
                    "billing_name": "Accounts payable",
                    "billing_email": "ap@acme.example",
                    "billing_phone": "+44 117 496 0000",
                }
            ]
        },
    )
    customer_number: str | None = Field(default=None, max_length=100)
    ship_to_name: str | None = Field(default=None, max_length=200, description="Company or person")
    ship_to_address: str | None = Field(
        default=None, max_length=1000, description="Street, town, postcode: one line each"
    )
    ship_to_country: str | None = Field(default=None, max_length=2, description="ISO 3166 alpha-2")
    billing_name: str | None = Field(default=None, max_length=200)
    billing_email: str | None = Field(default=None, max_length=254)
    billing_phone: str | None = Field(default=None, max_length=50)


class OrderChanged(PrinterEvent):
    """An order of supplies for a printer was placed, moved on, edited or deleted; its state now."""

    type: Literal["tonerwatch.order_changed.v1"] = "tonerwatch.order_changed.v1"
    area_what: ClassVar[str] = sj.ORDER_CHANGED
    order_id: str = Field(min_length=1, max_length=32)
    change: Literal["created", "status", "updated", "deleted"] = Field(
        description="created; status moved; other fields edited; deleted (only while requested)"
    )
    status: OrderStatus
    previous_status: OrderStatus | None = Field(
        default=None, description="Before this change (None when created)"
    )
    supply_index: str
    supply_description: str
    part_number: str | None = None
    colour: str | None = None
    quantity: int = Field(ge=1, le=999)
    supplier: str | None = None
    supplier_reference: str | None = Field(default=None, description="PO or supplier order number")
    notes: str | None = None
    alert_id: str | None = Field(
        default=None, description="The alert (ThresholdCrossed) it answers"
    )
    batch_id: str | None = Field(
        default=None,
        max_length=32,
        description="Orders placed together from one suggestion (one part, several supplies)",
    )
    account: SiteAccount | None = Field(
        default=None,
        description="The site's ship-to address and billing contact (sent with created orders)",
    )
    changed_by: str | None = Field(
        default=None, description="Username; None when the api changed it (delivery seen)"
    )
    created_at: AwareDatetime
    ordered_at: AwareDatetime | None = None
    shipped_at: AwareDatetime | None = None
    delivered_at: AwareDatetime | None = None
    cancelled_at: AwareDatetime | None = None


class UpstreamOrderUpdate(Event):
    """The upstream portal's word on an order (confirmed, shipped, cancelled) or a message to a site."""

    type: Literal["tonerwatch.upstream_order_update.v1"] = "tonerwatch.upstream_order_update.v1"
    area_what: ClassVar[str] = sj.ORDER_UPSTREAM
    keyed: ClassVar[bool] = True
    item_id: str = Field(min_length=1, max_length=128, description="The portal's id of the item")
    kind: Literal["order_confirmed", "order_shipped", "order_cancelled", "message"]
    order_id: str | None = Field(default=None, max_length=32, description="Our order it is about")
    supplier_reference: str | None = Field(default=None, max_length=100)
    carrier: str | None = Field(default=None, max_length=100)
    tracking_number: str | None = Field(default=None, max_length=100)
    tracking_url: str | None = Field(default=None, max_length=500)
    reason: str | None = Field(default=None, max_length=500)
    text: str | None = Field(default=None, max_length=2000)
    at: AwareDatetime = Field(description="When the portal says it happened")

    def subject_key(self) -> str | None:
        """Return the order id (the item id for a message), the subject's last token."""
        return self.order_id or self.item_id


class JobEvent(Event):
    """An event about one discovery job: keyed by its job_id."""

    keyed: ClassVar[bool] = True
    job_id: str = Field(min_length=1, max_length=128)

    def subject_key(self) -> str | None:
        """Return the job id, the subject's last token."""
        return self.job_id


class DiscoveryRequested(JobEvent):
    """Someone asked for a sweep of address ranges."""

    type: Literal["tonerwatch.discovery_requested.v1"] = "tonerwatch.discovery_requested.v1"
    area_what: ClassVar[str] = sj.DISCOVERY_REQUESTED
    targets: tuple[str, ...] = Field(
        min_length=1, description="CIDR blocks, ranges, addresses, names"
    )
    credentials: tuple[SnmpCredentials, ...] = Field(default_factory=lambda: (SnmpCredentials(),))
    port: int = 161
    rate_pps: float = Field(default=200.0, gt=0)
    time_limit_s: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)
    icmp_prepass: bool = Field(
        default=False,
        description="Ping first, SNMP only to addresses that answer (hosts that drop ping are missed)",
    )


class DiscoveryCancelled(JobEvent):
    """Someone cancelled a running sweep."""

    type: Literal["tonerwatch.discovery_cancelled.v1"] = "tonerwatch.discovery_cancelled.v1"
    area_what: ClassVar[str] = sj.DISCOVERY_CANCELLED


class DiscoveryProgress(JobEvent):
    """How far a sweep is, at least once a second."""

    type: Literal["tonerwatch.discovery_progress.v1"] = "tonerwatch.discovery_progress.v1"
    area_what: ClassVar[str] = sj.DISCOVERY_PROGRESS
    probed: int
    total: int
    live: int
    printers_found: int
    elapsed_s: float
    remaining_s: float | None = None


class DiscoveryFinished(JobEvent):
    """A sweep ended: every address probed, time limit reached, or cancelled."""

    type: Literal["tonerwatch.discovery_finished.v1"] = "tonerwatch.discovery_finished.v1"
    area_what: ClassVar[str] = sj.DISCOVERY_FINISHED
    end_condition: Literal["completed", "time_limit", "cancelled", "failed"]
    probed: int
    total: int
    live: int
    printers: int
    non_printers: int
    elapsed_s: float
    bytes_sent: int = 0
    bytes_received: int = 0
    error: str | None = None


class UpstreamSynced(Event):
    """The syncer delivered an event upstream (2xx), and what its HTTP exchanges cost on the wire."""

    type: Literal["tonerwatch.upstream_synced.v1"] = "tonerwatch.upstream_synced.v1"
    area_what: ClassVar[str] = sj.UPSTREAM_SYNCED
    # Keyed by the forwarded event's printer; unkeyed when that event had none.
    keyed: ClassVar[bool] = True
    printer_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="The forwarded event's printer"
    )
    forwarded_event_id: uuid.UUID = Field(
        description="Event delivered upstream; this event's id is derived from it (uuid5)"
    )
    forwarded_type: str = Field(description="e.g. tonerwatch.threshold_crossed.v1")
    status_code: int = Field(ge=200, le=299, description="The upstream's answer to the delivery")
    attempts: int = Field(
        default=1, ge=1, description="POSTs of the event, this one included (while the syncer ran)"
    )
    bytes_sent: int = Field(
        default=0, ge=0, description="HTTP request bytes of those POSTs (TLS and TCP excluded)"
    )
    bytes_received: int = Field(
        default=0, ge=0, description="HTTP response bytes the upstream answered them with"
    )

    def subject_key(self) -> str | None:
        return self.printer_id


EmailAddress = Annotated[
    str, Field(max_length=254, pattern=r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
]


class AlertLimits(BaseModel):
    """Thresholds one scope sets; None means "use the layer below" (in the end the alerter's defaults)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    low_percent: float | None = Field(default=None, ge=0, le=100)
    critical_percent: float | None = Field(default=None, ge=0, le=100)
    lead_time_days: float | None = Field(default=None, gt=0, le=365)


class ScopedAlertLimits(AlertLimits):
    """Thresholds for a scope with per-supply-kind overrides (kind: toner, ink, drum, waste_toner ...)."""

    kinds: dict[SupplyKind, AlertLimits] = Field(default_factory=dict)


class RecipientSet(BaseModel):
    """Printers whose alerts also go to these addresses (users answering for a group of them)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    recipients: tuple[EmailAddress, ...] = Field(min_length=1)
    printers: tuple[str, ...] = Field(min_length=1, description="Printer ids")


def recipient_sets(by_printer: dict[str, Any]) -> tuple[RecipientSet, ...]:
    """Return printer id -> extra addresses as sets: each printer once per distinct set of addresses."""
    grouped: dict[tuple[str, ...], list[str]] = {}
    for printer_id, addresses in by_printer.items():
        if addresses:
            grouped.setdefault(tuple(addresses), []).append(printer_id)
    return tuple(RecipientSet(recipients=k, printers=tuple(v)) for k, v in grouped.items())


class AlertSettingsConfigured(Event):
    """The alert settings of one site, whole (not a delta): thresholds, overrides, mail recipients."""

    type: Literal["tonerwatch.alert_settings_configured.v1"] = (
        "tonerwatch.alert_settings_configured.v1"
    )
    area_what: ClassVar[str] = sj.ALERT_SETTINGS_CONFIGURED
    revision: int = Field(
        ge=0, description="Grows with every change of the site's settings; readers keep the highest"
    )
    low_percent: float | None = Field(default=None, ge=0, le=100)
    critical_percent: float | None = Field(default=None, ge=0, le=100)
    lead_time_days: float | None = Field(default=None, gt=0, le=365)
    kinds: dict[SupplyKind, AlertLimits] = Field(
        default_factory=dict, description="Per supply kind, for every printer of the site"
    )
    printers: dict[str, ScopedAlertLimits] = Field(
        default_factory=dict, description="Per printer id (with its own per-kind overrides)"
    )
    recipients: tuple[EmailAddress, ...] = Field(
        default=(),
        description="Who is mailed about the site's alerts (besides the mail routes' own)",
    )
    recipient_sets: tuple[RecipientSet, ...] = Field(
        default=(),
        description="Who is mailed about some printers' alerts besides recipients (users "
        "responsible for a group of printers rather than the whole site). A printer is listed "
        "once per distinct set of addresses, so a group of 10,000 printers stays a small message",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_printer_recipients(cls, data: Any) -> Any:
        # Also built from a mapping printer id -> addresses (what the api computes).
        if isinstance(data, dict) and "printer_recipients" in data:
            data = dict(data)
            mapping = data.pop("printer_recipients") or {}
            data.setdefault("recipient_sets", recipient_sets(mapping))
        return data

    @property
    def printer_recipients(self) -> dict[str, tuple[str, ...]]:
        """Return printer id -> its extra addresses (the union of the sets listing it)."""
        out: dict[str, tuple[str, ...]] = {}
        for rs in self.recipient_sets:
            for printer_id in rs.printers:
                out[printer_id] = tuple(dict.fromkeys((*out.get(printer_id, ()), *rs.recipients)))
        return out

    def recipients_of(self, printer_id: str) -> tuple[str, ...]:
        """Return the extra addresses mailed about printer_id (none: the site's only)."""
        found: list[str] = []
        for rs in self.recipient_sets:
            if printer_id in rs.printers:
                found.extend(rs.recipients)
        return tuple(dict.fromkeys(found))


class MailServerConfigured(Event):
    """One mail server set in the web UI, whole (not a delta); `deleted`: stop using it.

    The alerter sends the mail of the web UI's recipients (sites' and groups') through the servers
    announced so, besides the routes of TONERWATCH_MAIL. The password travels sealed
    (tonerwatch_shared.sealing) when the api has a TONERWATCH_SECRET_KEY; the alerter opens it just
    before it logs in.
    """

    type: Literal["tonerwatch.mail_server_configured.v1"] = "tonerwatch.mail_server_configured.v1"
    area_what: ClassVar[str] = sj.MAIL_SERVER_CONFIGURED
    keyed: ClassVar[bool] = True
    server_id: int = Field(ge=1, description="The api's id of the server")
    revision: int = Field(ge=0, description="Grows with every change; readers keep the highest")
    deleted: bool = False
    name: str = Field(default="", max_length=100)
    priority: int = Field(
        default=100, ge=0, le=1000, description="Lower first; the next server when one is down"
    )
    host: str = Field(default="", max_length=253)
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = Field(default=None, max_length=254)
    password: str | None = Field(default=None, repr=False, description="Sealed when a key is set")
    sender: str = Field(default="", max_length=254)
    validate_certs: bool = True

    def subject_key(self) -> str | None:
        """Return the server's id: one subject per server."""
        return str(self.server_id)


class CollectorEvent(Event):
    """An event about one site collector: keyed by its collector_id."""

    keyed: ClassVar[bool] = True
    collector_id: str = Field(min_length=1, max_length=128)

    def subject_key(self) -> str | None:
        """Return the collector id, the subject's last token."""
        return self.collector_id


class CollectorStatus(CollectorEvent):
    """A site collector's announcement of itself, every few seconds: who, what version, how busy."""

    type: Literal["tonerwatch.collector_status.v1"] = "tonerwatch.collector_status.v1"
    area_what: ClassVar[str] = sj.COLLECTOR_STATUS
    version: str = Field(description="TonerWatch version the collector runs")
    printers: int = Field(ge=0, description="Printers configured for polling at the site")
    queue_depth: int | None = Field(
        default=None,
        ge=0,
        description="Poll partitions at the site that no poller holds, each a share of its "
        "printers not being polled (None: the poller has no queue yet); above 0 while the site's "
        "poller is down or short of replicas",
    )
    started_at: AwareDatetime = Field(description="When this collector process started")


class SiteOffline(CollectorEvent):
    """A site's collector has not been heard for longer than the limit: one alert for the site."""

    type: Literal["tonerwatch.site_offline.v1"] = "tonerwatch.site_offline.v1"
    area_what: ClassVar[str] = sj.SITE_OFFLINE
    last_seen: AwareDatetime = Field(description="occurred_at of the collector's last status")
    offline_after_s: float = Field(gt=0, description="The silence that counts as offline")


class SiteOnline(CollectorEvent):
    """A collector that was offline was heard again: resolves its SiteOffline."""

    type: Literal["tonerwatch.site_online.v1"] = "tonerwatch.site_online.v1"
    area_what: ClassVar[str] = sj.SITE_ONLINE
    offline_event_id: uuid.UUID = Field(description="The SiteOffline this resolves")
    last_seen: AwareDatetime = Field(description="occurred_at of the status heard again")


EVENT_CLASSES: tuple[type[Event], ...] = (
    PrinterFound,
    PrinterConfigured,
    PrinterRemoved,
    PollRequested,
    PrinterCoverage,
    SupplyReading,
    SupplyReadingBatch,
    PrinterUnreachable,
    PrinterReachable,
    ThresholdCrossed,
    AlertResolved,
    SupplyReplaced,
    OrderChanged,
    UpstreamOrderUpdate,
    DiscoveryRequested,
    DiscoveryCancelled,
    DiscoveryProgress,
    DiscoveryFinished,
    UpstreamSynced,
    AlertSettingsConfigured,
    CollectorStatus,
    SiteOffline,
    SiteOnline,
    MailServerConfigured,
)


def _type_of(cls: type[Event]) -> str:
    default = cls.model_fields["type"].default
    assert isinstance(default, str)
    return default


EVENT_TYPES: dict[str, type[Event]] = {_type_of(c): c for c in EVENT_CLASSES}

# Subject areas of the events, in first-declared order: what the events stream keeps.
EVENT_AREAS: tuple[str, ...] = tuple(dict.fromkeys(c.subject_area() for c in EVENT_CLASSES))


class UnreadableEvent(Exception):
    """A message that is not a valid event of a known type (poison: terminate, don't retry)."""


# The type at the very start of the object, as encode_batch writes a batch: validated straight
# from the JSON (model_validate_json), no dict of dicts built first.
_TYPE_FIRST = re.compile(rb'\{"type":"([a-z0-9_.]{1,80})",')


def parse_event(data: bytes | str) -> Event:
    """Return the event in data, or raise UnreadableEvent saying why."""
    event = _validated_json(data)
    return event if event is not None else _validate(_load(data))


def _validated_json(data: bytes | str) -> Event | None:
    """Return the event when its JSON starts with its type (as encode_batch writes a batch) and
    validates straight from the JSON (model_validate_json: no dicts built first); else None (the
    general path then reads it and words what is wrong)."""
    if not isinstance(data, bytes):
        return None
    first = _TYPE_FIRST.match(data)
    cls = EVENT_TYPES.get(first.group(1).decode()) if first else None
    if cls is None:
        return None
    try:
        return cls.model_validate_json(data)
    except ValidationError:
        return None


def _load(data: bytes | str) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnreadableEvent(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UnreadableEvent("not a JSON object")
    return raw


def _validate(raw: dict[str, Any]) -> Event:
    kind = raw.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise UnreadableEvent(f"unknown event type {kind!r}")
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise UnreadableEvent(
            f"invalid {kind}: {exc.error_count()} error(s): {exc.errors()[0]['msg']}"
        ) from None


@dataclass(frozen=True)
class UnreadablePart:
    """A reading of a batch that is no valid reading: set aside alone, its JSON kept (re-encoded:
    the same values, compact, not the producer's bytes)."""

    data: bytes
    error: str
    event_id: str | None = None
    event_type: str | None = None


@dataclass(frozen=True)
class Carried:
    """What one message carries: its events in order (a batch's readings, or the event itself).

    A part of a batch that is no valid reading is an UnreadablePart in its place: the others are
    handled, it alone is set aside (parse_parts).
    """

    batch: bool
    parts: tuple[Event | UnreadablePart, ...]

    def events(self) -> tuple[Event, ...]:
        """Return the readable events."""
        return tuple(p for p in self.parts if isinstance(p, Event))


class _BatchHead(BaseModel):
    """A SupplyReadingBatch's envelope, its readings left unread (each is read on its own)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["tonerwatch.supply_reading_batch.v1"]
    event_id: uuid.UUID
    occurred_at: AwareDatetime
    source: str
    site_id: SiteId
    readings: list[Any] = Field(min_length=1, max_length=READING_BATCH_MAX)


def parse_parts(data: bytes | str) -> Carried:
    """Return what the message in data carries, each reading of a batch read on its own.

    A batch is first read whole (the common case, no cost added); if that fails, its envelope is
    read alone and then each reading: one that is no valid SupplyReading of the batch's site is
    an UnreadablePart (its JSON, the error, its event_id and type if it has them), the others are
    events as usual. A message that is no event, or a batch whose envelope is malformed, raises
    UnreadableEvent as parse_event does (the message as a whole is poison).
    """
    fast = _validated_json(data)
    if fast is not None:
        if isinstance(fast, SupplyReadingBatch):
            return Carried(True, fast.readings)
        return Carried(False, (fast,))
    raw = _load(data)
    try:
        event = _validate(raw)
    except UnreadableEvent:
        if raw.get("type") != READING_BATCH_TYPE:
            raise
        return Carried(True, _batch_parts(raw))
    if isinstance(event, SupplyReadingBatch):
        return Carried(True, event.readings)
    return Carried(False, (event,))


def _batch_parts(raw: dict[str, Any]) -> tuple[SupplyReading | UnreadablePart, ...]:
    try:
        head = _BatchHead.model_validate(raw)
    except ValidationError as exc:
        raise UnreadableEvent(
            f"invalid {READING_BATCH_TYPE}: {exc.error_count()} error(s): {exc.errors()[0]['msg']}"
        ) from None
    parts: list[SupplyReading | UnreadablePart] = []
    for i, item in enumerate(head.readings):
        text = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
        fields = item if isinstance(item, dict) else {}
        eid, kind = fields.get("event_id"), fields.get("type")
        if not isinstance(item, dict):
            error = "not a JSON object"
        else:
            try:
                reading = SupplyReading.model_validate(item)
            except ValidationError as exc:
                error = f"{exc.error_count()} error(s): {exc.errors()[0]['msg']}"
            else:
                if reading.site_id == head.site_id:
                    parts.append(reading)
                    continue
                error = f"of site {reading.site_id!r}, not the batch's"
        parts.append(
            UnreadablePart(
                data=text,
                error=f"reading {i} of batch {head.event_id} invalid: {error}",
                event_id=eid if isinstance(eid, str) else None,
                event_type=kind if isinstance(kind, str) else None,
            )
        )
    return tuple(parts)


def json_schemas() -> dict[str, dict[str, Any]]:
    """Return the JSON Schema of every event, keyed by file name (e.g. supply_reading.json)."""
    out: dict[str, dict[str, Any]] = {}
    for cls in EVENT_CLASSES:
        name = _type_of(cls).split(".")[1]
        schema = TypeAdapter(cls).json_schema(mode="serialization")
        schema["$id"] = f"https://tonerwatch.dev/schemas/v1/{name}.json"
        out[f"{name}.json"] = schema
    return out


SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "v1"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every event's JSON Schema into directory; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
