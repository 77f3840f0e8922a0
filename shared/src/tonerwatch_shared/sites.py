"""Many sites, one hub: the NATS configs and streams that carry work down and readings up.

The shape is the one docs/design/sites.md proved on real servers. The hub's nats-server has
JetStream domain `hub`, a TLS leaf-node listener (no_advertise) and one account per site; a site
collector's embedded nats-server has domain `site-<id>` and dials out to the hub as a leaf bound
to its site's account. Work goes down: the api's configuration and sweep requests for site x are
stream-imported into account SITE_x and kept there (`SITE_DOWN`); the site's own events stream
sources them, so the collector works from local streams with the link down. Readings go up: the
hub's events stream sources, across the leaf, the events the site made (its stream
`<prefix>_<site>_EVENTS`, bounded by size and age, oldest dropped first). Event ids are uuid4, so
Nats-Msg-Id never collides across sites (the design's dedupe risk); the hub's dedupe plus ordered
sourcing gives exactly once, in order per site.

Everything here is text and stream configs from names: one generator for `up`, a hub deployment
and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import (
    DiscardPolicy,
    ExternalStream,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from tonerwatch_shared import subjects as sj
from tonerwatch_shared.events import EVENT_AREAS
from tonerwatch_shared.subjects import Subjects, token

HUB_DOMAIN = "hub"
HUB_ACCOUNT = "HUB"
SYSTEM_ACCOUNT = "SYS"
DOWN_STREAM = "SITE_DOWN"
# What the hub sends a site (configuration, sweep requests) and what a site sends back.
DOWN_EVENTS = (
    sj.PRINTER_CONFIGURED,
    sj.PRINTER_REMOVED,
    sj.DISCOVERY_REQUESTED,
    sj.DISCOVERY_CANCELLED,
)
UP_EVENTS = (
    sj.SUPPLY_READING,
    sj.PRINTER_FOUND,
    sj.PRINTER_UNREACHABLE,
    sj.PRINTER_REACHABLE,
    sj.DISCOVERY_PROGRESS,
    sj.DISCOVERY_FINISHED,
    sj.COLLECTOR_STATUS,
)
# Site stream bounds (README "Many sites"): a week of readings of a few hundred printers.
SITE_EVENTS_MAX_BYTES = 512 * 1024**2
SITE_EVENTS_MAX_AGE_S = 7 * 86400.0
DOWN_MAX_BYTES = 64 * 1024**2


def site_domain(site: str) -> str:
    """Return the JetStream domain of a site's collector (unique fleet-wide: from the site id)."""
    return f"site-{token(site)}"


def site_account(site: str) -> str:
    """Return the hub account a site's leaf connection is bound to."""
    return f"SITE_{token(site)}"


def site_user(site: str) -> str:
    """Return the leaf user name of a site at the hub."""
    return f"site-{token(site)}"


def site_subjects(hub: Subjects, site: str) -> Subjects:
    """Return a collector's names: the hub's subjects, streams prefixed with the site.

    The site's events stream name must differ per site: the hub imports flow control on
    `$JS.FC.<origin stream>.>` from every site account.
    """
    return Subjects(root=hub.root, stream_prefix=f"{hub.stream_prefix}_{token(site)}")


def deliver_subject(subjects: Subjects, site: str, way: str) -> str:
    """Return the deliver subject of a source consumer for one site and direction (down/up)."""
    return f"{subjects.root}.deliver.{token(site)}.{way}"


def _event_subjects(subjects: Subjects, site: str, kinds: Sequence[str]) -> list[str]:
    return [f"{subjects.root}.{token(site)}.{kind}.>" for kind in kinds]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA both sides trust, and this side's certificate and key."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class SiteAccount:
    """A site as the hub knows it: its id, its leaf password, its hub-side provisioning password.

    A revoked site keeps its account (and its data at the hub) but has no leaf user: its
    collector is refused from the next reload on, and kick_site drops the live connection.
    """

    site: str
    password: str
    admin_password: str
    revoked: bool = False


