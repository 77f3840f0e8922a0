"""`tonerwatch portal`: run the reference upstream portal (see what the syncer sends; feed a downlink)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
from pathlib import Path
from typing import Any

SECRET_ENV = "TONERWATCH_PORTAL_SECRET"


def add_portal_parser(sub: Any) -> None:
    """Add the `portal` subcommand to sub (argparse subparsers)."""
    portal = sub.add_parser(
        "portal",
        help="run the reference upstream portal (docs/upstream-openapi.yaml), for integrators and tests",
        description="Serve the upstream contract on HOST:PORT: check signatures, keep what arrives "
        "(GET /admin/received, and --store FILE as JSON lines), and answer downlink requests from "
        "items queued with POST /admin/downlink. Point a syncer's TONERWATCH_SYNC_URL at it. "
        f"The shared secret comes from {SECRET_ENV} (unsigned deliveries are taken without it).",
    )
    portal.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    portal.add_argument("--port", type=int, default=8099, help="port (default 8099)")
    portal.add_argument("--store", type=Path, default=None, help="append what arrives to FILE")
    portal.add_argument(
        "--cert", type=Path, default=None, help="TLS certificate (PEM): serve https"
    )
    portal.add_argument("--key", type=Path, default=None, help="its private key (PEM)")


async def _serve(args: argparse.Namespace) -> int:
    # Imported here: the portal runs on aiohttp, which no other command needs.
    from tonerwatch_shared.portal import Portal, serving

    portal = Portal(secret=os.environ.get(SECRET_ENV) or None, store=args.store)
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    async with serving(portal, args.host, args.port, context) as url:
        print(f"tonerwatch portal: listening at {url} (TONERWATCH_SYNC_URL={url}); Ctrl-C stops it")
        await asyncio.Event().wait()
    return 0


def portal_command(args: argparse.Namespace) -> int:
    """Run the reference portal until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
