"""A real IPP Everywhere printer on loopback for tests: CUPS' ippeveprinter with chosen supplies.

ippeveprinter (Debian package cups-ipp-utils, CUPS 2.4) needs three things worked out here:
- It will not start without a D-Bus bus for its Avahi client, even with DNS-SD off ("Unable to
  initialize DNS-SD"). A private dbus-daemon on a socket in our temp dir satisfies it; no
  avahi-daemon runs, and ``-r off`` keeps it from registering anything, so nothing is multicast.
- ``-n localhost`` makes it listen on 127.0.0.1 and ::1 only (without -n it binds every address).
- marker-* come from the ``-a`` attributes file, but printer-state-reasons there is ignored: the
  server computes it. The one way to set it is a print command's ``STATE: +keyword`` line on
  stderr, so when reasons are asked for we send one tiny Print-Job whose command emits them. The
  server then reports them with a severity suffix for its state (``toner-low-report`` when idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyipp import IPP
from pyipp.enums import IppOperation

IPPEVEPRINTER = "ippeveprinter"
DBUS_DAEMON = "dbus-daemon"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

# ippeveprinter's printer-state-reasons bits (ippeveprinter.c ippeve_preason_strings): the only
# keywords a STATE: line can set.
SETTABLE_REASONS: frozenset[str] = frozenset(
    {
        "other",
        "cover-open",
        "input-tray-missing",
        "marker-supply-empty",
        "marker-supply-low",
        "marker-waste-almost-full",
        "marker-waste-full",
        "media-empty",
        "media-jam",
        "media-low",
        "media-needed",
        "moving-to-paused",
        "paused",
        "spool-area-full",
        "toner-empty",
        "toner-low",
    }
)


class IppEveUnavailable(RuntimeError):
    """ippeveprinter or dbus-daemon is not installed."""


@dataclass(frozen=True)
class Marker:
    """One supply as IPP's parallel marker-* attributes describe it."""

    name: str
    type: str  # marker-types keyword: toner, ink, opc, waste-toner ...
    colour: str  # marker-colors: "#00FFFF", "none", "#00FFFF#FF00FF#FFFF00"
    level: int  # marker-levels: 0..100, -1, -2, -3
    low: int = 10
    high: int = 100


@dataclass(frozen=True)
class IppEveConfig:
    """What the simulated printer says about itself."""

    markers: tuple[Marker, ...]
    state_reasons: tuple[str, ...] = ()
    make_and_model: str = "Example IPP Everywhere Printer"
    device_id: str | None = None
    firmware: str | None = None
    location: str = ""
    service_name: str = "TonerWatch Test Printer"
    extra_lines: tuple[str, ...] = field(default=())  # raw "ATTR type name value" lines


def missing_tools() -> list[str]:
    """Return the programs this helper needs that are not on PATH."""
    return [tool for tool in (IPPEVEPRINTER, DBUS_DAEMON) if shutil.which(tool) is None]


def free_port() -> int:
    """Return a TCP port free on both 127.0.0.1 and ::1 at the time of asking."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = int(s4.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                    s6.bind(("::1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no TCP port free on both 127.0.0.1 and ::1 after 50 tries")


def _quote(value: str) -> str:
    """Return value as a quoted ipptool-style string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def attributes_file_text(config: IppEveConfig) -> str:
    """Return the ``-a`` attributes file (ippserver/ipptool syntax) for a config."""
    markers = config.markers
    lines = [
        "ATTR mimeMediaType document-format-supported text/plain,application/octet-stream",
        f"ATTR text printer-make-and-model {_quote(config.make_and_model)}",
    ]
    if config.device_id:
        lines.append(f"ATTR text printer-device-id {_quote(config.device_id)}")
    if config.firmware:
        lines.append(f"ATTR text printer-firmware-string-version {_quote(config.firmware)}")
    if markers:
        lines += [
            "ATTR name marker-names " + ",".join(_quote(m.name) for m in markers),
            "ATTR name marker-colors " + ",".join(_quote(m.colour) for m in markers),
            "ATTR keyword marker-types " + ",".join(m.type for m in markers),
            "ATTR integer marker-levels " + ",".join(str(m.level) for m in markers),
            "ATTR integer marker-low-levels " + ",".join(str(m.low) for m in markers),
            "ATTR integer marker-high-levels " + ",".join(str(m.high) for m in markers),
        ]
    lines += list(config.extra_lines)
    return "\n".join(lines) + "\n"


