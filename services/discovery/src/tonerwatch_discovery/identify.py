"""Telling a printer from any other SNMP device in one GET, then its first supply snapshot; manual add.

The identifying GET asks in one PDU for what parse_identity needs to decide "printer or not" and who
it is: system group, hrDevice row 1, the Printer-MIB serial, the IEEE 1284 device IDs, Brother's
serial and the first two interfaces' MAC addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.printer import oids
from tonerwatch_shared.printer.model import PrinterIdentity, PrinterSnapshot
from tonerwatch_shared.printer.parse import denies_printer, parse_identity, parse_snapshot
from tonerwatch_shared.printer.profiles import registry
from tonerwatch_shared.printer.vendors import enterprise_number
from tonerwatch_shared.snmp.base import SnmpProtocol
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.errors import IoStats, SnmpError, SnmpTimeoutError
from tonerwatch_shared.snmp.poll import poll_printer
from tonerwatch_shared.snmp.types import Oid, SnmpValue

# What every identifying GET asks (sysObjectID comes with the probe's answer when there was one).
IDENTIFY_BASE: tuple[str, ...] = (
    oids.SYS_DESCR,
    oids.SYS_NAME,
    f"{oids.HR_DEVICE_TYPE}.1",
    f"{oids.HR_DEVICE_DESCR}.1",
    f"{oids.PRT_GENERAL_SERIAL_NUMBER}.1",
    f"{oids.IF_PHYS_ADDRESS}.1",
    f"{oids.IF_PHYS_ADDRESS}.2",
)
# Per enterprise of sysObjectID: the private objects that tell its printers apart, from the
# vendor profiles (VendorProfile.identify: Brother's device ID and serial, Dell's device ID, none
# for HP); any other maker may be an HP-OID OEM and is asked HP's device ID.
IDENTIFY_EXTRA: Mapping[int, tuple[str, ...]] = registry.IDENTIFY_EXTRA
IDENTIFY_EXTRA_DEFAULT: tuple[str, ...] = registry.IDENTIFY_EXTRA_DEFAULT
IDENTIFY_OIDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            *IDENTIFY_BASE,
            oids.SYS_OBJECT_ID,
            *IDENTIFY_EXTRA_DEFAULT,
            *(o for extra in IDENTIFY_EXTRA.values() for o in extra),
        )
    )
)
"""The identifying GET when sysObjectID is not known yet (manual add, v3)."""


def identify_oids(sys_object_id: str | None) -> tuple[str, ...]:
    """The identifying GET's OIDs for a device whose sysObjectID the probe returned (or None)."""
    if sys_object_id is None:
        return IDENTIFY_OIDS
    enterprise = enterprise_number(sys_object_id)
    extra = (
        IDENTIFY_EXTRA.get(enterprise, IDENTIFY_EXTRA_DEFAULT)
        if enterprise
        else IDENTIFY_EXTRA_DEFAULT
    )
    return (*IDENTIFY_BASE, *extra)


RESOLVE_TIMEOUT_S = 5.0
PRINTER_MIB = "1.3.6.1.2.1.43"

Reason = Literal["invalid_address", "unresolvable", "silent", "not_a_printer", "error"]


class IdentifyError(Exception):
    """A manual add that found no printer; `reason` is one of Reason, the message says what to do."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass
class Cost:
    """Bytes of SNMP payload one step took."""

    sent: int = 0
    received: int = 0

    def add(self, stats: IoStats) -> None:
        """Adds a client operation's counters."""
        self.sent += stats.bytes_sent
        self.received += stats.bytes_received

    @property
    def total(self) -> int:
        """Sent plus received."""
        return self.sent + self.received


@dataclass
class Identification:
    """What the identifying GET found at one address."""

    address: str
    port: int
    credentials: SnmpCredentials
    credentials_name: str
    identity: PrinterIdentity
    values: dict[str, SnmpValue]
    cost: Cost = field(default_factory=Cost)


