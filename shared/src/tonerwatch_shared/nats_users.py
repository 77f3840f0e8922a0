"""Each service's NATS user and the least subjects it may publish and subscribe to.

One source for every NATS server we ship: the embedded one of `tonerwatch up` (passwords made
once and kept 0600 in the data dir), and compose and Kubernetes (deploy/nats/permissions.py
writes their auth.conf, the passwords read from the server's environment).

What each service does on the bus is read from the services' code (events they publish, durable
consumers, KV buckets, live subscriptions); the subjects come from the event classes and the
installation's subject root and stream prefix, so a renamed installation gets matching users.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tonerwatch_shared import events as ev
from tonerwatch_shared.subjects import Subjects

JS = "$JS.API"
# The file of `tonerwatch up`'s generated passwords, in the data dir.
USERS_FILE = "nats-users.json"


@dataclass(frozen=True)
class Access:
    """What one service does on the bus."""

    publishes: tuple[type[ev.Event], ...]
    # (stream, durable); "*" as durable: consumers named at run time (the alerter's channels).
    consumers: tuple[tuple[str, str], ...]
    # (stream, durable) of durables the service no longer runs and deletes at start.
    retired: tuple[tuple[str, str], ...] = ()
    # Of those, the ones it drains first (applies what they still hold): their reads and acks.
    drained: tuple[tuple[str, str], ...] = ()
    # KV buckets by their unprefixed name, as passed to Bus.key_value.
    buckets: tuple[str, ...] = ()
    # Core (non-JetStream) live subscriptions: Bus.subscribe_events.
    listens: tuple[str, ...] = ()
    # Streams besides the events stream this service creates and updates.
    streams: tuple[str, ...] = ()
    # Raw subjects it publishes outside events (poll jobs).
    extra_publish: tuple[str, ...] = ()
    # Streams it purges of what an earlier version left there (the poller's per-printer jobs).
    purges: tuple[str, ...] = ()
    # Lists dead letters and asks consumers to replay them (the api).
    replays: bool = False
    # Events others publish that it publishes again, for one of its consumers only: a reading
    # split out of its batch to wait alone (tonerwatch_shared.bus.NotYet, Bus._split_out).
    republishes: tuple[type[ev.Event], ...] = ()
    # Reads single events of the events stream by sequence and subject (STREAM.MSG.GET): the
    # syncer, which keeps one printer's events in order across its forwarding consumers.
    reads_events: bool = False


# Published only at a site, on the collector's own nats-server (which has no service users), and
# sourced into the hub's events stream across the leaf (tonerwatch_shared.sites.UP_EVENTS).
SITE_ONLY: tuple[type[ev.Event], ...] = (ev.CollectorStatus,)

# tonerwatch_api.projections.PROJECTIONS and tonerwatch_api.activity (unprefixed durable names).
API_DURABLES = (
    "api-readings",
    "api-printers",
    "api-alerts",
    "api-supplies",
    "api-upstream",
    "api-discovery-jobs",
    "api-discovery-found",
    "api-usage-discovery",
    "api-usage-sync",
    "api-collectors",
)
# tonerwatch_api.projections.activity.RETIRED_DURABLES: durables the api drains and deletes at start
# (an installation older than their retirement still has them).
API_RETIRED_DURABLES = ("api-usage-polling",)


def service_access(subjects: Subjects) -> dict[str, Access]:
    """Return what each service does on the bus, under these subjects and stream names."""
    events = subjects.events_stream
    polljobs = subjects.name("POLLJOBS")

    def durable(suffix: str) -> tuple[str, str]:
        return (events, subjects.name(suffix))

    return {
        "discovery": Access(
            publishes=(
                ev.PrinterFound,
                ev.DiscoveryRequested,
                ev.DiscoveryProgress,
                ev.DiscoveryFinished,
            ),
            consumers=(durable("discovery_requests"),),
            buckets=("DISCOVERY_DEVICES",),
            listens=(ev.DiscoveryCancelled.subject_filter(subjects),),
        ),
        "poller": Access(
            publishes=(
                ev.SupplyReading,
                ev.SupplyReadingBatch,
                ev.PrinterUnreachable,
                ev.PrinterReachable,
            ),
            # tonerwatch_poller.service.Poller.jobs_stream: the work queue of partition jobs.
            consumers=(durable("poller_config"), (polljobs, subjects.name("poller_leases"))),
            buckets=("POLLER_PRINTERS", "POLLER_HEALTH", "POLLER_REPLICAS"),
            streams=(polljobs,),
            extra_publish=(subjects.area("polljob", keyed=True),),
            # The per-printer jobs of the poller before partitions, and their consumer, retired.
            retired=((polljobs, subjects.name("poller_jobs")),),
            purges=(polljobs,),
        ),
        "alerter": Access(
            publishes=(
                ev.ThresholdCrossed,
                ev.AlertResolved,
                ev.SupplyReplaced,
                ev.SiteOffline,
                ev.SiteOnline,
            ),
            consumers=(
                durable("alerter"),
                durable("alerter_printer"),
                durable("alerter_settings"),
                durable("alerter_collectors"),
                durable("alerter_mail_servers"),
                # One consumer per configured channel (TW_alerter_<kind>_<name>): named at run time.
                (events, "*"),
            ),
            buckets=(
                "ALERTER",
                "ALERTER_SITES",
                "ALERTER_SENT",
                "ALERTER_DIGEST",
                "ALERTER_COLLECTORS",
                "ALERTER_MAIL",
            ),
        ),
        "syncer": Access(
            publishes=(ev.UpstreamSynced, ev.UpstreamOrderUpdate),
            consumers=(
                durable("syncer_alerts"),
                durable("syncer_replaced"),
                durable("syncer_orders"),
                durable("syncer_fleet_readings"),
                durable("syncer_fleet_printers"),
                durable("syncer_fleet_orders"),
            ),
            buckets=("SYNC_FLEET", "SYNC_STATE", "SYNC_ORDER"),
            # One printer's events never overtake each other across the forwarding consumers: it
            # looks up the next event of a printer after another consumer's ack floor.
            reads_events=True,
        ),
        "api": Access(
            publishes=(
                ev.PrinterConfigured,
                ev.PrinterRemoved,
                ev.PollRequested,
                ev.PrinterCoverage,
                ev.OrderChanged,
                ev.DiscoveryRequested,
                ev.DiscoveryCancelled,
                ev.AlertSettingsConfigured,
                ev.MailServerConfigured,
            ),
            # A reading of a batch waiting for its printer is published again alone, for
            # api-readings only (Bus._split_out: Tw-For; every other consumer acks it unhandled).
            republishes=(ev.SupplyReading,),
            consumers=tuple((events, name) for name in API_DURABLES),
            retired=tuple((events, name) for name in API_RETIRED_DURABLES),
            drained=tuple((events, name) for name in API_RETIRED_DURABLES),
            listens=(subjects.area("alert"),),
            replays=True,
        ),
    }


SERVICES: tuple[str, ...] = tuple(service_access(Subjects()))


def publish_allow(service: str, subjects: Subjects | None = None) -> list[str]:
    """Return every subject pattern the service may publish to."""
    subjects = subjects or Subjects()
    access = service_access(subjects)[service]
    # A batch of readings shares the readings' filter: each pattern once.
    allow = list(
        dict.fromkeys(
            cls.subject_filter(subjects) for cls in (*access.publishes, *access.republishes)
        )
    )
    allow += list(access.extra_publish)
    # Account info, and the stream list /metrics reads (tonerwatch_stream_fill_ratio): names,
    # limits and sizes only, no message is readable through them.
    allow += [f"{JS}.INFO", f"{JS}.STREAM.LIST", f"{JS}.STREAM.NAMES"]
    for stream in (subjects.events_stream, *access.streams):
        allow += [f"{JS}.STREAM.{op}.{stream}" for op in ("INFO", "CREATE", "UPDATE")]
    if access.reads_events:
        allow.append(f"{JS}.STREAM.MSG.GET.{subjects.events_stream}")
    allow += [f"{JS}.STREAM.PURGE.{stream}" for stream in access.purges]
    for stream, durable in access.consumers:
        allow += [
            # nats-py creates a durable on the legacy subject; newer clients name the filter.
            f"{JS}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"{JS}.CONSUMER.CREATE.{stream}.{durable}",
            f"{JS}.CONSUMER.CREATE.{stream}.{durable}.>",
            f"{JS}.CONSUMER.INFO.{stream}.{durable}",
            f"{JS}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            # Acks, naks and terms are replies to the delivered message.
            f"$JS.ACK.{stream}.{durable}.>",
        ]
    allow += [f"{JS}.CONSUMER.DELETE.{stream}.{durable}" for stream, durable in access.retired]
    for stream, durable in access.drained:
        # Drained before it is deleted (tonerwatch_api.projections.activity.retire_durables);
        # its dead letters move to its heir's and its replay consumer is deleted.
        allow += [
            f"{JS}.CONSUMER.INFO.{stream}.{durable}",
            f"{JS}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
            f"{JS}.CONSUMER.DELETE.{subjects.name('DEAD')}.{durable}_replay",
        ]
    allow += _dead_letter_allow(access, subjects)
    for name in access.buckets:
        bucket = subjects.name(name)
        stream = f"KV_{bucket}"
        allow += [
            f"$KV.{bucket}.>",
            *(f"{JS}.STREAM.{op}.{stream}" for op in ("INFO", "CREATE", "UPDATE", "MSG.GET")),
            f"{JS}.DIRECT.GET.{stream}",
            f"{JS}.DIRECT.GET.{stream}.>",
            # keys() and watch() read through an ephemeral ordered consumer with flow control.
            f"{JS}.CONSUMER.CREATE.{stream}",
            f"{JS}.CONSUMER.CREATE.{stream}.>",
            f"{JS}.CONSUMER.INFO.{stream}.*",
            f"{JS}.CONSUMER.DELETE.{stream}.*",
            f"$JS.FC.{stream}.>",
        ]
    return list(dict.fromkeys(allow))


def _dead_letter_allow(access: Access, subjects: Subjects) -> list[str]:
    """Return what Bus.consume needs for dead letters: keep them, take replay requests, remove replayed."""
    # tonerwatch_shared.bus.dead_stream / dead_subject / replay_subject (not imported: no cycle).
    dead = subjects.name("DEAD")
    durables = [d for stream, d in access.consumers if stream == subjects.events_stream]
    if not durables and not access.replays:
        return []
    allow = [f"{JS}.STREAM.{op}.{dead}" for op in ("INFO", "CREATE", "UPDATE", "MSG.GET")]
    for durable in durables:
        # "*" (consumers named at run time) stays a whole-token wildcard.
        replay = "*" if durable == "*" else f"{durable}_replay"
        allow += [
            f"{subjects.root}_dead.{durable}",
            f"{JS}.CONSUMER.DURABLE.CREATE.{dead}.{replay}",
            f"{JS}.CONSUMER.CREATE.{dead}.{replay}",
            f"{JS}.CONSUMER.CREATE.{dead}.{replay}.>",
            f"{JS}.CONSUMER.INFO.{dead}.{replay}",
            f"{JS}.CONSUMER.MSG.NEXT.{dead}.{replay}",
            f"$JS.ACK.{dead}.{replay}.>",
        ]
    if durables:
        allow.append(f"{JS}.STREAM.MSG.DELETE.{dead}")
    if access.replays:
        allow.append(f"{subjects.root}_replay.>")
    return allow


def subscribe_allow(service: str, subjects: Subjects | None = None) -> list[str]:
    """Return every subject pattern the service may subscribe to: its replies and live filters."""
    subjects = subjects or Subjects()
    # Bus.connect sets the inbox prefix to _INBOX.<user>: no one reads another user's replies.
    return [f"_INBOX.{service}.>", *service_access(subjects)[service].listens]


def _list(items: list[str], indent: str) -> str:
    return "\n".join(f'{indent}"{item}"' for item in items)


def authorization_block(password_of: Callable[[str], str], subjects: Subjects | None = None) -> str:
    """Return a nats-server `authorization` block: one user per service, each allowed only its subjects.

    password_of gives the config token of a service's password: `$VARIABLE` (read from the
    server's environment) or a quoted literal. There is no no_auth_user, so an anonymous client
    is refused at connect.
    """
    subjects = subjects or Subjects()
    users = []
    for service in service_access(subjects):
        users.append(
            f"""    {{
      user: {service}
      password: {password_of(service)}
      permissions: {{
        publish: {{ allow: [
{_list(publish_allow(service, subjects), "          ")}
        ] }}
        subscribe: {{ allow: [
{_list(subscribe_allow(service, subjects), "          ")}
        ] }}
      }}
    }}"""
        )
    body = "\n".join(users)
    return f"""authorization {{
  users: [
{body}
  ]
}}
"""


def literal(password: str) -> str:
    """Return a password as a quoted nats-server config string."""
    # The config's quoted strings take JSON escapes; generated passwords are URL-safe anyway.
    return json.dumps(password)


def write_private(path: Path, text: str) -> None:
    """Write text to path readable by its owner only (0600), also when the file existed before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def embedded_passwords(data_dir: Path) -> dict[str, str]:
    """Return each service's password for the embedded server, made once and kept 0600 in the data dir.

    A password is 32 random bytes (URL-safe); the file is rewritten only to add a missing service,
    so a restart keeps every password it had.
    """
    path = data_dir / USERS_FILE
    known: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text())
        known = {str(k): str(v) for k, v in data.get("users", {}).items()}
    missing = [s for s in SERVICES if not known.get(s)]
    if missing or not path.exists():
        for service in missing:
            known[service] = secrets.token_urlsafe(32)
        write_private(path, json.dumps({"users": known}, indent=2, sort_keys=True) + "\n")
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # someone widened it: passwords are the owner's only
    return {s: known[s] for s in SERVICES}


def embedded_authorization(passwords: Mapping[str, str], subjects: Subjects) -> str:
    """Return the embedded server's authorization block with these literal passwords."""
    return authorization_block(lambda service: literal(passwords[service]), subjects)
