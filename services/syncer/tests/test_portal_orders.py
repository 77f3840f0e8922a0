"""The reference portal takes one order however often its creation is sent."""

from __future__ import annotations

import datetime as dt

import httpx

from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.events import OrderChanged
from tonerwatch_shared.portal import Portal, serving
from tonerwatch_shared.upstream import EVENTS_PATH
from tonerwatch_syncer.upstream import endpoint, post

SECRET = "portal-orders-secret"


def created(order_id: str) -> OrderChanged:
    return OrderChanged(
        source="api/test",
        site_id="hq",
        printer_id="p-hp479",
        order_id=order_id,
        change="created",
        status="requested",
        supply_index="1",
        supply_description="Black Cartridge HP W2030A",
        part_number="W2030X",
        quantity=1,
        created_at=dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC),
    )


async def test_a_resent_order_creation_is_one_order_at_the_portal() -> None:
    portal = Portal(secret=SECRET)
    async with serving(portal, "127.0.0.1", free_tcp_port()) as url, httpx.AsyncClient() as c:
        first = created("o-1a2b3c4d5e6f")
        target = endpoint(url, EVENTS_PATH)
        answers = []
        # The same event twice (a lost acknowledgement), then the same order under a new event
        # id (a replay from the dead-letter stream): the portal keeps one order.
        for event in (first, first, created("o-1a2b3c4d5e6f"), created("o-99aa88bb77cc")):
            r = await post(c, target, event.event_id, event.type, event.to_bytes(), SECRET)
            answers.append(r.status_code)
    assert answers == [202, 200, 200, 202]
    assert portal.order_ids == ["o-1a2b3c4d5e6f", "o-99aa88bb77cc"]
    assert portal.duplicates == 2
    assert len(portal.of_type("tonerwatch.order_changed.v1")) == 2
