"""Site collectors' health on a real NATS JetStream: one site-offline alert per outage, resolved on return."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tonerwatch_alerter.collectors import CollectorWatch, heard, silent
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import CollectorStatus, SiteOffline, SiteOnline
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually

from .test_service import alerter, published

LIMIT_S = 1.0
T0 = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)


def status(
    at: datetime, collector: str = "collector-north", site: str = "north"
) -> CollectorStatus:
    """A status of north's collector (3 printers, nothing queued) made at `at`."""
    return CollectorStatus(
        source=f"collector/{collector}",
        site_id=site,
        collector_id=collector,
        version="0.1.0",
        printers=3,
        queue_depth=0,
        started_at=T0,
        occurred_at=at,
    )


def test_a_late_status_made_during_the_outage_does_not_end_it() -> None:
    first = heard(None, status(T0), T0, LIMIT_S, "t")
    assert first is not None and first.offline_event_id is None and not first.outbox
    later = T0 + timedelta(seconds=5)
    offline = silent(first, later, LIMIT_S, "t")
    assert offline is not None and offline.offline_event_id is not None
    assert silent(offline, later + timedelta(seconds=5), LIMIT_S, "t") is None  # one per outage
    # Sourced late after a cut: made during the outage, so the site is still offline.
    late = heard(offline, status(T0 + timedelta(seconds=2)), later, LIMIT_S, "t")
    assert late is not None and late.offline_event_id == offline.offline_event_id
    back = heard(late, status(later), later, LIMIT_S, "t")
    assert back is not None and back.offline_event_id is None
    assert heard(back, status(T0), later, LIMIT_S, "t") is None  # older than known: history
    assert isinstance(back, CollectorWatch)


async def test_silent_collector_raises_one_site_offline_with_two_alerters_and_resolves_on_return(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    knobs = {"collector_offline_after_s": LIMIT_S, "collector_check_s": 0.1}
    async with (
        alerter(nats_url, subjects, "a1", **knobs),
        alerter(nats_url, subjects, "a2", **knobs),
    ):
        assert await bus.publish(status(datetime.now(UTC)))

        async def offline() -> list[SiteOffline]:
            return [e for e in await published(bus) if isinstance(e, SiteOffline)]

        await eventually(offline, timeout_s=10)
        await asyncio.sleep(1.0)  # both replicas keep checking: still one alert
        alerts = await offline()
        assert len(alerts) == 1, alerts
        alert = alerts[0]
        assert (alert.site_id, alert.collector_id) == ("north", "collector-north")
        assert alert.subject(subjects) == f"{subjects.root}.north.site.offline.collector-north"

        assert await bus.publish(status(datetime.now(UTC)))  # it speaks again

        async def online() -> list[SiteOnline]:
            return [e for e in await published(bus) if isinstance(e, SiteOnline)]

        await eventually(online, timeout_s=10)
        resolved = await online()
        assert [r.offline_event_id for r in resolved] == [alert.event_id]
    # No printer of the site raised anything: the alert is the site's, once.
    assert all(not hasattr(e, "printer_id") for e in await offline() + await online())