@dataclass(frozen=True)
class SiteCredentials:
    """What a collector needs to join the hub (the `--credentials` file, JSON); paths beside it."""

    site: str
    user: str
    password: str
    tls: TlsFiles
    subject_root: str = "tw"
    stream_prefix: str = "TW"
    # The hub's leaf-node URL, when the hub said it at enrolment (`--hub` overrides it).
    hub_url: str | None = None

    def write(self, path: Path) -> None:
        """Write the credentials file (owner-only: it holds the site's password)."""
        data = asdict(self)
        data["tls"] = {k: str(v) for k, v in data["tls"].items()}
        if data["hub_url"] is None:
            del data["hub_url"]  # files without it stay as they were
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)

    @classmethod
    def read(cls, path: Path) -> SiteCredentials:
        """Return the credentials in a file; relative TLS paths are taken from its folder."""
        data = json.loads(path.read_text())
        files = {k: path.parent / Path(v) for k, v in data.pop("tls").items()}
        return cls(tls=TlsFiles(**files), **data)

    @property
    def hub_subjects(self) -> Subjects:
        """Return the hub's subject and stream names."""
        return Subjects(self.subject_root, self.stream_prefix)


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def leaf_permissions(subjects: Subjects, site: str) -> tuple[list[str], list[str]]:
    """Return (publish, subscribe) allowed to a site's leaf user, seen from the hub.

    Only what sourcing needs both ways (docs/design/sites.md § 2): create/delete its consumer on
    its SITE_DOWN, answer flow control, deliver its events up, and the reply subjects.
    """
    hub_api = f"$JS.{HUB_DOMAIN}.API"
    events = site_subjects(subjects, site).events_stream
    publish = [
        f"{hub_api}.CONSUMER.CREATE.{DOWN_STREAM}",
        f"{hub_api}.CONSUMER.CREATE.{DOWN_STREAM}.>",
        f"{hub_api}.CONSUMER.DELETE.{DOWN_STREAM}.>",
        f"$JS.FC.{DOWN_STREAM}.>",
        deliver_subject(subjects, site, "up"),
        deliver_subject(subjects, site, "up") + ".>",
        "$JSC.R.>",
        "_R_.>",
    ]
    subscribe = [
        f"$JS.{site_domain(site)}.API.>",
        f"$JS.FC.{events}.>",
        deliver_subject(subjects, site, "down"),
        deliver_subject(subjects, site, "down") + ".>",
        "$JSC.R.>",
    ]
    return publish, subscribe


def hub_accounts(
    subjects: Subjects,
    sites: Sequence[SiteAccount],
    *,
    hub_user: str,
    hub_password: str,
    system_password: str,
) -> str:
    """Return the hub's accounts block: HUB (services), SYS, and one account per site."""
    hub_exports: list[str] = []
    hub_imports: list[str] = []
    site_blocks: list[str] = []
    for entry in sites:
        site, account = entry.site, site_account(entry.site)
        events = site_subjects(subjects, site).events_stream
        down = _event_subjects(subjects, site, DOWN_EVENTS)
        hub_exports += [f'{{ stream: "{s}", accounts: [{account}] }}' for s in down]
        site_api = f"$JS.{site_domain(site)}.API.>"
        delivered = f"{subjects.root}.deliver.{token(site)}.>"
        hub_imports += [
            f'{{ service: {{ account: {account}, subject: "{site_api}" }} }}',
            f'{{ stream: {{ account: {account}, subject: "{delivered}" }} }}',
            f'{{ service: {{ account: {account}, subject: "$JS.FC.{events}.>" }} }}',
        ]
        publish, subscribe = leaf_permissions(subjects, site)
        imports = [f'{{ stream: {{ account: {HUB_ACCOUNT}, subject: "{s}" }} }}' for s in down]
        leaf_user = "" if entry.revoked else _leaf_user(entry, publish, subscribe)
        site_blocks.append(
            f"""  {account}: {{
    jetstream: enabled
    users: [
{leaf_user}      {{ user: "admin-{token(site)}", password: {json.dumps(entry.admin_password)},
        allowed_connection_types: ["STANDARD"] }}
    ]
    exports: [
      {{ service: "{site_api}", accounts: [{HUB_ACCOUNT}] }}
      {{ stream: "{delivered}", accounts: [{HUB_ACCOUNT}] }}
      {{ service: "$JS.FC.{events}.>", accounts: [{HUB_ACCOUNT}] }}
    ]
    imports: [
      {chr(10).join("      " + i for i in imports).strip()}
    ]
  }}"""
        )
    newline = "\n      "
    return f"""accounts {{
  {SYSTEM_ACCOUNT}: {{ users: [ {{ user: "sys", password: {json.dumps(system_password)} }} ] }}
  {HUB_ACCOUNT}: {{
    jetstream: enabled
    users: [ {{ user: {json.dumps(hub_user)}, password: {json.dumps(hub_password)},
               allowed_connection_types: ["STANDARD"] }} ]
    exports: [
      {newline.join(hub_exports)}
    ]
    imports: [
      {newline.join(hub_imports)}
    ]
  }}
{chr(10).join(site_blocks)}
}}
system_account: {SYSTEM_ACCOUNT}
"""


