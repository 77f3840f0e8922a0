"""Every NATS subject and stream name TonerWatch uses, in one place.

Subjects are `<root>.<site>.<area>.<what>[.<key>]`, e.g. `tw.acme-hq.supply.reading.p-42`, so a
consumer can filter by site (`tw.acme-hq.>`), by kind (`tw.*.supply.reading.*`) or by printer.
Each event class names its `area.what` (below); the events stream's subjects are computed from
the event classes (`tonerwatch_shared.events.EVENT_AREAS`), never kept by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# area.what of each event type; the key (printer id, job id) follows where the event has one.
PRINTER_FOUND = "printer.found"
PRINTER_CONFIGURED = "printer.configured"
PRINTER_REMOVED = "printer.removed"
PRINTER_UNREACHABLE = "printer.unreachable"
PRINTER_REACHABLE = "printer.reachable"
# A person asked for a poll now (api); the poller's configuration consumer already sees printer.*.
POLL_REQUESTED = "printer.poll"
# A printer's service coverage as the api's records show it (the syncer's daily snapshot uses it).
PRINTER_COVERAGE = "printer.coverage"
SUPPLY_READING = "supply.reading"
# The key token of a batch of readings (`<root>.<site>.supply.reading.~batch`): outside token()'s
# alphabet, so no printer's subject can ever be it, while every `supply.reading.*` filter matches it.
BATCH_KEY = "~batch"
SUPPLY_REPLACED = "supply.replaced"
# An order of supplies was placed or changed (api); keyed by the printer it is for.
ORDER_CHANGED = "order.changed"
# What the upstream portal said of an order (confirmed, shipped, cancelled) or a site (a message):
# the syncer publishes it, the api applies it; keyed by our order id (the portal's item id for a message).
ORDER_UPSTREAM = "order.upstream"
THRESHOLD_CROSSED = "alert.crossed"
ALERT_RESOLVED = "alert.resolved"
DISCOVERY_REQUESTED = "discovery.requested"
DISCOVERY_CANCELLED = "discovery.cancelled"
DISCOVERY_PROGRESS = "discovery.progress"
DISCOVERY_FINISHED = "discovery.finished"
# The syncer's delivery of an event upstream; keyed by the forwarded event's printer when it has one.
UPSTREAM_SYNCED = "sync.delivered"
# Configuration the api (system of record) announces; unkeyed: the site token is the key.
ALERT_SETTINGS_CONFIGURED = "config.alerts"
# A mail server set in the web UI (the alerter sends the web UI's recipients their mail through it);
# keyed by the server's id, published on the api's default site.
MAIL_SERVER_CONFIGURED = "config.mail"
# A site collector's periodic announcement of itself; keyed by the collector's id.
COLLECTOR_STATUS = "site.status"
# The alerter's judgement of a collector: silent past the limit (one alert per site), and back.
SITE_OFFLINE = "site.offline"
SITE_ONLINE = "site.online"


def area_of(area_what: str) -> str:
    """Return the area token of an `area.what` (e.g. "alert" of "alert.crossed")."""
    return area_what.split(".", 1)[0]


def token(value: str) -> str:
    """Return value made safe as one subject token (dots and wildcards replaced)."""
    return _UNSAFE.sub("_", value) or "_"


@dataclass(frozen=True)
class Subjects:
    """Subject and stream names under one root and prefix (tests use unique ones to isolate)."""

    root: str = "tw"
    stream_prefix: str = "TW"

    def subject(self, site: str, area_what: str, key: str | None = None) -> str:
        """Return the subject for one event."""
        base = f"{self.root}.{token(site)}.{area_what}"
        return f"{base}.{token(key)}" if key is not None else base

    def batch_subject(self, site: str, area_what: str) -> str:
        """Return the subject of a batch of one site's events of a kind (key BATCH_KEY)."""
        return f"{self.root}.{token(site)}.{area_what}.{BATCH_KEY}"

    def filter(self, area_what: str, site: str = "*", key: str = "*", keyed: bool = True) -> str:
        """Return a wildcard filter for an event kind across sites (and keys)."""
        base = f"{self.root}.{site}.{area_what}"
        return f"{base}.{key}" if keyed else base

    def area(self, area: str, site: str = "*", *, keyed: bool | None = None) -> str:
        """Return a wildcard filter for every event of an area: any depth, or keyed/unkeyed ones only."""
        base = f"{self.root}.{site}.{area}"
        if keyed is None:
            return f"{base}.>"
        return f"{base}.*.*" if keyed else f"{base}.*"

    def stream_subjects(self, areas: Iterable[str]) -> list[str]:
        """Return the subjects of a stream keeping every event of these areas, on every site."""
        return [self.area(area) for area in areas]

    @property
    def all(self) -> str:
        """Return the filter that matches every TonerWatch subject."""
        return f"{self.root}.>"

    @property
    def events_stream(self) -> str:
        """Return the name of the stream that keeps every event."""
        return f"{self.stream_prefix}_EVENTS"

    def name(self, suffix: str) -> str:
        """Return a stream, consumer or bucket name under this prefix."""
        return f"{self.stream_prefix}_{suffix}"
