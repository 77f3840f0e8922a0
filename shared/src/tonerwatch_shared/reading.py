"""One poll of one printer, from target to `SupplyReading` (the poller service and `tonerwatch poll`): I/O seam plus pure parse."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal, Protocol

from tonerwatch_shared.events import SupplyReading
from tonerwatch_shared.ipp import fetch_printer_attributes, merge_snapshots, parse_ipp_attributes
from tonerwatch_shared.printer.clamp import clamp_snapshot, merge_anomalies
from tonerwatch_shared.printer.model import PrinterSnapshot
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.snmp.base import SnmpProtocol
from tonerwatch_shared.snmp.poll import PollPlan, poll_printer
from tonerwatch_shared.snmp.target import SnmpTarget


@dataclass(frozen=True)
class Parsed:
    """What a poll's values parsed to: parsing is pure, so the same values parse the same.

    The values are kept as a hash (of their OIDs and values in the order polled), not whole, and
    the snapshot as its JSON (~2 KB for a colour MFP, against ~14 KB as objects; read back in
    ~0.03 ms, where parsing the values again takes ~0.8 ms) until the reading's template holds
    the answer: then only the template is kept (issue 15: ~2 KB less per printer), and the rare
    poll that cannot use it (anomalies, a new address) parses again.
    """

    values_hash: int
    snapshot_json: bytes | None
    # The reading these values made, serialized but for what changes at every poll: the next
    # poll with the same answer (and the same printer, site, source, address) is written from it.
    template: ReadingTemplate | None = None

    def snapshot(self) -> PrinterSnapshot | None:
        """Return the snapshot the values parsed to (None: not kept, parse them again)."""
        if self.snapshot_json is None:
            return None
        return PrinterSnapshot.model_validate_json(self.snapshot_json)


# SupplyReading's fields, in the order its JSON has them: those marked None change at every poll
# (written by ReadingTemplate.encode), the runs between them are kept serialized.
_DYNAMIC = (
    "event_id",
    "occurred_at",
    "seq",
    "bytes_sent",
    "bytes_received",
    "requests",
    "duration_ms",
)
_RUNS = (
    ("source", "site_id", "printer_id"),
    (
        "type",
        "address",
        "protocol",
        "printer",
        "supplies",
        "trays",
        "counters",
        "status",
        "missing",
    ),
    ("anomalies",),
)
_LAYOUT = ("event_id", "occurred_at", *_RUNS[0], "seq", *_RUNS[1], *_DYNAMIC[3:], *_RUNS[2])


@dataclass(frozen=True)
class ReadingTemplate:
    """A printer's SupplyReading as JSON with its per-poll fields left open (issue 15).

    A steady poll of an idle printer gives the same answer as the one before: its reading differs
    only in its id, time, seq and the poll's cost. Writing those into the kept JSON costs a few
    microseconds, where building the model, clamping and serializing it cost ~0.4 ms. The bytes
    are the ones `SupplyReading.model_dump_json` writes (tests compare them).
    """

    key: tuple[str, str, str, str, str]  # source, site_id, printer_id, address, protocol
    identity: bytes  # "source":..,"site_id":..,"printer_id":..
    body: bytes  # "type":..,.."missing":[..]
    tail: bytes  # "anomalies":[..]

    @classmethod
    def of(cls, reading: SupplyReading) -> ReadingTemplate | None:
        """Return the template of reading (None if the event has fields this does not know)."""
        if tuple(SupplyReading.model_fields) != _LAYOUT:
            return None

        def run(fields: tuple[str, ...]) -> bytes:
            return reading.model_dump_json(include=set(fields)).encode()[1:-1]

        return cls(
            _template_key(
                reading.source,
                reading.site_id,
                reading.printer_id,
                reading.address,
                reading.protocol,
            ),
            *(run(fields) for fields in _RUNS),
        )

    def encode(
        self,
        *,
        event_id: uuid.UUID,
        occurred_at: datetime,
        seq: int | None,
        bytes_sent: int,
        bytes_received: int,
        requests: int,
        duration_ms: float,
    ) -> bytes:
        """Return the reading's JSON with these per-poll values."""
        at = occurred_at.isoformat()
        if at.endswith("+00:00"):
            at = at[:-6] + "Z"
        return b"".join(
            (
                b'{"event_id":"',
                str(event_id).encode(),
                b'","occurred_at":"',
                at.encode(),
                b'",',
                self.identity,
                b',"seq":',
                b"null" if seq is None else str(int(seq)).encode(),
                b",",
                self.body,
                f',"bytes_sent":{int(bytes_sent)},"bytes_received":{int(bytes_received)},'
                f'"requests":{int(requests)},"duration_ms":{float(duration_ms)!r},'.encode(),
                self.tail,
                b"}",
            )
        )


def _template_key(
    source: str, site_id: str, printer_id: str, address: str, protocol: str
) -> tuple[str, str, str, str, str]:
    return (source, site_id, printer_id, address, protocol)


@dataclass(frozen=True)
class SteadyReading:
    """A steady poll's reading, not built: its template and the per-poll values (see encode)."""

    template: ReadingTemplate
    event_id: uuid.UUID
    occurred_at: datetime
    bytes_sent: int
    bytes_received: int
    requests: int
    duration_ms: float

    def encode(self, seq: int | None) -> bytes:
        """Return the reading's JSON, stamped with seq."""
        return self.template.encode(
            event_id=self.event_id,
            occurred_at=self.occurred_at,
            seq=seq,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            requests=self.requests,
            duration_ms=self.duration_ms,
        )