@dataclass
class FoundPrinter:
    """A printer discovered or added: who it is, its first snapshot, what finding it cost."""

    address: str
    port: int
    identity: PrinterIdentity
    credentials: SnmpCredentials
    credentials_name: str
    snapshot: PrinterSnapshot | None
    probe: Cost = field(default_factory=Cost)
    identify: Cost = field(default_factory=Cost)
    first_snapshot: Cost = field(default_factory=Cost)
    snapshot_error: str | None = None
    device_key: str | None = None
    previous_address: str | None = None

    @property
    def discovery_bytes(self) -> int:
        """Probe plus identification, sent and received (the first snapshot is counted apart)."""
        return self.probe.total + self.identify.total


@dataclass(frozen=True)
class NonPrinter:
    """An SNMP device that is not a printer: counted and reported, never offered for monitoring."""

    address: str
    sys_descr: str | None
    sys_object_id: str | None


def credentials_name(index: int, credentials: SnmpCredentials) -> str:
    """A label for a credential set that never shows its secret ("#1 v2c", "#3 v3 user ops")."""
    label = f"#{index + 1} v{credentials.version}"
    return f"{label} user {credentials.user}" if credentials.version == "3" else label


def merge_identity(base: PrinterIdentity, better: PrinterIdentity) -> PrinterIdentity:
    """`better` with its empty fields filled from `base` (the snapshot knows more than the GET)."""
    filled = {
        name: getattr(base, name)
        for name in PrinterIdentity.model_fields
        if getattr(better, name) is None and getattr(base, name) is not None
    }
    return better.model_copy(update=filled) if filled else better


async def identify_at(
    client: SnmpProtocol,
    address: str,
    port: int,
    credentials: SnmpCredentials,
    index: int,
    *,
    timeout_s: float,
    retries: int,
    sys_object_id: str | None = None,
) -> Identification:
    """The identifying GET with one credential set; SnmpError when the agent does not answer it."""
    target = credentials.target(address, port, timeout_s=timeout_s, retries=retries)
    stats = IoStats()
    try:
        if sys_object_id is None and credentials.version == "3":
            # A v3 probe's Report carries no sysObjectID. Asking for it first and the maker's
            # extras after keeps HP's 300-byte device ID off the wire (M252dw v3: 1,471 -> see
            # bench/DISCOVERY.md); a second v3 GET costs no second engine discovery.
            values = await client.get(target, (*IDENTIFY_BASE, oids.SYS_OBJECT_ID), stats=stats)
            found = values.get(oids.SYS_OBJECT_ID)
            if isinstance(found, Oid):
                sys_object_id = str(found)
            extra = tuple(o for o in identify_oids(sys_object_id) if o not in values)
            if extra:
                values.update(await client.get(target, extra, stats=stats))
        else:
            values = await client.get(target, identify_oids(sys_object_id), stats=stats)
        if sys_object_id is not None:
            values[oids.SYS_OBJECT_ID] = Oid(sys_object_id)
        if denies_printer(values):
            # The GET reads one Printer-MIB object: before turning away a device whose
            # hrDeviceType or device ID says "no printer", ask for the first there is.
            try:
                following = await client.get_next(target, (PRINTER_MIB,), stats=stats)
            except SnmpError:
                following = []  # answered the GET but not this: judge by what the GET showed
            for oid, value in following:
                if oid.startswith(PRINTER_MIB + "."):
                    values[oid] = value
    finally:
        cost = Cost()
        cost.add(stats)
    identification = Identification(
        address,
        port,
        credentials,
        credentials_name(index, credentials),
        parse_identity(values),
        values,
    )
    identification.cost = cost
    return identification


async def first_snapshot(
    client: SnmpProtocol, found: Identification, *, timeout_s: float, retries: int
) -> tuple[PrinterSnapshot | None, Cost, str | None]:
    """The printer's first full poll parsed, what it cost, and the error if it failed."""
    target = found.credentials.target(
        found.address, found.port, timeout_s=timeout_s, retries=retries
    )
    try:
        result = await poll_printer(client, target)
    except SnmpError as exc:
        return None, Cost(), str(exc)
    cost = Cost(result.bytes_sent, result.bytes_received)
    return parse_snapshot(result.values), cost, None


