"""A TCP relay a test controls, put in front of a shared server (PostgreSQL, SMTP, HTTP).

Cutting it makes the server unreachable for the processes behind it (open connections are
aborted, new ones closed at once) without touching the server, which other tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator


class TcpRelay:
    """Relays 127.0.0.1:port to target; cut() and restore() switch the way through."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.up = threading.Event()
        self.up.set()
        self.connections = 0
        # Connection attempts closed at once because the relay was cut (how often a client tried).
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="tcp-relay", daemon=True)
        self._started = threading.Event()
        self._server: asyncio.Server | None = None

    def __enter__(self) -> TcpRelay:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        """Make the target unreachable: abort every relayed connection, close new ones at once."""
        self.up.clear()
        self._loop.call_soon_threadsafe(self._abort_all)

    def restore(self) -> None:
        """Let connections through again."""
        self.up.set()

    def _abort_all(self) -> None:
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, sock=self._sock)
        )
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._abort_all()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up.is_set():
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            with contextlib.suppress(Exception):
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


@contextlib.contextmanager
def relay_to(host: str, port: int) -> Iterator[TcpRelay]:
    """Return a running relay to host:port, stopped after."""
    with TcpRelay(host, port) as relay:
        yield relay
