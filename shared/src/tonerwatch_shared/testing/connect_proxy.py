"""A real HTTP CONNECT proxy, run as its own process on loopback, with Basic credentials.

`python -m tonerwatch_shared.testing.connect_proxy PORT USER PASSWORD` (or `running(user,
password)` in a test, which starts that process): prints "ready" once listening; answers CONNECT with
407 (Proxy-Authenticate) without the right Proxy-Authorization, 403 for a target not on
127.0.0.1, 502 when the target does not answer, else 200 and tunnels bytes both ways. Each tunnel and refusal is one line on stdout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tonerwatch_shared.embedded import free_tcp_port


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(port: int, user: str, password: str) -> None:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = [*lines[0].split(" "), "", "", ""][:3]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
        }
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        elif headers.get("proxy-authorization") != expected:
            print(f"refused {target} 407", flush=True)
            writer.write(
                b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="office"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
        else:
            host, _, port_s = target.rpartition(":")
            if host != "127.0.0.1":
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            else:
                try:
                    up_reader, up_writer = await asyncio.open_connection(host, int(port_s))
                except OSError as exc:  # the portal is down: say so, as an office proxy does
                    print(f"unreachable {target} 502 {exc!r}", flush=True)
                    writer.write(
                        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    await writer.drain()
                    writer.close()
                    return
                print(f"tunnel {target}", flush=True)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
                return
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


@dataclass
class RunningProxy:
    """The proxy process: its port, the process, and its log so far (one line per tunnel or refusal)."""

    port: int
    proc: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.strip())


@contextlib.contextmanager
def running(user: str, password: str) -> Iterator[RunningProxy]:
    """Run the proxy as its own process on 127.0.0.1 while the block runs."""
    port = free_tcp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", __name__, str(port), user, password],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", "the CONNECT proxy did not start"
        proxy = RunningProxy(port, proc)
        # Its log is read on as it comes, so a long test never fills the pipe and stalls it.
        threading.Thread(target=proxy._read, daemon=True).start()
        yield proxy
    finally:
        proc.terminate()
        proc.wait(timeout=10)


__all__ = ["RunningProxy", "running", "serve"]

if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
