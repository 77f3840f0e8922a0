"""A real snmpsim agent on loopback serving .snmprec recordings: the demo fleet and the tests.

Runtime code may use it (`tonerwatch up --demo`); it runs the `snmpsim-command-responder` script of
the snmpsim package (a dependency of the tonerwatch command), never a network beyond 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tonerwatch_shared.snmp.errors import SnmpError
from tonerwatch_shared.snmp.target import AuthProtocol, PrivProtocol, SnmpTarget
from tonerwatch_shared.snmp.udp import UdpSnmpClient

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
_PROBE_OID = "1.3.6.1.2.1.1.1.0"


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody is bound to on host right now."""
    _check_loopback(host)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _check_loopback(host: str) -> None:
    if ipaddress.ip_address(host) not in ipaddress.ip_network("127.0.0.0/8"):
        raise ValueError(f"simulated agents listen on 127.0.0.0/8 only, not {host}")


def responder_command() -> Path:
    """The snmpsim-command-responder script of the running interpreter's environment."""
    path = Path(sys.executable).parent / "snmpsim-command-responder"
    if not path.exists():
        found = shutil.which("snmpsim-command-responder")
        if found is None:
            raise FileNotFoundError("snmpsim-command-responder not installed")
        path = Path(found)
    return path


@dataclass(frozen=True)
class V3User:
    """An SNMPv3 USM user the simulator accepts."""

    name: str
    auth_protocol: AuthProtocol = "SHA256"
    auth_key: str = "authpass-tonerwatch"
    priv_protocol: PrivProtocol | None = "AES128"
    priv_key: str | None = "privpass-tonerwatch"


class SnmpSimulator:
    """snmpsim-command-responder as a subprocess; `async with` starts it and waits until it answers."""

    def __init__(
        self,
        recordings: Iterable[Path],
        endpoints: Sequence[tuple[str, int]] | None = None,
        *,
        v3_user: V3User | None = None,
        max_var_binds: int | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.recordings = [Path(r) for r in recordings]
        if not self.recordings:
            raise ValueError("no recordings to serve")
        self.endpoints = list(endpoints or [("127.0.0.1", free_udp_port())])
        for host, _port in self.endpoints:
            _check_loopback(host)
        self.v3_user = v3_user
        self.max_var_binds = max_var_binds
        self.startup_timeout = startup_timeout
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """The first endpoint's address."""
        return self.endpoints[0][0]

    @property
    def port(self) -> int:
        """The first endpoint's port."""
        return self.endpoints[0][1]

    @property
    def communities(self) -> list[str]:
        """The communities served: one per recording, the file stem."""
        return [r.stem for r in self.recordings]

    def target(self, name: str, **kwargs: object) -> SnmpTarget:
        """A v2c target reading recording `name` (community = file stem) at the first endpoint."""
        if name not in self.communities:
            raise KeyError(f"no recording {name!r} served")
        options: dict[str, object] = {"timeout": 1.0, "retries": 1, **kwargs}
        return SnmpTarget(self.host, self.port, community=name, **options)  # type: ignore[arg-type]

    def v3_target(self, name: str, **kwargs: object) -> SnmpTarget:
        """A v3 target for the simulator's user; snmpsim picks the recording by context name."""
        if self.v3_user is None:
            raise ValueError("simulator started without a v3 user")
        u = self.v3_user
        options: dict[str, object] = {"timeout": 2.0, "retries": 1, **kwargs}
        return SnmpTarget(
            self.host,
            self.port,
            version="3",
            user=u.name,
            auth_protocol=u.auth_protocol,
            auth_key=u.auth_key,
            priv_protocol=u.priv_protocol,
            priv_key=u.priv_key,
            community=name,
            **options,  # type: ignore[arg-type]
        )

    def _command(self, data_dir: Path, cache_dir: Path) -> list[str]:
        cmd = [
            str(responder_command()),
            f"--data-dir={data_dir}",
            f"--cache-dir={cache_dir}",
            "--logging-method=null",
        ]
        if self.max_var_binds is not None:
            cmd.append(f"--max-var-binds={self.max_var_binds}")
        if self.v3_user is not None:
            u = self.v3_user
            cmd += [
                f"--v3-user={u.name}",
                f"--v3-auth-key={u.auth_key}",
                f"--v3-auth-proto={u.auth_protocol}",
            ]
            if u.priv_protocol and u.priv_key:
                cmd += [f"--v3-priv-key={u.priv_key}", f"--v3-priv-proto={u.priv_protocol}"]
            else:
                cmd.append("--v3-priv-proto=NONE")
        cmd += [f"--agent-udpv4-endpoint={host}:{port}" for host, port in self.endpoints]
        return cmd

    async def start(self) -> None:
        """Starts the responder and returns once it answers a GET, or raises."""
        self._dir = tempfile.TemporaryDirectory(prefix="tonerwatch-snmpsim-")
        root = Path(self._dir.name)
        data_dir = root / "data"
        data_dir.mkdir()
        for recording in self.recordings:
            # Copied, not linked: snmpsim names a linked file's community after the link target.
            shutil.copyfile(recording, data_dir / recording.name)
        self._process = self._spawn(self._command(data_dir, root / "cache"))
        try:
            await self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    async def _wait_ready(self) -> None:
        assert self._process is not None
        client = UdpSnmpClient(max_in_flight=4)
        deadline = time.monotonic() + self.startup_timeout
        probes = [
            SnmpTarget(h, p, community=self.communities[0], timeout=0.5, retries=0)
            for h, p in self.endpoints
        ]
        try:
            while True:
                if self._process.poll() is not None:
                    err = (
                        self._process.stderr.read().decode(errors="replace")[-2000:]
                        if (self._process.stderr)
                        else ""
                    )
                    raise RuntimeError(f"snmpsim exited with {self._process.returncode}: {err}")
                try:
                    for probe in probes:
                        await client.get(probe, [_PROBE_OID])
                    return
                except SnmpError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"snmpsim did not answer within {self.startup_timeout:g}s"
                        ) from None
                    await asyncio.sleep(0.1)
        finally:
            await client.close()

    def stop(self) -> None:
        """Stops the responder (terminate, then kill) and removes its data dir."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def __aenter__(self) -> SnmpSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