def _leaf_user(entry: SiteAccount, publish: list[str], subscribe: list[str]) -> str:
    return f"""      {{ user: "{site_user(entry.site)}", password: {json.dumps(entry.password)},
        allowed_connection_types: ["LEAFNODE"],
        permissions: {{
          publish: {{ allow: [{_quoted(publish)}] }}
          subscribe: {{ allow: [{_quoted(subscribe)}] }}
          allow_responses: true
        }} }}
"""


def hub_leafnodes(leaf_port: int, tls: TlsFiles, host: str = "127.0.0.1") -> str:
    """Return the hub's leaf-node listener: mutual TLS, and no_advertise (sites keep the URL given)."""
    return f"""leafnodes {{
  host: {host}
  port: {leaf_port}
  # Without it the hub tells sites its own listen address and they bypass the name or proxy given.
  no_advertise: true
  tls {{
    cert_file: {json.dumps(str(tls.cert))}
    key_file: {json.dumps(str(tls.key))}
    ca_file: {json.dumps(str(tls.ca))}
    verify: true
    timeout: 5
  }}
}}
"""


def site_leafnodes(hub_url: str, credentials: SiteCredentials, reconnect_s: float = 1.0) -> str:
    """Return a collector's leaf remote: out to the hub with TLS and the site's credentials."""
    scheme, _, rest = hub_url.partition("://")
    if scheme not in ("tls", "nats-leaf", "nats") or not rest:
        raise ValueError(f"hub URL {hub_url!r}: use tls://host:port (the hub's leaf-node listener)")
    host_port = rest.rsplit("@", 1)[-1]
    url = f"tls://{credentials.user}:{credentials.password}@{host_port}"
    tls = credentials.tls
    return f"""leafnodes {{
  reconnect: "{reconnect_s:g}s"
  remotes [ {{
    urls: [ {json.dumps(url)} ]
    tls {{
      ca_file: {json.dumps(str(tls.ca))}
      cert_file: {json.dumps(str(tls.cert))}
      key_file: {json.dumps(str(tls.key))}
    }}
  }} ]
}}
"""


