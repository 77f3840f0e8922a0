"""A site's collector gone silent reaches people like any alert: one mail and one webhook post when
it goes offline, one of each when it is back; collectors' statuses are never sent. Real NATS, a
real SMTP server (aiosmtpd) and a real HTTP receiver, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from tonerwatch_alerter.channels.mail import MailConfig
from tonerwatch_alerter.service import channel_specs
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import SiteOffline, SiteOnline, parse_event
from tonerwatch_shared.signing import verify
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually

from ._smtp import Inbox, free_port, smtp_server
from .test_collectors import status
from .test_service import alerter, mail_route
from .test_webhook import SECRET, Receiver


def test_every_channel_has_a_consumer_of_the_sites_area(subjects: Subjects) -> None:
    config = MailConfig.model_validate(mail_route(25))
    filters = [spec.filter_subject for spec in channel_specs(subjects, "mail", config)]
    assert f"{subjects.root}.*.site.*.*" in filters


async def test_a_silent_collector_is_mailed_and_posted_once_and_its_return_too(
    bus: Bus, nats_url: str, subjects: Subjects
) -> None:
    inbox = Inbox()
    route = mail_route(free_port()) | {"site_recipients": {"north": ["north-it@example.org"]}}
    # Only critical alerts on this route: a site offline is one.
    route |= {"min_severity": "critical"}
    with smtp_server(inbox, port=int(str(route["port"]))):
        async with (
            Receiver() as rx,
            alerter(
                nats_url,
                subjects,
                "sites",
                mail=[route],
                webhooks=[{"name": "ops", "url": rx.url, "secret": SECRET, "attempts": 1}],
                public_url="https://tw.example.org",
                collector_offline_after_s=1.0,
                collector_check_s=0.1,
            ),
        ):
            assert await bus.publish(status(datetime.now(UTC)))
            await eventually(lambda: len(inbox.messages) >= 1 and len(rx.requests) >= 1, 20)
            assert await bus.publish(status(datetime.now(UTC)))  # it speaks again
            await eventually(lambda: len(inbox.messages) >= 2 and len(rx.requests) >= 2, 20)
            # Both replicas of the news are in; a third status changes nothing more.
            assert await bus.publish(status(datetime.now(UTC)))
            await asyncio.sleep(1.0)

    # The webhook: the two events, signed, in order; no status was posted.
    posted = [parse_event(body) for _, body in rx.requests]
    assert [type(e) for e in posted] == [SiteOffline, SiteOnline], posted
    offline, online = posted
    assert isinstance(offline, SiteOffline) and isinstance(online, SiteOnline)
    assert (offline.site_id, offline.collector_id) == ("north", "collector-north")
    assert online.offline_event_id == offline.event_id
    for headers, body in rx.requests:
        assert verify(headers, body, SECRET.encode(), now=time.time())

    # The mails: one each, to the site's recipients, the second threaded under the first.
    down, back = inbox.messages
    assert down["To"] == "north-it@example.org" and back["To"] == "north-it@example.org"
    assert down["Subject"].startswith("Site offline: north — collector collector-north not heard")
    assert back["Subject"] == "Resolved: site north back online (collector collector-north)"
    assert down["Message-ID"] == f"<{offline.event_id}@tonerwatch>"
    assert back["In-Reply-To"] == down["Message-ID"]
    assert down["X-TonerWatch-Alert-Id"] == back["X-TonerWatch-Alert-Id"]
    text = down.get_body(("plain",))
    assert text is not None
    content = text.get_content()
    assert "Collector:" in content and "collector-north" in content
    assert "https://tw.example.org/alerts?site=north&scope=all" in content
    assert "/printers/" not in content


def test_channel_filters_apply_to_site_alerts() -> None:
    now = datetime.now(UTC)
    offline = SiteOffline(
        source="alerter/t",
        site_id="north",
        collector_id="collector-north",
        last_seen=now,
        offline_after_s=200,
    )
    online = SiteOnline(
        source="alerter/t",
        site_id="north",
        collector_id="collector-north",
        offline_event_id=offline.event_id,
        last_seen=now,
    )
    base = MailConfig.model_validate(mail_route(25))
    assert base.wants(offline) and base.wants(online)
    assert not base.wants(status(now))
    quiet = base.model_copy(update={"resolved": False})
    assert quiet.wants(offline) and not quiet.wants(online)
    elsewhere = base.model_copy(update={"sites": ("south",)})
    assert not elsewhere.wants(offline) and not elsewhere.wants(online)
