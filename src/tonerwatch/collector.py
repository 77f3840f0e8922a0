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
import json
import logging
import os
import re
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors

from tonerwatch.services import CliError, service_module
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port, nats_server_binary
from tonerwatch_shared.events import CollectorStatus
from tonerwatch_shared.hub import HubError, write_site_bundle
from tonerwatch_shared.kv import list_keys
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
# How often a collector announces itself (README "Collector health"); the hub's alerter calls a
# site offline after a few of these are missed.
STATUS_INTERVAL_S = 60.0
STATUS_INTERVAL_ENV = "TONERWATCH_COLLECTOR_STATUS_INTERVAL_S"
ENROLLED_DIR = "site"  # DATA_DIR/site/: what an enrolment wrote
RUNNING_FILE = "collector.json"  # DATA_DIR/collector.json: a running collector's leaf monitor
CHECK_TIMEOUT_S = 10.0
# What nats-server logs when a leaf connection fails, first match wins: (needle, what it means).
_LINK_FAILURES: tuple[tuple[str, str], ...] = (
    ("authorization violation", "the hub refused the site's credentials (revoked, or wrong)"),
    ("authentication error", "the hub refused the site's credentials (revoked, or wrong)"),
    ("tls", "TLS handshake with the hub failed (certificate or CA)"),
    ("x509", "TLS handshake with the hub failed (certificate or CA)"),
    ("certificate", "TLS handshake with the hub failed (certificate or CA)"),
    ("connection refused", "the hub refused the connection (nothing listens on its leaf port)"),
    ("no such host", "the hub's host name does not resolve"),
    ("i/o timeout", "the hub did not answer (firewall or wrong address)"),
    ("error trying to connect", "the hub could not be reached"),
)


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
    status_interval_s: float = STATUS_INTERVAL_S,
    **knobs: Any,
) -> None:
    """Run one site's collector until stop: its leaf nats-server, discovery and the poller."""
    started_at = datetime.now(UTC)
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
    running = data_dir / RUNNING_FILE
    try:
        # What `collector --check` reads to judge this collector's own link (the healthcheck).
        running.write_text(
            json.dumps(
                {
                    "site": site,
                    "hub": hub_url,
                    "pid": os.getpid(),
                    "monitor": f"http://127.0.0.1:{server.http_port}",
                }
            )
        )
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
        # A poller replica's heartbeat older than its lease wait is a dead replica's.
        lease_wait_s = 60.0
        async with asyncio.TaskGroup() as tg:
            for name in COLLECTOR_SERVICES:
                settings = load_settings(service_module(name).Settings, **overrides)
                lease_wait_s = float(getattr(settings, "job_ack_wait_s", lease_wait_s))
                tg.create_task(_run_service(name, settings, stop, readies[name]))
            if ready is not None:
                tg.create_task(_all_ready(readies, ready, stop))
            collector_id = str(knobs.get("instance") or f"collector-{site}")
            tg.create_task(
                _announce(
                    url,
                    credentials,
                    collector_id,
                    started_at,
                    status_interval_s,
                    lease_wait_s,
                    stop,
                )
            )
    finally:
        running.unlink(missing_ok=True)
        await asyncio.to_thread(server.stop)


async def _leaf_connected(server: EmbeddedNats, timeout_s: float) -> bool:
    """Return True once the site's server has its leaf connection to the hub (False after timeout_s).

    Creating the site's stream before the link is up works, but its source then waits out
    nats-server's retry back-off (10 s and more) before the first configuration arrives.
    """
    import httpx  # at use: `tonerwatch up` never loads it (issue 15, memory)

    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                leafz = (await client.get(f"http://127.0.0.1:{server.http_port}/leafz")).json()
                if leafz.get("leafnodes"):
                    return True
            await asyncio.sleep(0.1)
    return False


def _version() -> str:
    try:
        return version("tonerwatch")
    except PackageNotFoundError:
        return "unknown"


