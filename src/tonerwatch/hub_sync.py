"""`tonerwatch hub-sync`: keep one hub nats-server's config converged to the hub's wanted sites.

It runs beside each hub nats-server (a sidecar: a compose service sharing a volume, a container
in the nats pod sharing an emptyDir). It renders CONF from the hub folder (`hub-config`'s
hub.json and secrets.json, read-only) and the bucket the api records enrolments and revocations
in (tonerwatch_shared.hub_sync), writes it atomically, asks its own server to reload (as the
system user) and drops the live leaf connections of sites revoked since, on its own server only:
each replica of a hub cluster has its own hub-sync. The last bucket state seen is kept beside
CONF (wanted.json), so a restarted sidecar renders it before it reaches NATS; the bucket is
watched, and re-read in full every --resync-s as a safety net (and the folder with it, so an
updated Secret is taken up too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.kv import KeyValue

from tonerwatch.services import CliError
from tonerwatch_shared.bus import Bus, BusStopped
from tonerwatch_shared.hub import SYSTEM_USER, HubError, read_state
from tonerwatch_shared.hub_sync import (
    HUB_SITES_BUCKET,
    HUB_SITES_HISTORY,
    WantedSite,
    cluster_block,
    parse_wanted,
    read_wanted,
    render_synced,
    system_and_hub_passwords,
    write_if_changed,
)
from tonerwatch_shared.kv import watch_all
from tonerwatch_shared.sites import kick_site
from tonerwatch_shared.subjects import Subjects

log = logging.getLogger("tonerwatch.hub_sync")
CACHE_FILE = "wanted.json"
TIMEOUT_S = 5.0


@dataclass
class HubSync:
    """One hub server's convergence: render, write, reload, kick."""

    folder: Path
    conf: Path
    nats_url: str = "nats://127.0.0.1:4222"
    server_name: str = "hub"
    cluster: str = ""
    replicas: int = 1
    resync_s: float = 30.0
    ports: dict[str, Any] = field(default_factory=dict)  # HubLayout fields replaced
    wanted: dict[str, WantedSite] = field(default_factory=dict)
    revoked: set[str] | None = None  # as last rendered; None: nothing rendered yet
    reload_pending: bool = False
    kick_pending: set[str] = field(default_factory=set)

    @property
    def cache(self) -> Path:
        return self.conf.with_name(CACHE_FILE)

    def load_cache(self) -> None:
        """Take up the bucket state the last run saw (nothing if none)."""
        try:
            data = json.loads(self.cache.read_text())
            self.wanted = {k: WantedSite.model_validate(v) for k, v in data.items()}
        except FileNotFoundError:
            return
        except ValueError as exc:
            log.warning("%s unreadable, ignored: %s", self.cache, exc)

    def save_cache(self) -> None:
        data = {k: v.model_dump(mode="json") for k, v in sorted(self.wanted.items())}
        write_if_changed(self.cache, json.dumps(data, indent=2))

    def render(self) -> bool:
        """Render CONF from the folder and the bucket's word; return whether it changed."""
        text, revoked = render_synced(
            self.folder,
            self.wanted,
            server_name=self.server_name,
            cluster=self.cluster,
            ports=self.ports,
        )
        changed = write_if_changed(self.conf, text)
        # The first rendering of a run kicks every revoked site once (a leaf admitted by an
        # older config, e.g. a new pod's bootstrap rendering before the bucket was read).
        self.kick_pending |= revoked - (self.revoked or set())
        self.revoked = revoked
        if changed:
            self.reload_pending = True
            log.info("hub-sync: %s rewritten (revoked: %s)", self.conf, sorted(revoked) or "none")
        return changed

    async def converge(self, system: Client) -> None:
        """Reload the own server if CONF changed since, then drop revoked sites' live leaves."""
        server_id = str(system._server_info.get("server_id") or "")
        if not server_id:
            raise HubError("the own nats-server did not say its id")
        if self.reload_pending:
            answer = await system.request(f"$SYS.REQ.SERVER.{server_id}.RELOAD", b"", TIMEOUT_S)
            error = json.loads(answer.data).get("error")
            if error:
                raise HubError(f"the own nats-server refused the reload: {error}")
            self.reload_pending = False
            log.info("hub-sync: nats-server %s reloaded", server_id)
        for site in sorted(self.kick_pending):
            dropped = await kick_site(system, site, TIMEOUT_S, server_id=server_id)
            self.kick_pending.discard(site)
            if dropped:
                log.info("hub-sync: dropped %d live leaf connection(s) of site %s", dropped, site)

    async def step(self, system: Client) -> None:
        """Render and converge; a failure is logged and retried on the next step."""
        try:
            self.render()
            await self.converge(system)
        except (HubError, OSError, TimeoutError, nats.errors.Error) as exc:
            log.warning("hub-sync: not converged yet, retrying: %r", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Converge until stop is set."""
        system_password, hub_password = system_and_hub_passwords(self.folder)
        self.load_cache()
        self.render()
        subjects = read_state(self.folder)[0].subjects
        bus = await _connect(self.nats_url, "hub", hub_password, stop)
        system = (await _connect(self.nats_url, SYSTEM_USER, system_password, stop)).nc
        try:
            bus.subjects, bus.replicas = subjects, self.replicas
            kv = await _bucket(bus, stop)
            while not stop.is_set():
                await self._watch(kv, system, stop)
        finally:
            for nc in (bus.nc, system):
                with contextlib.suppress(Exception):
                    await nc.close()

    async def _watch(self, kv: KeyValue, system: Client, stop: asyncio.Event) -> None:
        """Follow the bucket until stop (or until the watcher breaks: the caller starts another)."""
        try:
            self._take(await read_wanted(kv))
            watcher = await watch_all(kv)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            log.warning("hub-sync: bucket out of reach, retrying: %r", exc)
            await _pause(stop, 1.0)
            return
        await self.step(system)
        log.info(
            "hub-sync: watching %d site record(s), re-reading every %gs",
            len(self.wanted),
            self.resync_s,
        )
        loop = asyncio.get_running_loop()
        resync_at = loop.time() + self.resync_s
        try:
            while not stop.is_set():
                try:
                    entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    if stop.is_set():
                        return
                    # The safety net (and a retry after a failed step): bucket and folder again.
                    if self.reload_pending or self.kick_pending or loop.time() >= resync_at:
                        self._take(await read_wanted(kv))
                        await self.step(system)
                        resync_at = loop.time() + self.resync_s
                    continue
                if entry is None:
                    continue  # the end of the values there were when the watch began
                record = parse_wanted(entry.value) if entry.operation is None else None
                if record is None:
                    self.wanted.pop(entry.key, None)
                else:
                    self.wanted[entry.key] = record
                self.save_cache()
                await self.step(system)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            log.warning("hub-sync: watch broke, watching again: %r", exc)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _take(self, wanted: dict[str, WantedSite]) -> None:
        self.wanted = wanted
        self.save_cache()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _connect(url: str, user: str, password: str, stop: asyncio.Event) -> Bus:
    """Connect, waiting as long as it takes (the server may start after this sidecar)."""
    try:
        return await Bus.connect(
            url,
            subjects=Subjects(),
            name=f"hub-sync-{user}",
            max_age_s=0.0,
            attempts=1_000_000,
            max_backoff_s=2.0,
            user=user,
            password=password,
            stop=stop,
        )
    except BusStopped:
        raise CliError("stopped before the hub's nats-server was reachable") from None


async def _bucket(bus: Bus, stop: asyncio.Event) -> KeyValue:
    while True:
        try:
            return await bus.key_value(HUB_SITES_BUCKET, history=HUB_SITES_HISTORY)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            if stop.is_set():
                raise CliError("stopped before the bucket was reachable") from None
            log.info("hub-sync: bucket not ready yet: %r", exc)
            await _pause(stop, 1.0)


def add_hub_sync_parser(sub: Any) -> None:
    """Add `tonerwatch hub-sync` to the CLI's subcommands."""
    cmd = sub.add_parser(
        "hub-sync",
        help="keep one hub nats-server's config converged to the sites the api admits (sidecar)",
        description="Beside each hub nats-server: render --conf from the hub folder (read-only) "
        "and the api's record of enrolled and revoked sites (KV bucket <prefix>_HUB_SITES), "
        "reload that server on a change and drop a revoked site's live leaf connection. "
        "--render-only writes --conf once and exits (before the server starts).",
    )
    cmd.add_argument("--hub-dir", required=True, type=Path, help="what `hub-config --out` wrote")
    cmd.add_argument("--conf", required=True, type=Path, help="the config file the server reads")
    cmd.add_argument(
        "--nats-url", default="nats://127.0.0.1:4222", help="this sidecar's own nats-server"
    )
    cmd.add_argument(
        "--server-name",
        default=os.environ.get("POD_NAME") or "hub",
        help="the server's name (default: $POD_NAME, else hub); unique in a cluster",
    )
    cmd.add_argument("--cluster-name", default=None, help="a hub cluster's name (none: one server)")
    cmd.add_argument("--cluster-port", type=int, default=6222, help="the cluster's route port")
    cmd.add_argument(
        "--routes", default="", help="every cluster member's route URL, comma separated"
    )
    cmd.add_argument(
        "--replicas", type=int, default=1, help="the bucket's replicas (the cluster's size)"
    )
    cmd.add_argument(
        "--resync-s", type=float, default=30.0, help="re-read the bucket and folder this often"
    )
    cmd.add_argument("--render-only", action="store_true", help="write --conf once and exit")
    # Several servers of one cluster on one machine (tests): each its own ports and store.
    for option, kind in (
        ("--client-port", int),
        ("--leaf-port", int),
        ("--monitor-port", int),
        ("--store-dir", Path),
    ):
        cmd.add_argument(option, type=kind, default=None, help="instead of hub.json's")


def hub_sync_from_args(args: argparse.Namespace) -> HubSync:
    """Return the HubSync the options describe."""
    cluster = ""
    if args.cluster_name:
        routes = [r.strip() for r in args.routes.split(",") if r.strip()]
        cluster = cluster_block(args.cluster_name, args.cluster_port, routes)
    names = ("client_port", "leaf_port", "monitor_port", "store_dir")
    ports = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return HubSync(
        ports=ports,
        folder=args.hub_dir,
        conf=args.conf,
        nats_url=args.nats_url,
        server_name=args.server_name,
        cluster=cluster,
        replicas=args.replicas,
        resync_s=args.resync_s,
    )


def hub_sync_command(args: argparse.Namespace) -> int:
    """Render once, or converge until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sync = hub_sync_from_args(args)
    try:
        if args.render_only:
            sync.load_cache()
            sync.render()
            print(f"tonerwatch: wrote {args.conf}")
            return 0
        asyncio.run(_serve(sync))
    except HubError as exc:
        raise CliError(str(exc)) from None
    return 0


async def _serve(sync: HubSync) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sync.run(stop)


__all__ = ["HubSync", "add_hub_sync_parser", "hub_sync_command", "hub_sync_from_args"]
