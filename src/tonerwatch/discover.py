"""`tonerwatch discover`: a sweep without the services, printers printed as found.

The sweep itself is the discovery service's one-shot entry point (`sweep_once`), loaded by name like
`serve` loads a service; this module only presents it: a line or a JSON object per printer, a live
progress bar on a terminal, a summary. The protocols below are what it reads of the sweep's objects.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from typing import Protocol, TextIO

from tonerwatch.services import service_module
from tonerwatch_shared.checks import TargetError, check_sweep_targets
from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.printer.model import PrinterIdentity, PrinterSnapshot

_BAR = 30
_MIN_BAR = 10
_BAR_REFRESH_S = 0.25  # a live bar on a terminal moves four times a second; events stay at 1/s
EXIT_BAD_ARGUMENTS = 2


class Cost(Protocol):
    """Bytes one step of finding a printer cost."""

    @property
    def total(self) -> int: ...


class FoundPrinter(Protocol):
    """A printer the sweep found, as the CLI shows it."""

    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def identity(self) -> PrinterIdentity: ...
    @property
    def credentials_name(self) -> str: ...
    @property
    def snapshot(self) -> PrinterSnapshot | None: ...
    @property
    def first_snapshot(self) -> Cost: ...
    @property
    def snapshot_error(self) -> str | None: ...
    @property
    def discovery_bytes(self) -> int: ...


class SweepProgress(Protocol):
    """How far a sweep is."""

    @property
    def probed(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def live(self) -> int: ...
    @property
    def printers(self) -> int: ...
    @property
    def elapsed_s(self) -> float: ...
    @property
    def remaining_s(self) -> float | None: ...


class SweepResult(Protocol):
    """How a sweep ended."""

    @property
    def printers(self) -> Sequence[object]: ...
    @property
    def non_printers(self) -> Sequence[object]: ...
    @property
    def live(self) -> int: ...
    @property
    def probed(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def elapsed_s(self) -> float: ...
    @property
    def end_condition(self) -> str: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def errors(self) -> Sequence[str]: ...

    def summary(self) -> dict[str, object]: ...


def printer_json(found: FoundPrinter) -> dict[str, object]:
    """One found printer as a JSON-ready dict."""
    ident = found.identity
    return {
        "type": "printer",
        "address": found.address,
        "port": found.port,
        "vendor": ident.vendor,
        "model": ident.model,
        "serial": ident.serial,
        "mac_address": ident.mac_address,
        "sys_name": ident.sys_name,
        "credentials": found.credentials_name,
        "supplies": [
            {"description": s.description, "kind": s.kind.value, "percent": s.percent}
            for s in (found.snapshot.supplies if found.snapshot else ())
        ],
        "bytes_discovery": found.discovery_bytes,
        "bytes_first_snapshot": found.first_snapshot.total,
        "snapshot_error": found.snapshot_error,
    }


def printer_line(found: FoundPrinter) -> str:
    """One found printer as a line of text."""
    ident = found.identity
    name = " ".join(p for p in (ident.vendor, ident.model) if p) or "unknown printer"
    extra = [f"serial {ident.serial}" if ident.serial else "", ident.mac_address or ""]
    supplies = ", ".join(
        f"{s.description} {s.percent:.0f}%" if s.percent is not None else s.description
        for s in (found.snapshot.supplies if found.snapshot else ())
    )
    line = f"{found.address:<15} {name}"
    details = [e for e in extra if e]
    if details:
        line += f" ({', '.join(details)})"
    return line + (f"  [{supplies}]" if supplies else "")


def progress_bar(p: SweepProgress, width: int = 80) -> str:
    """The progress line for a terminal `width` columns wide (redrawn in place, never wrapped)."""
    done = min(1.0, p.probed / p.total) if p.total else 1.0
    eta = f", ~{p.remaining_s:.0f}s left" if p.remaining_s else ""
    figures = (
        f" {done:4.0%} {p.probed:,}/{p.total:,} probed, {p.live} live, "
        f"{p.printers} printer{'' if p.printers == 1 else 's'}, {p.elapsed_s:.0f}s{eta}"
    )
    # One column short of the width: a line filling the last column wraps on many terminals and
    # "\r" then redraws only the wrapped tail, leaving a trail of half bars. The bar gives way first.
    usable = max(20, width - 1)
    # The bar's size is set by the widest figures this sweep will show, so it does not jump as
    # counts grow, time passes or the ETA goes.
    widest = (
        f" 100% {p.total:,}/{p.total:,} probed, {p.live} live, "
        f"{p.printers} printer{'' if p.printers == 1 else 's'}, 9999s, ~9999s left"
    )
    bar = max(_MIN_BAR, min(_BAR, usable - max(len(widest), len(figures)) - 2))
    filled = int(done * bar)
    text = f"[{'#' * filled}{'.' * (bar - filled)}]{figures}"
    return "\r" + text[:usable] + "\x1b[K"


async def sweep_command(
    targets: Sequence[str],
    communities: Sequence[str],
    rate: float,
    time_limit: float | None,
    timeout: float,  # noqa: ASYNC109 - the probe wait, passed on to the sweep
    json_output: bool,
    out: TextIO = sys.stdout,
    *,
    port: int = 161,
    icmp_prepass: bool = False,
) -> int:
    """Sweeps, prints each printer found and a summary; exit code 0, or 2 for bad arguments."""
    discovery = service_module("discovery")
    live_bar = sys.stderr.isatty()
    shown: list[str] = []

    def draw(line: str) -> None:
        sys.stderr.write(line)
        sys.stderr.flush()  # stderr is line-buffered: a bar has no newline

    def on_progress(p: SweepProgress) -> None:
        if live_bar:
            shown[:] = [progress_bar(p, shutil.get_terminal_size((80, 24)).columns)]
            draw(shown[0])

    def on_printer(found: FoundPrinter) -> None:
        if live_bar:
            draw("\r\x1b[K")  # the printer's line takes the bar's place, the bar comes back below
        if json_output:
            out.write(json.dumps(printer_json(found)) + "\n")
        else:
            out.write(printer_line(found) + "\n")
        out.flush()
        if live_bar and shown:
            draw(shown[0])

    try:
        check_sweep_targets(targets)  # refused before anything is resolved or sent
    except TargetError as exc:
        print(f"discover: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    try:
        result: SweepResult = await discovery.sweep_once(
            targets,
            [SnmpCredentials(community=c) for c in communities],
            rate_pps=rate,
            time_limit_s=time_limit,
            timeout_s=timeout,
            port=port,
            icmp_prepass=icmp_prepass,
            progress_interval_s=_BAR_REFRESH_S if live_bar else 1.0,
            on_progress=on_progress,
            on_printer=on_printer,
        )
    except discovery.SweepRefused as exc:
        print(f"discover: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    if live_bar:
        draw("\r\x1b[K")
    summary = {"type": "summary", **result.summary()}
    if json_output:
        out.write(json.dumps(summary) + "\n")
    else:
        out.write(
            f"{len(result.printers)} printer(s), {len(result.non_printers)} other SNMP device(s), "
            f"{result.live} live of {result.probed}/{result.total} addresses probed in "
            f"{result.elapsed_s:.1f}s ({result.end_condition}); {result.bytes_sent} bytes sent, "
            f"{result.bytes_received} received\n"
        )
        for error in result.errors:
            out.write(f"warning: {error}\n")
    out.flush()
    return 0


__all__ = ["printer_json", "printer_line", "progress_bar", "sweep_command"]