async def _announce(
    url: str,
    credentials: SiteCredentials,
    collector_id: str,
    started_at: datetime,
    interval_s: float,
    lease_wait_s: float,
    stop: asyncio.Event,
) -> None:
    """Publish the collector's status into the site's stream every interval_s until stop.

    Into the site's own stream, so it reaches the hub like readings and waits there while the
    link is down; the hub judges each by its occurred_at, so a late one is merely history.
    """
    site, hub = credentials.site, credentials.hub_subjects
    bus = await Bus.connect(url, subjects=site_subjects(hub, site), name=collector_id, stop=stop)
    try:
        printers = await bus.key_value("POLLER_PRINTERS")
        while not stop.is_set():
            try:
                status = CollectorStatus(
                    source=f"collector/{collector_id}",
                    site_id=site,
                    collector_id=collector_id,
                    version=_version(),
                    printers=await _count_keys(printers),
                    queue_depth=await _waiting_partitions(bus, lease_wait_s),
                    started_at=started_at,
                )
                await bus.publish(status)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("collector status not published: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    finally:
        await bus.drain()


async def _count_keys(kv: Any) -> int:
    """Return how many keys a KV bucket holds (0 when empty)."""
    return len(await list_keys(kv))


async def _waiting_partitions(bus: Bus, lease_wait_s: float) -> int | None:
    """Return the site's poll partitions that no live poller holds (None before the poller made its queue).

    The poller keeps one job per partition of the fleet and holds each while it polls that
    partition's printers; each replica's heartbeat (KV POLLER_REPLICAS, the poller's `leases.Beat`
    JSON) lists what it holds. A partition waits when no replica heard from within the lease wait
    holds it: none running, all at their share, or the holder died (its job then sits unacked
    until the lease wait ends, so the consumer's pending count would not show it). The hub's
    source consumer on the site's events stream is internal (nats-server lists no direct
    consumers), so how far the hub lags is not measurable here.
    """
    try:
        partitions = (await bus.js.stream_info(bus.subjects.name("POLLJOBS"))).state.messages
    except nats.js.errors.NotFoundError:
        return None
    held: set[str] = set()
    now = time.time()
    try:
        # Looked up, not created: the poller creates it with its own TTL.
        replicas = await bus.js.key_value(bus.subjects.name("POLLER_REPLICAS"))
        keys = await list_keys(replicas)
    except nats.js.errors.BucketNotFoundError:
        keys = []
    for key in keys:  # one per poller replica: a handful
        with contextlib.suppress(
            nats.js.errors.KeyNotFoundError, ValueError, TypeError, AttributeError, KeyError
        ):
            beat = json.loads((await replicas.get(key)).value or b"")
            if now - float(beat["at"]) <= lease_wait_s:
                held.update(str(subject) for subject in beat.get("leases", {}))
    return max(0, partitions - len(held))


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
        "at the site while the link is down and reach the hub when it returns. The credentials "
        "come from --credentials, from an enrolment (--enrol URL --token T: traded once at the "
        "hub's api, kept in DATA_DIR/site/), or from an earlier enrolment in DATA_DIR/site/.",
    )
    collector.add_argument(
        "--hub",
        default=None,
        help="the hub's leaf-node URL, tls://host:7422 (default: the enrolment's)",
    )
    collector.add_argument(
        "--credentials", type=Path, default=None, help="the site's credentials file (JSON)"
    )
    collector.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the site's data lives (./tonerwatch-site)",
    )
    collector.add_argument(
        "--enrol", default=None, metavar="URL", help="the hub's api, https://..."
    )
    collector.add_argument("--token", default=None, help="the one-time enrolment token")
    collector.add_argument(
        "--enrol-only", action="store_true", help="enrol (write DATA_DIR/site/) and exit"
    )
    collector.add_argument(
        "--check",
        action="store_true",
        help="check that the hub is reachable and takes the site's TLS certificate and "
        "credentials (a short-lived leaf connection, no JetStream, nothing stored), print one "
        "line and exit: 0 link up, 2 not; with --data-dir of a running collector, its own "
        "link instead (the healthcheck of the image, compose and Kubernetes)",
    )
    collector.add_argument(
        "--check-timeout",
        type=float,
        default=CHECK_TIMEOUT_S,
        metavar="S",
        help=f"how long --check waits for the hub (default {CHECK_TIMEOUT_S:g} s)",
    )


