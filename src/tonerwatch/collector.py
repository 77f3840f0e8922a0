"""`tonerwatch collector`: discovery and the poller for one site, behind its firewall, on a leaf node.

The collector starts its own nats-server (JetStream domain `site-<id>`, data in --data-dir) that
dials out to the hub's leaf-node listener with TLS and the site's credentials; nothing listens
beyond 127.0.0.1 at the site. The services work from the site's own streams, so polling goes on
with the link down; the hub sources the readings when it comes back (tonerwatch_shared.sites).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import httpx

from tonerwatch.services import CliError, service_module
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port
from tonerwatch_shared.lifecycle import install_stop_signals
from tonerwatch_shared.logs import current_service
from tonerwatch_shared.settings import load_settings
from tonerwatch_shared.sites import (
    SITE_EVENTS_MAX_AGE_S,
    SITE_EVENTS_MAX_BYTES,
    SiteCredentials,
    site_domain,
    site_events_stream_config,
    site_leafnodes,
    site_subjects,
)

log = logging.getLogger("tonerwatch.collector")
COLLECTOR_SERVICES = ("discovery", "poller")


async def run_collector(
    hub_url: str,
    credentials: SiteCredentials,
    data_dir: Path,
    *,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    max_bytes: int = SITE_EVENTS_MAX_BYTES,
    max_age_s: float = SITE_EVENTS_MAX_AGE_S,
    port: int | None = None,
    leaf_wait_s: float = 10.0,
    **knobs: Any,
) -> None:
    """Run one site's collector until stop: its leaf nats-server, discovery and the poller."""
    site = credentials.site
    hub = credentials.hub_subjects
    local = site_subjects(hub, site)
    server = EmbeddedNats(
        data_dir / "nats",
        port=port,
        http_port=free_tcp_port(),
        server_name=f"collector-{site}",
        domain=site_domain(site),
        extra=site_leafnodes(hub_url, credentials),
    )
    url = await asyncio.to_thread(server.start)
    log.info("collector of site %s: leaf nats-server on %s, hub %s", site, url, hub_url)
    try:
        if not await _leaf_connected(server, leaf_wait_s):
            log.warning("hub %s not reached yet: working offline, readings kept here", hub_url)
        bus = await Bus.connect(url, subjects=local, name=f"collector-{site}", stop=stop)
        try:
            # Before the services declare theirs: this one also sources the site's work from the hub.
            await bus.ensure_stream(
                site_events_stream_config(hub, site, max_bytes=max_bytes, max_age_s=max_age_s)
            )
        finally:
            await bus.drain()
        overrides: dict[str, Any] = {
            "nats_url": url,
            "subject_root": local.root,
            "stream_prefix": local.stream_prefix,
            "sites": [site],
            "default_site": site,
            "data_dir": data_dir,
            "events_max_bytes": max_bytes,
            "events_max_age_s": max_age_s,
            **knobs,
        }
        readies = {name: asyncio.Event() for name in COLLECTOR_SERVICES}
        async with asyncio.TaskGroup() as tg:
            for name in COLLECTOR_SERVICES:
                settings = load_settings(service_module(name).Settings, **overrides)
                tg.create_task(_run_service(name, settings, stop, readies[name]))
            if ready is not None:
                tg.create_task(_all_ready(readies, ready, stop))
    finally:
        await asyncio.to_thread(server.stop)


async def _leaf_connected(server: EmbeddedNats, timeout_s: float) -> bool:
    """Return True once the site's server has its leaf connection to the hub (False after timeout_s).

    Creating the site's stream before the link is up works, but its source then waits out
    nats-server's retry back-off (10 s and more) before the first configuration arrives.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                leafz = (await client.get(f"http://127.0.0.1:{server.http_port}/leafz")).json()
                if leafz.get("leafnodes"):
                    return True
            await asyncio.sleep(0.1)
    return False


async def _run_service(name: str, settings: Any, stop: asyncio.Event, ready: asyncio.Event) -> None:
    current_service.set(name)
    await service_module(name).run(settings, stop=stop, ready=ready)


async def _all_ready(
    readies: dict[str, asyncio.Event], ready: asyncio.Event, stop: asyncio.Event
) -> None:
    while not all(r.is_set() for r in readies.values()):
        if stop.is_set():
            return
        await asyncio.sleep(0.05)
    log.info("collector ready")
    ready.set()


def add_collector_parser(sub: Any) -> None:
    """Add `tonerwatch collector` to the CLI's subcommands."""
    collector = sub.add_parser(
        "collector",
        help="run one site's discovery and poller, connected out to a hub (many sites, one hub)",
        description="Run discovery and the poller for one site with an embedded nats-server that "
        "connects out (TLS, the site's credentials) to the hub's leaf-node listener. Readings stay "
        "at the site while the link is down and reach the hub when it returns.",
    )
    collector.add_argument("--hub", required=True, help="the hub's leaf-node URL, tls://host:7422")
    collector.add_argument(
        "--credentials", required=True, type=Path, help="the site's credentials file (JSON)"
    )
    collector.add_argument(
        "--data-dir", type=Path, default=None, help="where the site's data lives"
    )


def collector_command(args: argparse.Namespace) -> int:
    """Run the collector until Ctrl-C/SIGTERM."""
    if not args.credentials.is_file():
        raise CliError(f"credentials file {args.credentials} not found")
    credentials = SiteCredentials.read(args.credentials)
    data_dir = args.data_dir or Path.cwd() / f"tonerwatch-site-{credentials.site}"

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_collector(args.hub, credentials, data_dir, stop=stop)

    asyncio.run(main())
    return 0


__all__ = ["add_collector_parser", "collector_command", "run_collector"]