@dataclass(frozen=True)
class PolledReading:
    """A reading and the layout learned for the next steady poll."""

    built: SupplyReading | None
    plan: PollPlan
    learned: bool
    round_trips: int
    # Pass it back as `parsed` with the next poll: an unchanged answer is not parsed again.
    parsed: Parsed | None = None
    # Set instead of built when the answer was the same as the previous one (Parsed.template).
    steady: SteadyReading | None = None

    @cached_property
    def reading(self) -> SupplyReading:
        """Return the reading (built from the steady one's JSON when it was not built)."""
        if self.built is not None:
            return self.built
        assert self.steady is not None
        return SupplyReading.model_validate_json(self.steady.encode(None))


async def read_printer(
    client: SnmpProtocol,
    target: SnmpTarget,
    *,
    printer_id: str,
    site_id: str,
    source: str,
    plan: PollPlan | None = None,
    parsed: Parsed | None = None,
) -> PolledReading:
    """Poll target once over SNMP (learning its layout when plan is None); return the reading as published.

    parsed: what the printer's previous answer parsed to; an answer equal to it (an idle printer:
    the same levels, counters and status) takes that snapshot instead of parsing again.
    """
    started = time.perf_counter()
    result = await poll_printer(client, target, plan)
    values_hash = result.values_hash
    if values_hash is None:
        values_hash = hash(tuple(result.values.items()))
    template = parsed.template if parsed is not None and parsed.values_hash == values_hash else None
    if (
        template is not None
        and not result.anomalies
        and template.key == _template_key(source, site_id, printer_id, target.host, "snmp")
    ):
        # The same answer as last time: the reading is the last one's but for its per-poll fields.
        steady = SteadyReading(
            template,
            event_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            bytes_sent=result.bytes_sent,
            bytes_received=result.bytes_received,
            requests=result.requests,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return PolledReading(
            None, result.plan, result.learned, result.round_trips, parsed, steady=steady
        )
    kept = parsed.snapshot() if parsed is not None and parsed.values_hash == values_hash else None
    if parsed is not None and kept is not None:
        snapshot = kept
    else:
        snapshot = parse_snapshot(result.values)
        parsed = Parsed(values_hash, snapshot.model_dump_json().encode())
    if result.anomalies:
        snapshot = snapshot.model_copy(
            update={"anomalies": merge_anomalies(result.anomalies, snapshot.anomalies)}
        )
    reading = _reading(
        snapshot,
        printer_id=printer_id,
        site_id=site_id,
        source=source,
        address=target.host,
        protocol="snmp",
        sent=result.bytes_sent,
        received=result.bytes_received,
        requests=result.requests,
        started=started,
    )
    key = _template_key(source, site_id, printer_id, target.host, "snmp")
    if not result.anomalies and (parsed.template is None or parsed.template.key != key):
        template = ReadingTemplate.of(reading)
        # The template holds the answer from now on: the snapshot's JSON is not kept beside it.
        parsed = replace(
            parsed,
            template=template,
            snapshot_json=None if template is not None else parsed.snapshot_json,
        )
    return PolledReading(reading, result.plan, result.learned, result.round_trips, parsed)


class IppPrinter(Protocol):
    """What an IPP poll needs of a printer's configuration (a PrinterConfigured has it)."""

    @property
    def printer_id(self) -> str: ...
    @property
    def site_id(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def ipp_port(self) -> int: ...
    @property
    def ipp_tls(self) -> bool: ...


async def read_printer_ipp(
    config: IppPrinter,
    *,
    source: str,
    timeout_s: float,
    snmp: PolledReading | None = None,
) -> SupplyReading:
    """Poll a printer over IPP (Get-Printer-Attributes); merged into the SNMP reading when one is given."""
    started = time.perf_counter()
    exchange = await fetch_printer_attributes(
        config.address, config.ipp_port, tls=config.ipp_tls, timeout=timeout_s, verify=False
    )
    snapshot = parse_ipp_attributes(exchange.attributes)
    sent, received, requests = exchange.bytes_sent, exchange.bytes_received, 1
    protocol: Literal["snmp", "ipp", "both"] = "ipp"
    if snmp is not None:
        base = snmp.reading
        snapshot = merge_snapshots(
            PrinterSnapshot(
                printer=base.printer,
                supplies=base.supplies,
                trays=base.trays,
                counters=base.counters,
                status=base.status,
                missing=base.missing,
                anomalies=base.anomalies,
            ),
            snapshot,
        )
        sent, received, requests = (
            sent + base.bytes_sent,
            received + base.bytes_received,
            requests + base.requests,
        )
        protocol = "both"
    return _reading(
        snapshot,
        printer_id=config.printer_id,
        site_id=config.site_id,
        source=source,
        address=config.address,
        protocol=protocol,
        sent=sent,
        received=received,
        requests=requests,
        started=started,
    )


def _reading(
    snapshot: PrinterSnapshot,
    *,
    printer_id: str,
    site_id: str,
    source: str,
    address: str,
    protocol: Literal["snmp", "ipp", "both"],
    sent: int,
    received: int,
    requests: int,
    started: float,
) -> SupplyReading:
    # The one seam every reading passes: whatever was merged, it leaves fitting the api's columns.
    snapshot = clamp_snapshot(snapshot)
    return SupplyReading(
        source=source,
        site_id=site_id,
        printer_id=printer_id,
        address=address,
        protocol=protocol,
        printer=snapshot.printer,
        supplies=snapshot.supplies,
        trays=snapshot.trays,
        counters=snapshot.counters,
        status=snapshot.status,
        missing=snapshot.missing,
        anomalies=snapshot.anomalies,
        bytes_sent=sent,
        bytes_received=received,
        requests=requests,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
