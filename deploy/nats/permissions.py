"""Each service's NATS user and the least subjects it may publish and subscribe to; writes auth.conf.

One source for every shipped NATS config: `uv run python deploy/nats/permissions.py` writes
deploy/nats/auth.conf (compose) and k8s/nats/auth.conf (kustomize reads only files under k8s/);
tests/test_nats_auth.py checks both are current and proves each permission on a real nats-server.

What each service does on the bus is read from the services' code (events they publish, durable
consumers, KV buckets, live subscriptions); the subjects come from the event classes, under the
default subject root `tw` and stream prefix `TW` (regenerate if you change those settings).
Passwords are not here: auth.conf reads them from the server's environment
(`NATS_PASSWORD_<SERVICE>`), which compose fills from .env and Kubernetes from a Secret.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from tonerwatch_shared import events as ev
from tonerwatch_shared.subjects import Subjects

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = (ROOT / "deploy" / "nats" / "auth.conf", ROOT / "k8s" / "nats" / "auth.conf")
SUBJECTS = Subjects()
EVENTS = SUBJECTS.events_stream
# The poller's work-queue stream of poll jobs (tonerwatch_poller.service.Poller.jobs_stream).
POLLJOBS = SUBJECTS.name("POLLJOBS")
JS = "$JS.API"


@dataclass(frozen=True)
class Access:
    """What one service does on the bus."""

    publishes: tuple[type[ev.Event], ...]
    # (stream, durable); "*" as durable: consumers named at run time (the alerter's channels).
    consumers: tuple[tuple[str, str], ...]
    # KV buckets by their unprefixed name, as passed to Bus.key_value.
    buckets: tuple[str, ...] = ()
    # Core (non-JetStream) live subscriptions: Bus.subscribe_events.
    listens: tuple[str, ...] = ()
    # Streams besides the events stream this service creates and updates.
    streams: tuple[str, ...] = ()
    # Raw subjects it publishes outside events (poll jobs).
    extra_publish: tuple[str, ...] = field(default=())


def _durable(suffix: str) -> tuple[str, str]:
    return (EVENTS, SUBJECTS.name(suffix))


ACCESS: dict[str, Access] = {
    "discovery": Access(
        publishes=(
            ev.PrinterFound,
            ev.DiscoveryRequested,
            ev.DiscoveryProgress,
            ev.DiscoveryFinished,
        ),
        consumers=(_durable("discovery_requests"),),
        buckets=("DISCOVERY_DEVICES",),
        listens=(ev.DiscoveryCancelled.subject_filter(SUBJECTS),),
    ),
    "poller": Access(
        publishes=(ev.SupplyReading, ev.PrinterUnreachable, ev.PrinterReachable),
        consumers=(_durable("poller_config"), (POLLJOBS, SUBJECTS.name("poller_jobs"))),
        buckets=("POLLER_PRINTERS", "POLLER_HEALTH"),
        streams=(POLLJOBS,),
        extra_publish=(SUBJECTS.area("polljob", keyed=False),),
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
            _durable("alerter"),
            _durable("alerter_printer"),
            _durable("alerter_settings"),
            _durable("alerter_collectors"),
            # One consumer per configured channel (TW_alerter_<kind>_<name>): named at run time.
            (EVENTS, "*"),
        ),
        buckets=(
            "ALERTER",
            "ALERTER_SITES",
            "ALERTER_SENT",
            "ALERTER_DIGEST",
            "ALERTER_COLLECTORS",
        ),
    ),
    "syncer": Access(
        publishes=(ev.UpstreamSynced,),
        consumers=(
            _durable("syncer_alerts"),
            _durable("syncer_replaced"),
            _durable("syncer_orders"),
            _durable("syncer_fleet_readings"),
            _durable("syncer_fleet_printers"),
        ),
        buckets=("SYNC_FLEET", "SYNC_STATE"),
    ),
    "api": Access(
        publishes=(
            ev.PrinterConfigured,
            ev.PrinterRemoved,
            ev.OrderChanged,
            ev.DiscoveryRequested,
            ev.DiscoveryCancelled,
            ev.AlertSettingsConfigured,
        ),
        # tonerwatch_api.projections.PROJECTIONS and tonerwatch_api.activity (unprefixed names).
        consumers=tuple(
            (EVENTS, name)
            for name in (
                "api-readings",
                "api-printers",
                "api-alerts",
                "api-supplies",
                "api-discovery-jobs",
                "api-discovery-found",
                "api-usage-polling",
                "api-usage-discovery",
                "api-usage-sync",
                "api-collectors",
            )
        ),
        listens=(SUBJECTS.area("alert"),),
    ),
}


# Published only at a site, on the collector's own nats-server (which has no service users), and
# sourced into the hub's events stream across the leaf (tonerwatch_shared.sites.UP_EVENTS).
SITE_ONLY: tuple[type[ev.Event], ...] = (ev.CollectorStatus,)


def password_variable(service: str) -> str:
    """Return the environment variable the server reads a service's password from."""
    return f"NATS_PASSWORD_{service.upper()}"


def publish_allow(service: str) -> list[str]:
    """Return every subject pattern the service may publish to."""
    access = ACCESS[service]
    allow = [cls.subject_filter(SUBJECTS) for cls in access.publishes]
    allow += list(access.extra_publish)
    allow.append(f"{JS}.INFO")
    for stream in (EVENTS, *access.streams):
        allow += [f"{JS}.STREAM.{op}.{stream}" for op in ("INFO", "CREATE", "UPDATE")]
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
    for name in access.buckets:
        bucket = SUBJECTS.name(name)
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


def subscribe_allow(service: str) -> list[str]:
    """Return every subject pattern the service may subscribe to: its replies and live filters."""
    return [f"_INBOX.{service}.>", *ACCESS[service].listens]


def _list(items: list[str], indent: str) -> str:
    return "\n".join(f'{indent}"{item}"' for item in items)


def render() -> str:
    """Return auth.conf: one user per service, each allowed only its subjects."""
    users = []
    for service in ACCESS:
        users.append(
            f"""    {{
      user: {service}
      password: ${password_variable(service)}
      permissions: {{
        publish: {{ allow: [
{_list(publish_allow(service), "          ")}
        ] }}
        subscribe: {{ allow: [
{_list(subscribe_allow(service), "          ")}
        ] }}
      }}
    }}"""
        )
    body = "\n".join(users)
    return f"""# Generated by deploy/nats/permissions.py: edit that, then run it (tests fail while this is stale).
# One NATS user per TonerWatch service, each allowed only the subjects its code uses. No user may
# connect without a password (there is no no_auth_user): an anonymous client is refused at connect.
# Passwords come from the server's environment (NATS_PASSWORD_<SERVICE>), never from this file.
authorization {{
  users: [
{body}
  ]
}}
"""


def main() -> int:
    """Write every auth.conf; with --check, only say whether they are current (exit 1 if not)."""
    text = render()
    stale = [p for p in OUTPUTS if not p.exists() or p.read_text() != text]
    if "--check" in sys.argv[1:]:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} is stale: run uv run python deploy/nats/permissions.py"
            )
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
