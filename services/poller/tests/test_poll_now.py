""" "Poll now": a PollRequested makes the poller poll a printer at once, outside its schedule."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tonerwatch_poller.service import Poller, Settings
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.simulator import SnmpSimulator

from ._poller import configured, replica


async def test_hp_m252dw_on_an_hourly_interval_is_polled_again_when_asked(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    readings = bus.subjects.filter("supply.reading")

    def of_hp(e: ev.Event) -> bool:
        return isinstance(e, ev.SupplyReading) and e.printer_id == "hp-now"

    async with replica(bus, nats_url, poll_timeout_s=0.5):
        await bus.publish(configured("hp-now", snmp_agent.port, "jetdirect_m252dw", 3600.0))
        first = await wait_for_event(bus, readings, of_hp, timeout_s=20)
        asked = time.monotonic()
        request = ev.PollRequested(
            source="api-test", site_id="hq", printer_id="hp-now", requested_by="admin"
        )
        await bus.publish(request)
        second = await wait_for_event(
            bus, readings, lambda e: of_hp(e) and e.event_id != first.event_id, timeout_s=15
        )
    # The next scheduled poll was an hour away: this one is the answer to the request.
    assert second.occurred_at > request.occurred_at - timedelta(seconds=1)
    assert time.monotonic() - asked < 15
    assert second.printer.model and "M252dw" in second.printer.model


def test_a_poll_request_replayed_from_history_polls_nothing() -> None:
    # A new replica reading the stream from the start must not poll every printer ever asked for.
    unused: Any = None
    poller = Poller(settings=Settings(), bus=unused, client=unused, printers=unused, health=unused)
    old = ev.PollRequested(
        source="api",
        site_id="hq",
        printer_id="hp-old",
        occurred_at=datetime.now(UTC) - timedelta(minutes=10),
    )
    assert poller.request_poll(old) is False
    assert not poller.in_flight


def test_a_poll_request_for_a_printer_being_polled_is_not_doubled() -> None:
    unused: Any = None
    poller = Poller(settings=Settings(), bus=unused, client=unused, printers=unused, health=unused)
    poller.polling.add("hp-busy")
    fresh = ev.PollRequested(source="api", site_id="hq", printer_id="hp-busy")
    assert poller.request_poll(fresh) is False
