"""`tonerwatch poll HOST`: poll one printer once and print it for a person or as the published JSON."""

from __future__ import annotations

import argparse
import socket
import sys
from typing import TextIO

from tonerwatch_shared.checks import check_credentials, check_host
from tonerwatch_shared.events import SnmpCredentials, SupplyReading
from tonerwatch_shared.printer.model import SupplyClass
from tonerwatch_shared.reading import read_printer
from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.errors import SnmpError, SnmpTimeoutError

EXIT_UNREACHABLE = 2


async def poll_command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Poll args.host once; print the reading; return 0, or 2 with one clear line when it fails."""
    if args.snmp_version == "3" and not args.user:
        print(
            "tonerwatch: --snmp-version 3 needs --user (and --auth-key/--priv-key as set up on the printer)",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    credentials = SnmpCredentials(
        version=args.snmp_version,
        community=args.community,
        user=args.user,
        auth_protocol=args.auth_protocol or ("SHA256" if args.auth_key else None),
        auth_key=args.auth_key,
        priv_protocol=args.priv_protocol or ("AES" if args.priv_key else None),
        priv_key=args.priv_key,
    )
    try:
        host = check_host(args.host)
        check_credentials(credentials)
        target = credentials.target(host, args.port, timeout_s=args.timeout, retries=args.retries)
    except ValueError as exc:
        print(f"tonerwatch: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    client = SnmpClient(max_in_flight=4)
    try:
        polled = await read_printer(
            client, target, printer_id=args.host, site_id="default", source="tonerwatch-poll"
        )
    except SnmpTimeoutError:
        wait = args.timeout * (args.retries + 1)
        hint = "wrong community?" if args.snmp_version != "3" else "wrong user or keys?"
        print(
            f"tonerwatch: no SNMP answer from {args.host}:{args.port} within {wait:g}s — "
            f"is it on and reachable, SNMP {args.snmp_version} enabled, {hint}",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    except (socket.gaierror, OSError) as exc:
        print(f"tonerwatch: cannot reach {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except SnmpError as exc:
        print(f"tonerwatch: {args.host}:{args.port} answered with an error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        await client.close()
    if args.json:
        out.write(polled.reading.model_dump_json() + "\n")
    else:
        out.write(render(polled.reading))
    return 0


def _bar(percent: float | None, width: int = 20) -> str:
    if percent is None:
        return " " * width
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "█" * filled + "░" * (width - filled)


def render(reading: SupplyReading) -> str:
    """Return the reading as text for a person."""
    p = reading.printer
    lines = [
        f"{p.vendor or '?'} {p.model or '?'}  serial {p.serial or '?'}  at {reading.address}",
        f"  {p.sys_name or ''}  {p.sys_location or ''}".rstrip(),
        f"  status: {reading.status.device_status or '?'} / {reading.status.printer_status or '?'}"
        + (f"  errors: {', '.join(reading.status.errors)}" if reading.status.errors else ""),
        "",
        "Supplies:",
    ]
    for s in reading.supplies:
        pct = "  n/a" if s.percent is None else f"{s.percent:5.1f}%"
        what = "space left" if s.supply_class == SupplyClass.RECEPTACLE else ""
        part = f"  [{s.part_number}]" if s.part_number else ""
        lines.append(
            f"  {s.description[:38]:38} {_bar(s.percent)} {pct} {s.state.value:14}{what}{part}"
        )
    if reading.trays:
        lines.append("Trays:")
        for t in reading.trays:
            pct = "  n/a" if t.percent is None else f"{t.percent:5.1f}%"
            lines.append(f"  {t.name[:38]:38} {_bar(t.percent)} {pct}")
    c = reading.counters
    if c.lifetime_pages is not None:
        lines.append(
            f"Pages: {c.lifetime_pages}"
            + (
                f" (colour {c.colour_pages}, mono {c.mono_pages})"
                if c.colour_pages is not None
                else ""
            )
        )
    for a in reading.status.alerts:
        lines.append(f"Alert [{a.severity}] {a.description}")
    if reading.missing:
        lines.append(f"Not reported by the device: {', '.join(reading.missing)}")
    lines.append(
        f"({reading.requests} requests, {reading.bytes_sent} B sent, {reading.bytes_received} B received, {reading.duration_ms:.0f} ms)"
    )
    return "\n".join(lines) + "\n"
