"""One poll of one printer, from target to `SupplyReading`: the I/O seam plus the pure parse."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tonerwatch_shared.events import PrinterConfigured, SnmpCredentials, SupplyReading
from tonerwatch_shared.printer.parse import parse_snapshot
from tonerwatch_shared.snmp.base import SnmpProtocol
from tonerwatch_shared.snmp.poll import PollPlan, poll_printer
from tonerwatch_shared.snmp.target import SnmpTarget


@dataclass(frozen=True)
class PolledReading:
    """A reading and the layout learned for the next steady poll."""

    reading: SupplyReading
    plan: PollPlan
    learned: bool
    round_trips: int


def target_for(
    address: str, port: int, credentials: SnmpCredentials, *, timeout_s: float, retries: int
) -> SnmpTarget:
    """Return the SNMP target for a configured printer."""
    return SnmpTarget(
        host=address,
        port=port,
        version=credentials.version,
        community=credentials.community,
        user=credentials.user,
        auth_protocol=credentials.auth_protocol,
        auth_key=credentials.auth_key,
        priv_protocol=credentials.priv_protocol,
        priv_key=credentials.priv_key,
        timeout=timeout_s,
        retries=retries,
    )


async def read_printer(
    client: SnmpProtocol,
    target: SnmpTarget,
    *,
    printer_id: str,
    site_id: str,
    source: str,
    plan: PollPlan | None = None,
) -> PolledReading:
    """Poll target once (learning its layout when plan is None) and return the reading as published."""
    started = time.perf_counter()
    result = await poll_printer(client, target, plan)
    snapshot = parse_snapshot(result.values)
    reading = SupplyReading(
        source=source,
        site_id=site_id,
        printer_id=printer_id,
        address=target.host,
        protocol="snmp",
        printer=snapshot.printer,
        supplies=snapshot.supplies,
        trays=snapshot.trays,
        counters=snapshot.counters,
        status=snapshot.status,
        missing=snapshot.missing,
        bytes_sent=result.bytes_sent,
        bytes_received=result.bytes_received,
        requests=result.requests,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return PolledReading(reading, result.plan, result.learned, result.round_trips)


def reading_for(config: PrinterConfigured) -> tuple[str, str]:
    """Return (printer_id, site_id) of a configuration."""
    return config.printer_id, config.site_id