class IppEvePrinter:
    """A running ippeveprinter on localhost (127.0.0.1 and ::1 only), from start() to stop()."""

    def __init__(self, config: IppEveConfig) -> None:
        unknown = set(config.state_reasons) - SETTABLE_REASONS
        if unknown:
            raise ValueError(f"ippeveprinter cannot report {sorted(unknown)}")
        self.config = config
        self.host = "127.0.0.1"
        self.port = 0
        self.path = "/ipp/print"
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._dbus: asyncio.subprocess.Process | None = None
        self._server: asyncio.subprocess.Process | None = None
        self.log_path: Path | None = None

    @property
    def uri(self) -> str:
        """Return the ipp:// URI of the printer."""
        return f"ipp://{self.host}:{self.port}{self.path}"

    async def start(self) -> None:
        """Start dbus-daemon and ippeveprinter, wait until it answers IPP, set the state reasons."""
        missing = missing_tools()
        if missing:
            raise IppEveUnavailable(
                f"not installed: {', '.join(missing)} (Debian: cups-ipp-utils dbus-daemon)"
            )
        self._tmp = tempfile.TemporaryDirectory(prefix="tonerwatch-ippeve-")
        tmp = Path(self._tmp.name)
        try:
            await self._start_in(tmp)
        except BaseException:
            await self.stop()
            raise

    async def _start_in(self, tmp: Path) -> None:
        """Start both processes with their files in tmp."""
        bus_socket = tmp / "bus"
        self._dbus = await asyncio.create_subprocess_exec(
            DBUS_DAEMON,
            "--session",
            "--nofork",
            "--nopidfile",
            f"--address=unix:path={bus_socket}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await _wait_for(lambda: bus_socket.exists(), "dbus-daemon socket", START_TIMEOUT_S)

        attrs = tmp / "printer.conf"
        attrs.write_text(attributes_file_text(self.config), encoding="utf-8")
        command = tmp / "report-state.sh"
        reasons = ",".join(self.config.state_reasons)
        command.write_text(
            "#!/bin/sh\n"
            "# Print command: swallow the document, then report printer-state-reasons.\n"
            "cat > /dev/null\n" + (f'echo "STATE: +{reasons}" >&2\n' if reasons else "")
        )
        command.chmod(0o755)
        spool = tmp / "spool"
        spool.mkdir()
        (tmp / "keys").mkdir()
        self.log_path = tmp / "ippeveprinter.log"
        self.port = free_port()
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus_socket}"}
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        with self.log_path.open("wb") as log:
            self._server = await asyncio.create_subprocess_exec(
                IPPEVEPRINTER,
                "-v",
                "-r",
                "off",
                "-n",
                "localhost",
                "-p",
                str(self.port),
                "-a",
                str(attrs),
                "-c",
                str(command),
                "-l",
                self.config.location,
                "-d",
                str(spool),
                "-K",
                str(tmp / "keys"),
                self.config.service_name,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )
        await _wait_for(self._answers_ipp, "ippeveprinter to answer IPP", START_TIMEOUT_S)
        if self.config.state_reasons:
            await self._report_state_reasons()

    async def _answers_ipp(self) -> bool:
        """Return whether the server answers Get-Printer-Attributes (False while starting)."""
        if self._server is not None and self._server.returncode is not None:
            raise RuntimeError(f"ippeveprinter exited {self._server.returncode}: {self.log_tail()}")
        try:
            await self._printer_attributes(["printer-state"])
        except Exception:
            return False
        return True

    async def _printer_attributes(self, names: list[str]) -> dict[str, Any]:
        """Return the printer group for names (helper's own check, not the code under test)."""
        async with IPP(host=self.host, port=self.port, base_path=self.path, request_timeout=2) as c:
            message = await c.execute(
                IppOperation.GET_PRINTER_ATTRIBUTES,
                {"operation-attributes-tag": {"requested-attributes": names}},
            )
        printers: list[dict[str, Any]] = message.get("printers") or [{}]
        return printers[0]

    async def _report_state_reasons(self) -> None:
        """Send one Print-Job whose command emits the STATE: line, wait until the reasons show."""
        async with IPP(host=self.host, port=self.port, base_path=self.path, request_timeout=5) as c:
            await c.execute(
                IppOperation.PRINT_JOB,
                {
                    "operation-attributes-tag": {
                        "job-name": "tonerwatch-state",
                        "document-format": "text/plain",
                    },
                    "data": b"state\n",
                },
            )
        wanted = set(self.config.state_reasons)

        async def reasons_shown() -> bool:
            got = (await self._printer_attributes(["printer-state-reasons"])).get(
                "printer-state-reasons", []
            )
            values = got if isinstance(got, list) else [got]
            shown = {str(v).rsplit("-", 1)[0] for v in values}
            return wanted <= shown

        await _wait_for(reasons_shown, "printer-state-reasons to be reported", START_TIMEOUT_S)

    def log_tail(self, limit: int = 2000) -> str:
        """Return the end of ippeveprinter's log, for failure messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-limit:]

    async def stop(self) -> None:
        """Stop ippeveprinter and dbus-daemon (TERM, then KILL after a bound) and remove files."""
        for proc in (self._server, self._dbus):
            if proc is None or proc.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._server = self._dbus = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> IppEvePrinter:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


async def _wait_for(check: Any, what: str, limit_s: float) -> None:
    """Poll check (sync or async, returning bool) every 50 ms until true; raise TimeoutError after limit_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out after {limit_s:g} s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def ippeveprinter(
    markers: Sequence[Marker], state_reasons: Sequence[str] = (), **kwargs: Any
) -> AsyncIterator[IppEvePrinter]:
    """Yield a started IppEvePrinter with these markers and reasons; stop it afterwards."""
    printer = IppEvePrinter(
        IppEveConfig(markers=tuple(markers), state_reasons=tuple(state_reasons), **kwargs)
    )
    async with printer:
        yield printer
