"""Service lifetime: a stop event set by SIGTERM/SIGINT, shared by every loop of a process; ports checked up front."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set stop on SIGTERM and SIGINT (a second signal is left to the default handler)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _first_then_default, loop, sig, stop)


def _first_then_default(
    loop: asyncio.AbstractEventLoop, sig: signal.Signals, stop: asyncio.Event
) -> None:
    stop.set()
    loop.remove_signal_handler(sig)


async def sleep_until_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to seconds; return True if stop was set meanwhile."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True


def stop_event(stop: asyncio.Event | None) -> asyncio.Event:
    """Return stop, or (a service run alone) a new event that SIGTERM/SIGINT set."""
    if stop is not None:
        return stop
    own = asyncio.Event()
    install_stop_signals(own)
    return own


class PortInUse(Exception):
    """A port we must listen on is taken; the message names it and the setting that moves it."""


def ensure_port_free(host: str, port: int, what: str, setting: str) -> None:
    """Raise PortInUse (one line: which port, which setting moves it) if host:port cannot be bound now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # Same reuse rule as the servers (aiohttp, uvicorn): a port in TIME_WAIT is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"{what} {host}:{port} is already in use ({exc.strerror}); "
                f"stop what holds it or set {setting}"
            ) from None