async def printer_from(
    client: SnmpProtocol,
    found: Identification,
    *,
    timeout_s: float,
    retries: int,
    snapshot: bool = True,
) -> FoundPrinter:
    """A FoundPrinter for an identified printer, with its first snapshot when asked."""
    snap, cost, error = (
        await first_snapshot(client, found, timeout_s=timeout_s, retries=retries)
        if snapshot
        else (None, Cost(), None)
    )
    identity = merge_identity(found.identity, snap.printer) if snap is not None else found.identity
    return FoundPrinter(
        address=found.address,
        port=found.port,
        identity=identity,
        credentials=found.credentials,
        credentials_name=found.credentials_name,
        snapshot=snap,
        identify=found.cost,
        first_snapshot=cost,
        snapshot_error=error,
    )


async def resolve(address: str, port: int = 161) -> str:
    """The IPv4 address of a literal or DNS name; IdentifyError saying what is wrong otherwise."""
    text = address.strip()
    if not text:
        raise IdentifyError("invalid_address", "no address given")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = None
    if ip is not None:
        if not isinstance(ip, ipaddress.IPv4Address):
            raise IdentifyError(
                "invalid_address", f"{text}: IPv6 is not supported, give an IPv4 address"
            )
        if ip.is_multicast or ip.is_unspecified or int(ip) == 0xFFFFFFFF:
            raise IdentifyError("invalid_address", f"{text} is not a host address")
        return str(ip)
    if text.replace(".", "").isdigit() or "/" in text or " " in text:
        raise IdentifyError(
            "invalid_address", f"{text!r} is neither an IPv4 address nor a DNS name"
        )
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(text, port, family=socket.AF_INET, type=socket.SOCK_DGRAM),
            RESOLVE_TIMEOUT_S,
        )
    except (OSError, TimeoutError) as exc:
        raise IdentifyError("unresolvable", f"cannot resolve {text!r}: {exc}") from None
    if not infos:
        raise IdentifyError("unresolvable", f"cannot resolve {text!r}: no IPv4 address")
    return str(infos[0][4][0])


async def identify(
    address: str,
    credentials: Sequence[SnmpCredentials],
    *,
    port: int = 161,
    timeout_s: float = 2.0,
    retries: int = 1,
    snapshot: bool = True,
    client: SnmpProtocol | None = None,
) -> FoundPrinter:
    """The printer at address (IP or DNS name), trying each credential set in order; IdentifyError if none."""
    if not credentials:
        raise IdentifyError("error", "no credential sets to try")
    ip = await resolve(address, port)
    own = client is None
    snmp: SnmpProtocol = SnmpClient(max_in_flight=4) if client is None else client
    tried: list[str] = []
    try:
        for index, creds in enumerate(credentials):
            name = credentials_name(index, creds)
            try:
                found = await identify_at(
                    snmp, ip, port, creds, index, timeout_s=timeout_s, retries=retries
                )
            except SnmpTimeoutError:
                tried.append(f"{name}: no answer")
                continue
            except SnmpError as exc:
                tried.append(f"{name}: {exc}")
                continue
            if not found.identity.is_printer:
                what = found.identity.sys_descr or found.identity.sys_object_id or "unknown device"
                raise IdentifyError(
                    "not_a_printer",
                    f"{address} ({ip}) answers SNMP but is not a printer: {what[:120]}",
                )
            return await printer_from(
                snmp, found, timeout_s=timeout_s, retries=retries, snapshot=snapshot
            )
    finally:
        if own:
            await snmp.close()
    shown = address if address.strip() == ip else f"{address} ({ip})"
    raise IdentifyError(
        "silent",
        f"no SNMP answer from {shown}:{port} with {len(credentials)} credential set(s) "
        f"within {timeout_s:g}s x {retries + 1} ({'; '.join(tried)}): check the address, the "
        "community/user and that SNMP is enabled on the device",
    )
