"""A real HTTP CONNECT proxy, run as its own process on loopback, with Basic credentials.

`python _connect_proxy.py PORT USER PASSWORD`: prints "ready" once listening; answers CONNECT with
407 (Proxy-Authenticate) without the right Proxy-Authorization, 403 for a target not on
127.0.0.1, else 200 and tunnels bytes both ways. Each tunnel and refusal is one line on stdout.
"""

from __future__ import annotations

import asyncio
import base64
import sys


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
                up_reader, up_writer = await asyncio.open_connection(host, int(port_s))
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


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
