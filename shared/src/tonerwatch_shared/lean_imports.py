"""Keep libraries from importing what TonerWatch processes never use (issue 15: memory).

- nats-py imports aiohttp whenever it is installed (it is, through pyipp), only for its
  websocket transport; TonerWatch connects with nats:// and tls:// only. Importing nats with
  aiohttp hidden leaves that transport off; aiohttp stays importable for whoever needs it (the
  IPP client, on its first IPP request).
- httpx imports its command-line interface (click, rich, pygments) whenever they are installed.

Call skip_unused_imports() before anything imports nats or httpx: `tonerwatch` (the command)
does it first thing. Measured PSS after the imports of `tonerwatch serve poller`: 49.5 MB before,
see bench/E2E.md for after.
"""

from __future__ import annotations

import sys


def skip_unused_imports() -> None:
    """Import nats without aiohttp, and make httpx skip its command line; idempotent."""
    if "nats.aio.transport" not in sys.modules and "aiohttp" not in sys.modules:
        sys.modules["aiohttp"] = None  # type: ignore[assignment]  # an ImportError for nats
        try:
            import nats.aio.transport  # noqa: F401
        finally:
            del sys.modules["aiohttp"]
    if "httpx" not in sys.modules:
        # httpx falls back to a stub `main` when its _main cannot be imported.
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


__all__ = ["skip_unused_imports"]
