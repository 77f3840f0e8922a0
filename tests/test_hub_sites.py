"""`tonerwatch hub-sites` on a hub set up before a source's config changed: it converges.

Hubs provisioned before commit d4cc241 source each site with `kind.>` transforms only, so the
unkeyed `tw.<site>.printer.found` stayed at the site. A re-run of `hub-sites` replaces such a
stale source with the current one, picking up after the last event the old one brought in: what
the hub already holds is not brought in twice, what it missed (an unkeyed PrinterFound) arrives.
Real processes on loopback: the hub's nats-server on the hub.conf `hub-config` wrote, a site's
leaf nats-server dialling it with the site's folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamSource, SubjectTransform

from tonerwatch.cli import main
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import (
    EmbeddedNats,
    free_tcp_port,
    nats_server_binary,
    wait_for_tcp,
)
from tonerwatch_shared.hub import HubLayout, SiteEntry, write_hub_config
from tonerwatch_shared.sites import (
    UP_EVENTS,
    SiteCredentials,
    hub_site_source,
    site_domain,
    site_events_stream_config,
    site_leafnodes,
    site_subjects,
)
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.tls import make_tls

HUB = Subjects()
SITE = "acme-hq"


def stale_source(hub: Subjects, site: str) -> StreamSource:
    """The source hub-sites made before d4cc241: keyed subjects only (`kind.>`)."""
    current = hub_site_source(hub, site)
    keyed = [f"{hub.root}.{site}.{kind}.>" for kind in UP_EVENTS]
    return dataclasses.replace(
        current, subject_transforms=[SubjectTransform(src=s, dest=s) for s in keyed]
    )


def status(n: int) -> ev.CollectorStatus:
    return ev.CollectorStatus(
        source="poller/collector-acme-hq",
        site_id=SITE,
        collector_id="collector-acme-hq",
        version="0.1.0",
        printers=n,
        started_at=datetime.now(UTC),
    )


def found(n: int) -> ev.PrinterFound:
    return ev.PrinterFound(
        source="discovery",
        site_id=SITE,
        job_id=f"j-{n}",
        address=f"127.0.77.{n}",
        identity=ev.PrinterIdentity(sys_object_id="1.3.6.1.4.1.11.2.3.9.1"),
    )


async def hub_event_ids(hub: nats.aio.client.Client) -> list[uuid.UUID]:
    """Return the event ids of the site's events in the hub's events stream, in stream order."""
    js = hub.jetstream()
    last = (await js.stream_info(HUB.events_stream)).state.last_seq
    ids: list[uuid.UUID] = []
    if not last:
        return ids
    sub = await js.subscribe(
        f"{HUB.root}.{SITE}.>", stream=HUB.events_stream, ordered_consumer=True
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                break
            ids.append(ev.parse_event(msg.data).event_id)
            if msg.metadata.sequence.stream >= last:
                break
    finally:
        await sub.unsubscribe()
    return ids


async def wait_for_ids(
    hub: nats.aio.client.Client, wanted: set[uuid.UUID], rounds: int = 120
) -> list[uuid.UUID]:
    """Return the hub's ids once all of wanted are there (bounded: rounds x 0.25 s)."""
    for _ in range(rounds):
        ids = await hub_event_ids(hub)
        if wanted <= set(ids):
            return ids
        await asyncio.sleep(0.25)
    return await hub_event_ids(hub)


def test_hub_sites_converges_a_stale_source_without_bringing_anything_in_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = make_tls(tmp_path / "pki", ["hub", SITE])
    out = tmp_path / "hub"
    leaf_port, client_port = free_tcp_port(), free_tcp_port()
    layout = HubLayout(
        hub_tls=tls["hub"],
        store_dir=tmp_path / "hub-store",
        leaf_port=leaf_port,
        leaf_host="127.0.0.1",
        client_port=client_port,
    )
    write_hub_config([SiteEntry(SITE, tls[SITE].cert, tls[SITE].key)], out, layout)
    made = json.loads((out / "secrets.json").read_text())
    hub_proc = subprocess.Popen(
        [str(nats_server_binary()), "-c", str(out / "hub.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    credentials = SiteCredentials.read(out / "sites" / SITE / "credentials.json")
    site = EmbeddedNats(
        tmp_path / "site-store",
        server_name=f"collector-{SITE}",
        domain=site_domain(SITE),
        extra=site_leafnodes(f"tls://127.0.0.1:{leaf_port}", credentials),
    )
    hub_url = f"nats://127.0.0.1:{client_port}"
    provision = ["hub-sites", "--out", str(out), "--nats-url", hub_url]
    try:
        assert wait_for_tcp("127.0.0.1", client_port, 15.0)
        site_url = site.start()

        async def scenario() -> None:
            hub_bus = await Bus.connect(
                hub_url, subjects=HUB, name="hub-api", user="hub", password=made["hub"]
            )
            site_bus = await Bus.connect(site_url, subjects=site_subjects(HUB, SITE), name="site")
            try:
                await hub_bus.ensure_event_stream()
                await site_bus.ensure_stream(site_events_stream_config(HUB, SITE))
                # The hub as an old hub-sites left it: SITE_DOWN made, the stale source.
                assert await asyncio.to_thread(main, provision) == 0
                info = await hub_bus.js.stream_info(HUB.events_stream)
                # A short duplicate window: a repeat is seen as one here, not hidden by the
                # window (2 min in production, where a week of readings would come in again).
                await hub_bus.js.update_stream(
                    dataclasses.replace(
                        info.config, sources=[stale_source(HUB, SITE)], duplicate_window=1.0
                    )
                )
                before = [status(n) for n in range(5)]
                lost = found(1)
                for event in [*before[:3], lost, *before[3:]]:
                    await site_bus.publish(event)
                ids = await wait_for_ids(hub_bus.nc, {e.event_id for e in before})
                assert sorted(ids) == sorted(e.event_id for e in before)  # and not the found one
                await asyncio.sleep(1.5)  # past the duplicate window

                # The re-run converges the source, and says so.
                assert await asyncio.to_thread(main, provision) == 0
                assert f"brought up to date for: {SITE}" in capsys.readouterr().out
                info = await hub_bus.js.stream_info(HUB.events_stream)
                sources = info.config.sources or []
                assert len(sources) == 1
                want = hub_site_source(HUB, SITE)
                got = sources[0]
                assert got.name == want.name and got.external == want.external
                assert sorted((t.src, t.dest) for t in got.subject_transforms or []) == sorted(
                    (t.src, t.dest) for t in want.subject_transforms or []
                )
                after = [status(n) for n in range(5, 8)]
                newer = found(2)
                for event in [*after, newer]:
                    await site_bus.publish(event)
                # The new source starts after the last event the stale one brought in: nothing
                # comes twice; what the stale one skipped before the re-run (`lost`, a
                # PrinterFound) stays at the site: the site's next sweep finds the printer again.
                ids = await wait_for_ids(hub_bus.nc, {e.event_id for e in [*after, newer]})
                assert len(ids) == len(set(ids)), "an event reached the hub twice"
                assert ids == [e.event_id for e in [*before, *after, newer]]  # in order, no more
                # A third run changes nothing.
                assert await asyncio.to_thread(main, provision) == 0
                assert "brought up to date" not in capsys.readouterr().out
                again = (await hub_bus.js.stream_info(HUB.events_stream)).config.sources or []
                assert again == sources
            finally:
                await site_bus.drain()
                await hub_bus.drain()

        asyncio.run(scenario())
    finally:
        site.stop()
        hub_proc.terminate()
        hub_proc.wait(timeout=30)