def enrol(api_url: str, token: str, folder: Path, timeout_s: float = 30.0) -> Path:
    """Trade an enrolment token at the hub's api for the site's files in folder; return the credentials file."""
    import httpx  # at use: `tonerwatch up` never loads it (issue 15, memory)

    parsed = httpx.URL(api_url)
    loopback = parsed.host in ("localhost", "127.0.0.1", "::1")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
        raise CliError(f"--enrol {api_url}: use https:// (the answer holds the site's password)")
    try:
        answer = httpx.post(
            str(parsed.join("/api/v1/enrol")), json={"token": token}, timeout=timeout_s
        )
    except httpx.HTTPError as exc:
        raise CliError(f"enrolment at {api_url} failed: {exc!r}") from None
    if answer.status_code != 200:
        try:
            body = answer.json()
            detail = body.get("error") or body.get("detail") or answer.text
        except ValueError:
            detail = answer.text
        raise CliError(f"enrolment refused ({answer.status_code}): {detail}")
    try:
        return write_site_bundle(answer.json(), folder, answer.json().get("hub_url"))
    except (HubError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"enrolment answer from {api_url} not usable: {exc!r}") from None


def _credentials_file(args: argparse.Namespace, data_dir: Path) -> Path:
    """Return the credentials file to use: given, traded now, or from an earlier enrolment."""
    if args.credentials is not None:
        if not args.credentials.is_file():
            raise CliError(f"credentials file {args.credentials} not found")
        return Path(args.credentials)
    enrolled = data_dir / ENROLLED_DIR / "credentials.json"
    if args.enrol is not None:
        if args.token is None:
            raise CliError("--enrol needs --token (from POST /api/v1/sites/<site>/enrolments)")
        if enrolled.is_file():
            # A restarted container runs the same command: the token was already traded.
            log.info("already enrolled (%s): the token is not used again", enrolled)
            return enrolled
        path = enrol(args.enrol, args.token, enrolled.parent)
        print(f"tonerwatch: enrolled; the site's files are in {enrolled.parent}/")
        return path
    if enrolled.is_file():
        return enrolled
    raise CliError("give --credentials FILE or --enrol URL --token T")


