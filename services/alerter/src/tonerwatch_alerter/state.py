"""What the alerter remembers per printer: active alerts, last known levels, forecast history, outbox.

Stored as JSON in the ALERTER KV bucket, one key per printer, bounded in size (the history is the
envelope of new lows, thinned past forecast.MAX_POINTS).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tonerwatch_alerter.rules import Severity
from tonerwatch_alerter.text import printer_title
from tonerwatch_shared.printer.model import SupplyClass, SupplyKind

STATE_VERSION = 1
# Fixed namespace so event ids derive from (alert, crossing) alone: a re-sent event is a repeat.
EVENT_NAMESPACE = uuid.UUID("5c7e1f0a-9b1d-4c55-8f0e-2d6a8e3b7a10")
_KV_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class ActiveAlert(BaseModel):
    """A condition that has been announced and not yet resolved."""

    model_config = ConfigDict(extra="ignore")

    alert_id: str
    rule: str
    severity: Severity
    supply_index: str | None = None
    raised_at: AwareDatetime
    seq: int
    message: str = ""


class SupplyMemory(BaseModel):
    """One supply as last seen: level, envelope history since the last replacement."""

    model_config = ConfigDict(extra="ignore")

    index: str
    description: str = ""
    kind: SupplyKind = SupplyKind.OTHER
    supply_class: SupplyClass = SupplyClass.CONSUMED
    colour: str | None = None
    part_number: str | None = None
    last_percent: float | None = None
    last_seen_at: AwareDatetime | None = None
    history: list[tuple[float, float]] = Field(default_factory=list)
    replacements: int = 0


class PrinterLabel(BaseModel):
    """How people know a printer: display name, model, location."""

    model_config = ConfigDict(frozen=True)

    printer_id: str
    site_id: str | None = None
    name: str | None = None
    model: str | None = None
    location: str | None = None

    def title(self) -> str:
        """Return "HP M452nw (Finance, 2nd floor)": name or model or id, with the location."""
        return printer_title(self.printer_id, self.name, self.model, self.location)


class PrinterState(BaseModel):
    """Everything the alerter keeps about one printer."""

    model_config = ConfigDict(extra="ignore")

    version: int = STATE_VERSION
    printer_id: str
    site_id: str | None = None
    watermark: AwareDatetime | None = Field(
        default=None, description="occurred_at of the newest event applied; older ones are stale"
    )
    watermark_seq: int | None = Field(
        default=None,
        description="seq of the newest sequenced event applied: orders events that carry one "
        "(tonerwatch_shared.ordering); occurred_at orders the rest",
    )
    readings_at: AwareDatetime | None = Field(
        default=None,
        description="occurred_at of the newest reading applied: an older reading is stale (None: "
        "the watermark says)",
    )
    readings_seq: int | None = Field(default=None, description="seq of the newest reading applied")
    supplies: dict[str, SupplyMemory] = Field(default_factory=dict)
    alerts: dict[str, ActiveAlert] = Field(default_factory=dict)
    seqs: dict[str, int] = Field(
        default_factory=dict, description="Crossings so far per alert_id (and replacements)"
    )
    outbox: list[str] = Field(
        default_factory=list, description="Events committed with this state, maybe not yet sent"
    )
    name: str | None = Field(default=None, description="Display name, from PrinterConfigured")
    location: str | None = Field(default=None, description="Location, from PrinterConfigured")
    configured_at: AwareDatetime | None = Field(
        default=None, description="occurred_at of the newest PrinterConfigured applied"
    )
    model: str | None = Field(default=None, description="Vendor and model, from readings")
    sys_location: str | None = Field(default=None, description="sysLocation, from readings")

    def label(self) -> PrinterLabel:
        """Return how mails and messages name this printer."""
        return PrinterLabel(
            printer_id=self.printer_id,
            site_id=self.site_id,
            name=self.name,
            model=self.model,
            location=self.location or self.sys_location,
        )

    def to_bytes(self) -> bytes:
        """Return the stored JSON form."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PrinterState:
        """Return the state stored as data."""
        return cls.model_validate_json(data)


def alert_id(printer_id: str, supply_index: str | None, rule: str) -> str:
    """Return the stable id of a condition: printer, supply (or "printer"), rule."""
    return f"{printer_id}:{supply_index if supply_index is not None else 'printer'}:{rule}"


def event_id(key: str, seq: int, what: str, at: datetime) -> uuid.UUID:
    """Return the deterministic event id of the seq-th `what` of key at time at."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{key}#{seq}:{what}@{at.isoformat()}")


def kv_key(printer_id: str) -> str:
    """Return the KV key for a printer id (hashed when it has characters KV keys forbid)."""
    if _KV_SAFE.match(printer_id):
        return printer_id
    return "h_" + hashlib.sha256(printer_id.encode()).hexdigest()[:40]