def down_stream_config(subjects: Subjects, site: str) -> StreamConfig:
    """Return SITE_DOWN (in the site's hub account): the last configuration per printer, requests."""
    return StreamConfig(
        name=DOWN_STREAM,
        description=f"TonerWatch work and configuration for site {site}",
        subjects=_event_subjects(subjects, site, DOWN_EVENTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        # The newest configuration of each printer is what a (re)connecting site needs.
        max_msgs_per_subject=1,
        max_bytes=DOWN_MAX_BYTES,
        discard=DiscardPolicy.OLD,
        duplicate_window=120.0,
    )


def site_events_stream_config(
    hub: Subjects,
    site: str,
    *,
    max_bytes: int = SITE_EVENTS_MAX_BYTES,
    max_age_s: float = SITE_EVENTS_MAX_AGE_S,
) -> StreamConfig:
    """Return a collector's events stream: what it publishes, plus its SITE_DOWN from the hub."""
    local = site_subjects(hub, site)
    from_hub = ExternalStream(
        api=f"$JS.{HUB_DOMAIN}.API", deliver=deliver_subject(hub, site, "down")
    )
    return StreamConfig(
        name=local.events_stream,
        description=f"TonerWatch events of site {site} (sourced by the hub)",
        subjects=local.stream_subjects(EVENT_AREAS),  # what the services' own declaration says
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_bytes=max_bytes,
        max_age=max_age_s,
        # At a site, a long outage must not stop polling: the oldest readings go first.
        discard=DiscardPolicy.OLD,
        duplicate_window=120.0,
        sources=[StreamSource(name=DOWN_STREAM, external=from_hub)],
    )


def up_event_subjects(hub: Subjects, site: str) -> list[str]:
    """Return the subjects of a site's own events: keyed (`kind.<key>`) and unkeyed (`kind`).

    PrinterFound is unkeyed (`tw.<site>.printer.found`): `kind.>` alone left it at the site.
    """
    unkeyed = [f"{hub.root}.{token(site)}.{kind}" for kind in UP_EVENTS]
    return unkeyed + _event_subjects(hub, site, UP_EVENTS)


def hub_site_source(hub: Subjects, site: str) -> StreamSource:
    """Return the source that brings a site's own events (not what the hub sent it) to the hub."""
    return StreamSource(
        name=site_subjects(hub, site).events_stream,
        external=ExternalStream(
            api=f"$JS.{site_domain(site)}.API", deliver=deliver_subject(hub, site, "up")
        ),
        subject_transforms=[SubjectTransform(src=s, dest=s) for s in up_event_subjects(hub, site)],
    )


def _source_key(source: StreamSource) -> tuple[Any, ...]:
    """Return what makes two sources the same to nats-server (its index name's parts)."""
    external = source.external
    return (
        source.name,
        external.api if external else None,
        external.deliver if external else None,
        source.filter_subject or None,
        sorted((t.src, t.dest) for t in source.subject_transforms or []),
    )


SOURCE_HEADER = "Nats-Stream-Source"


async def last_sourced_seq(js: JetStreamContext, hub: Subjects, site: str) -> int:
    """Return the site stream's sequence of the newest site event in the hub's events stream (0: none).

    nats-server stamps every sourced message `Nats-Stream-Source: <stream>:<hash> <seq> ...`;
    sourcing keeps the site's order, so the newest sourced message of any kind has the highest.
    """
    name = site_subjects(hub, site).events_stream
    newest = 0
    for subject in up_event_subjects(hub, site):
        try:
            msg = await js.get_last_msg(hub.events_stream, subject)
        except NotFoundError:
            continue
        stamp = (msg.headers or {}).get(SOURCE_HEADER, "").split(" ")
        if len(stamp) > 1 and stamp[0].split(":")[0] == name and stamp[1].isdigit():
            newest = max(newest, int(stamp[1]))
    return newest


async def source_sites(js: JetStreamContext, hub: Subjects, sites: Sequence[str]) -> list[str]:
    """Make the hub's events stream (connected as the hub's services) source each site's events.

    A site's source the stream already has with another config (made by an older release:
    before d4cc241 the unkeyed `printer.found` was not sourced) is replaced by the current one.
    Return the sites whose source was added or replaced.
    """
    info = await js.stream_info(hub.events_stream)
    sources = list(info.config.sources or [])
    changed: list[str] = []
    for site in sites:
        want = hub_site_source(hub, site)
        at = [i for i, s in enumerate(sources) if s.name == want.name]
        if at and _source_key(sources[at[0]]) == _source_key(want):
            continue
        if at:
            # A source with a new config is a new source to nats-server: it would start at the
            # site stream's first event and bring in again all the hub already holds (the
            # duplicate window is 2 minutes). It starts after the last one brought in instead.
            last = await last_sourced_seq(js, hub, site)
            sources[at[0]] = dataclasses.replace(want, opt_start_seq=last + 1) if last else want
        else:
            sources.append(want)
        changed.append(site)
    if changed:
        await js.update_stream(dataclasses.replace(info.config, sources=sources))
    return changed


async def kick_site(
    system: Client, site: str, timeout_s: float = 1.0, server_id: str | None = None
) -> int:
    """Drop a site's live leaf connections on every hub server (or only on server_id); return
    how many were dropped.

    Connected as the system account. Revoking in config mode is: rewrite the accounts without
    the site's leaf user, reload the hub (which only refuses *new* connections), then this.
    """
    replies: list[dict[str, Any]] = []
    query = json.dumps({"account": site_account(site)}).encode()
    if server_id is not None:
        answer = await system.request(f"$SYS.REQ.SERVER.{server_id}.LEAFZ", query, timeout_s)
        replies.append(json.loads(answer.data))
    else:
        inbox = system.new_inbox()

        async def collect(msg: Msg) -> None:
            with contextlib.suppress(ValueError):
                replies.append(json.loads(msg.data))

        sub = await system.subscribe(inbox, cb=collect)
        try:
            await system.publish("$SYS.REQ.SERVER.PING.LEAFZ", query, reply=inbox)
            await asyncio.sleep(timeout_s)  # every hub server answers; gather them all
        finally:
            await sub.unsubscribe()
    dropped = 0
    for reply in replies:
        server_id = reply.get("server", {}).get("id")
        for leaf in (reply.get("data") or {}).get("leafs") or []:
            if leaf.get("account") != site_account(site) or server_id is None:
                continue
            request = json.dumps({"cid": leaf["id"]}).encode()
            await system.request(f"$SYS.REQ.SERVER.{server_id}.KICK", request, timeout=timeout_s)
            dropped += 1
    return dropped


__all__ = [
    "DOWN_EVENTS",
    "DOWN_STREAM",
    "HUB_DOMAIN",
    "UP_EVENTS",
    "SiteAccount",
    "SiteCredentials",
    "TlsFiles",
    "down_stream_config",
    "hub_accounts",
    "hub_leafnodes",
    "hub_site_source",
    "kick_site",
    "last_sourced_seq",
    "leaf_permissions",
    "site_account",
    "site_domain",
    "site_events_stream_config",
    "site_leafnodes",
    "site_subjects",
    "site_user",
    "source_sites",
    "up_event_subjects",
]
