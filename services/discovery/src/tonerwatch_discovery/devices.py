"""Known devices: the same printer found again (same or new IP after DHCP) is recognised by serial or MAC.

Each printer gets a device key from the first identity seen: `sn.<vendor>.<serial>` when it gives a
serial, else `mac.<mac>`. Its record is stored under every key it has (per site), so a later sighting
matching either finds it. The identity published again keeps the serial and MAC first seen, so the
API, keying printers by (site, serial) then (site, MAC), updates the printer instead of adding one.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol

import nats.js.errors
from nats.js.kv import KeyValue

from tonerwatch_discovery.identify import FoundPrinter
from tonerwatch_shared.printer.model import PrinterIdentity

BUCKET = "DISCOVERY_DEVICES"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_PLACEHOLDER_SERIALS = frozenset({"", "0", "none", "unknown", "n/a", "na"})


def _part(text: str) -> str:
    return _UNSAFE.sub("_", text.strip()) or "_"


def normal_serial(serial: str | None) -> str | None:
    """The serial as compared (upper-case, trimmed), or None for placeholders agents send."""
    if serial is None:
        return None
    value = serial.strip().strip("\x00").upper()
    return None if value.lower() in _PLACEHOLDER_SERIALS else value


def normal_mac(mac: str | None) -> str | None:
    """The MAC as 12 lower-case hex digits, or None for none, all-zero or broadcast."""
    if not mac:
        return None
    digits = re.sub(r"[^0-9a-fA-F]", "", mac).lower()
    if len(digits) != 12 or digits in ("000000000000", "ffffffffffff"):
        return None
    return digits


def device_keys(identity: PrinterIdentity) -> list[str]:
    """The keys a printer is known by, strongest first: serial (with vendor), then MAC."""
    keys: list[str] = []
    serial = normal_serial(identity.serial)
    if serial:
        keys.append(f"sn.{_part((identity.vendor or 'unknown').lower())}.{_part(serial)}")
    mac = normal_mac(identity.mac_address)
    if mac:
        keys.append(f"mac.{mac}")
    return keys


@dataclass
class DeviceRecord:
    """What discovery remembers of one printer."""

    device_key: str
    address: str
    port: int
    vendor: str | None
    model: str | None
    serial: str | None
    mac_address: str | None
    first_seen: str
    last_seen: str

    def to_bytes(self) -> bytes:
        """The JSON stored in the bucket."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceRecord | None:
        """The record in data, or None when unreadable."""
        try:
            raw = json.loads(data)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class Recognised:
    """The outcome of looking a found printer up: its record, and where it was before if it moved."""

    record: DeviceRecord
    identity: PrinterIdentity
    known: bool
    previous_address: str | None


def reconcile(
    found: FoundPrinter, existing: DeviceRecord | None, now: datetime | None = None
) -> Recognised | None:
    """The record after this sighting and the identity to publish; None when the printer has no key."""
    keys = device_keys(found.identity)
    stamp = (now or datetime.now(UTC)).isoformat()
    identity = found.identity
    if existing is None:
        if not keys:
            return None
        record = DeviceRecord(
            keys[0],
            found.address,
            found.port,
            identity.vendor,
            identity.model,
            identity.serial,
            identity.mac_address,
            stamp,
            stamp,
        )
        return Recognised(record, identity, known=False, previous_address=None)
    # Keep what was first seen where this sighting lacks it: the published identity stays the same.
    fill = {
        name: value
        for name, value in (("serial", existing.serial), ("mac_address", existing.mac_address))
        if getattr(identity, name) is None and value is not None
    }
    identity = identity.model_copy(update=fill) if fill else identity
    moved = existing.address != found.address or existing.port != found.port
    record = DeviceRecord(
        existing.device_key,
        found.address,
        found.port,
        identity.vendor or existing.vendor,
        identity.model or existing.model,
        identity.serial,
        identity.mac_address,
        existing.first_seen,
        stamp,
    )
    return Recognised(
        record, identity, known=True, previous_address=existing.address if moved else None
    )


class DeviceStore(Protocol):
    """Where known devices are kept, per site."""

    async def get(self, site: str, key: str) -> DeviceRecord | None:
        """The record stored under key, or None."""

    async def put(self, site: str, key: str, record: DeviceRecord) -> None:
        """Stores record under key."""


class MemoryDeviceStore:
    """Known devices in a dict (the CLI, tests)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], DeviceRecord] = {}

    async def get(self, site: str, key: str) -> DeviceRecord | None:
        """The record stored under key, or None."""
        return self.records.get((site, key))

    async def put(self, site: str, key: str, record: DeviceRecord) -> None:
        """Stores record under key."""
        self.records[(site, key)] = record


class KvDeviceStore:
    """Known devices in the JetStream KV bucket DISCOVERY_DEVICES, keys `<site>.<device key>`."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, site: str, key: str) -> DeviceRecord | None:
        """The record stored under key, or None."""
        try:
            entry = await self.kv.get(f"{_part(site)}.{key}")
        except nats.js.errors.KeyNotFoundError:
            return None
        return DeviceRecord.from_bytes(entry.value) if entry.value else None

    async def put(self, site: str, key: str, record: DeviceRecord) -> None:
        """Stores record under key."""
        await self.kv.put(f"{_part(site)}.{key}", record.to_bytes())


async def recognise(store: DeviceStore, site: str, found: FoundPrinter) -> Recognised | None:
    """Looks the printer up by each of its keys, stores the new record under all; updates `found`."""
    existing: DeviceRecord | None = None
    for key in device_keys(found.identity):
        existing = await store.get(site, key)
        if existing is not None:
            break
    outcome = reconcile(found, existing)
    if outcome is None:
        return None
    for key in dict.fromkeys([outcome.record.device_key, *device_keys(outcome.identity)]):
        await store.put(site, key, outcome.record)
    found.identity = outcome.identity
    found.device_key = outcome.record.device_key
    found.previous_address = outcome.previous_address
    return outcome