def check_link(
    hub_url: str, credentials: SiteCredentials, timeout_s: float = CHECK_TIMEOUT_S
) -> tuple[bool, str]:
    """Dial the hub's leaf listener as the site once; return (up, one line saying how it went).

    A throwaway nats-server without JetStream (so nothing of the site's is touched, and the
    hub's JetStream sees no new domain) with the collector's own leaf remote: the same TLS and
    credentials path, judged by the server's /leafz and, on failure, its log.
    """
    leaf = site_leafnodes(hub_url, credentials, reconnect_s=1.0)
    with tempfile.TemporaryDirectory(prefix="tonerwatch-check-") as tmp:
        folder = Path(tmp)
        port, http_port = free_tcp_port(), free_tcp_port()
        conf = folder / "check.conf"
        conf.write_text(
            f'server_name: "check-{credentials.site}"\nlisten: "127.0.0.1:{port}"\n'
            f'http: "127.0.0.1:{http_port}"\n{leaf}'
        )
        conf.chmod(0o600)  # it holds the site's password
        log_file = folder / "check.log"
        proc = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(conf), "-l", str(log_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            up = asyncio.run(_leafz_up(http_port, timeout_s))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
    who = f"site {credentials.site} ({credentials.user})"
    if up is not None:
        return True, f"link to the hub {hub_url} up: {who} accepted, round trip {up}"
    return False, f"link to the hub {hub_url} down: {_link_failure(text, timeout_s)}"


def check_running(data_dir: Path, timeout_s: float = 5.0) -> tuple[bool, str] | None:
    """Judge the link of the collector running with data_dir: its own leaf server's /leafz.

    Return (up, one line), or None when no collector runs there (no DATA_DIR/collector.json, or
    its monitor does not answer: a file left by a killed one).
    """
    import httpx  # at use: `tonerwatch up` never loads it (issue 15, memory)

    try:
        running = json.loads((data_dir / RUNNING_FILE).read_text())
        monitor = str(running["monitor"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        leafz = httpx.get(f"{monitor}/leafz", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError):
        return None
    hub_url = running.get("hub") or "?"
    who = f"site {running.get('site')} (the running collector's own link)"
    if leafz.get("leafnodes"):
        rtt = (leafz.get("leafs") or [{}])[0].get("rtt") or "unknown"
        return True, f"link to the hub {hub_url} up: {who}, round trip {rtt}"
    return False, (
        f"link to the hub {hub_url} down: {who} has no leaf connection (the collector keeps "
        "polling and keeps its readings at the site; `--check` without --data-dir says why)"
    )


async def _leafz_up(http_port: int, timeout_s: float) -> str | None:
    """Return the leaf connection's rtt once /leafz shows it, None after timeout_s."""
    import httpx  # at use: `tonerwatch up` never loads it (issue 15, memory)

    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                leafz = (await client.get(f"http://127.0.0.1:{http_port}/leafz")).json()
                if leafz.get("leafnodes"):  # the count; "leafs" lists them
                    leafs = leafz.get("leafs") or [{}]
                    return str(leafs[0].get("rtt") or "unknown")
            await asyncio.sleep(0.1)
    return None


def _link_failure(log_text: str, timeout_s: float) -> str:
    """Return why the leaf did not come up, from the throwaway server's log."""
    errors = [
        ln
        for ln in log_text.splitlines()
        if ("[ERR]" in ln or "[WRN]" in ln)
        # Our own throwaway server stopping mid-handshake, not what the hub answered.
        and "use of closed network connection" not in ln
    ]
    for line in reversed(errors):
        lowered = line.lower()
        for needle, meaning in _LINK_FAILURES:
            if needle in lowered:
                detail = re.split(r"\[(?:ERR|WRN)\] ", line, maxsplit=1)[-1].strip()
                return f"{meaning}: {detail[:200]}"
    if "leafnode connection closed" in log_text.lower():
        # The hub's TLS refusing the site's client certificate looks like this from the site.
        return (
            "the hub closed the connection during the handshake (does it trust the site's "
            "certificate? is the site's CA the hub's?)"
        )
    return f"no leaf connection within {timeout_s:g} s (no error logged)"


def collector_command(args: argparse.Namespace) -> int:
    """Run the collector until Ctrl-C/SIGTERM (after enrolling, if asked)."""
    data_dir = args.data_dir or Path.cwd() / "tonerwatch-site"
    credentials_file = _credentials_file(args, data_dir)
    credentials = SiteCredentials.read(credentials_file)
    if args.enrol_only:
        return 0
    # A collector running with this data folder: its own link (what a healthcheck asks); else
    # a throwaway dial of the hub as the site (before the first start).
    judged = check_running(data_dir) if args.check and args.data_dir is not None else None
    if judged is not None:
        print(f"tonerwatch: {judged[1]}")
        return 0 if judged[0] else 2
    hub_url = args.hub or credentials.hub_url
    if not hub_url:
        raise CliError("--hub tls://host:7422 needed (the enrolment did not say the hub's URL)")
    if args.check:
        up, line = check_link(hub_url, credentials, args.check_timeout)
        print(f"tonerwatch: {line}")
        return 0 if up else 2
    if args.data_dir is None and args.credentials is not None:
        data_dir = Path.cwd() / f"tonerwatch-site-{credentials.site}"

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        interval_s = float(os.environ.get(STATUS_INTERVAL_ENV, STATUS_INTERVAL_S))
        await run_collector(hub_url, credentials, data_dir, stop=stop, status_interval_s=interval_s)

    asyncio.run(main())
    return 0


__all__ = [
    "add_collector_parser",
    "check_link",
    "check_running",
    "collector_command",
    "enrol",
    "run_collector",
]
