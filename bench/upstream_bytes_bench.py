"""Upstream bytes per site per day: ours for 10 and 1,000 printers beside eConcierge's 19.5 kB.

Runs the reference portal on 127.0.0.1 and sends it, through the syncer's own client and
signing, what one site sends in a day: the daily fleet snapshot (gzip) and the downlink polls
(every TONERWATCH_SYNC_DOWNLINK_INTERVAL_S, default 3600 s: 24 a day, each answered 304 without a
body because If-None-Match names the cursor and nothing came), plus one reorder push and its alert
event per printer per 30 days (a toner lasting a month). Bytes are HTTP as the syncer measures them
(exchange_bytes: request and answer, no TCP/TLS framing). The line "before" is the downlink as it
was until contract 1.1: every 300 s, each answered 200 with an empty signed list.

    uv run python bench/upstream_bytes_bench.py
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx

from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.portal import Portal, serving
from tonerwatch_shared.printer.model import Counters, PrinterStatus, Supply, SupplyKind, SupplyState
from tonerwatch_shared.upstream import (
    DOWNLINK_PATH,
    DownlinkRequest,
    FleetSnapshot,
    PrinterEntry,
    ReorderPush,
    cursor_etag,
    document_id,
)
from tonerwatch_syncer.upstream import NOT_MODIFIED, endpoint, exchange_bytes, post

SECRET = "bench-secret"
ECONCIERGE_TEN_PER_DAY = 19_500
DOWNLINK_INTERVAL_S = 3600
DOWNLINK_PER_DAY = 86_400 // DOWNLINK_INTERVAL_S
BEFORE_DOWNLINK_PER_DAY = 86_400 // 300
REORDERS_PER_PRINTER_PER_DAY = 1 / 30


def entry(i: int) -> PrinterEntry:
    toners = [
        ("1", "black", 42.0),
        ("2", "cyan", 80.0),
        ("3", "magenta", 65.0),
        ("4", "yellow", 31.0),
    ]
    toner_supplies = [
        Supply(
            index=idx,
            description=f"{c.title()} Cartridge HP W203{idx}A",
            part_number=f"W203{idx}A",
            kind=SupplyKind.TONER,
            colour=c,
            level=int(p),
            max_capacity=100,
            percent=p,
            state=SupplyState.OK,
        )
        for idx, c, p in toners
    ]
    supplies = (
        *toner_supplies,
        Supply(
            index="5",
            description="Toner Collection Unit",
            kind=SupplyKind.WASTE_TONER,
            percent=90.0,
        ),
    )
    return PrinterEntry(
        printer_id=f"p-{i:06x}",
        name=f"Floor {i // 20} printer {i}",
        address=f"10.1.{i // 250}.{i % 250 + 1}",
        vendor="HP",
        model="HP Color LaserJet Pro MFP M479fdw",
        serial=f"CNB{i:07d}",
        mac_address=f"a0:b3:cc:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
        location=f"Building A, floor {i // 20}",
        firmware="002.2311A",
        supplies=supplies,
        counters=Counters(lifetime_pages=120_000 + i, mono_pages=90_000 + i, colour_pages=30_000),
        status=PrinterStatus(),
        last_read_at=dt.datetime(2026, 12, 6, 1, 55, tzinfo=dt.UTC),
    )


async def one(
    client: httpx.AsyncClient,
    url: str,
    path: str,
    doc_id: uuid.UUID,
    kind: str,
    body: bytes,
    gz: bool,
    extra_headers: dict[str, str] | None = None,
) -> int:
    r = await post(
        client,
        endpoint(url, path),
        doc_id,
        kind,
        body,
        SECRET,
        compress=gz,
        extra_headers=extra_headers,
        also_ok=frozenset({NOT_MODIFIED}),
    )
    sent, received = exchange_bytes(r)
    return sent + received


async def site_day(client: httpx.AsyncClient, url: str, printers: int) -> dict[str, float]:
    entries = tuple(entry(i) for i in range(printers))
    snap = FleetSnapshot(
        id=document_id("snapshot", "hq", "2026-12-06"),
        site_id="hq",
        day=dt.date(2026, 12, 6),
        printers=entries,
    )
    snapshot = await one(
        client, url, snap.path, snap.id, snap.type, snap.model_dump_json().encode(), True
    )
    ask = DownlinkRequest(site_id="hq", cursor="0")
    before = await one(
        client, url, DOWNLINK_PATH, ask.id, ask.type, ask.model_dump_json().encode(), False
    )
    ask = DownlinkRequest(site_id="hq", cursor="0")
    etag = cursor_etag(ask.cursor)
    assert etag is not None
    downlink = await one(
        client,
        url,
        DOWNLINK_PATH,
        ask.id,
        ask.type,
        ask.model_dump_json().encode(),
        False,
        {"If-None-Match": etag},
    )
    push = ReorderPush(
        id=uuid.uuid4(),
        site_id="hq",
        occurred_at=dt.datetime(2026, 12, 6, 9, tzinfo=dt.UTC),
        alert_id=f"{entries[0].printer_id}:1:low",
        rule="low",
        supply_index="1",
        part_number="W2031A",
        percent=9.0,
        printer=entries[0],
    )
    reorder = await one(
        client, url, push.path, push.id, push.type, push.model_dump_json().encode(), True
    )
    return {
        "snapshot": snapshot,
        "downlink": downlink * DOWNLINK_PER_DAY,
        "before": before * BEFORE_DOWNLINK_PER_DAY,
        "poll": downlink,
        "poll_before": before,
        # The push and its alert event (about the push's size again, unzipped but smaller).
        "reorders": 2 * reorder * printers * REORDERS_PER_PRINTER_PER_DAY,
    }


async def main() -> None:
    portal = Portal(secret=SECRET)
    async with (
        serving(portal, "127.0.0.1", free_tcp_port()) as url,
        httpx.AsyncClient(timeout=30) as client,
    ):
        print("upstream bytes per site per day (HTTP, as the syncer counts them)")
        print(
            f"{'printers':>9} {'snapshot':>10} {'downlink':>10} {'reorders':>10} {'total':>10} {'vs eConcierge':>14}"
        )
        rows = []
        for n in (10, 1000):
            parts = await site_day(client, url, n)
            rows.append((n, parts))
            total = parts["snapshot"] + parts["downlink"] + parts["reorders"]
            theirs = ECONCIERGE_TEN_PER_DAY * n / 10
            print(
                f"{n:>9} {parts['snapshot']:>10,.0f} {parts['downlink']:>10,.0f} {parts['reorders']:>10,.0f}"
                f" {total:>10,.0f} {total / theirs:>13.2f}x"
            )
        print("before (downlink every 300 s, 200 with an empty signed list each time):")
        for n, parts in rows:
            old = parts["snapshot"] + parts["before"] + parts["reorders"]
            new = parts["snapshot"] + parts["downlink"] + parts["reorders"]
            theirs = ECONCIERGE_TEN_PER_DAY * n / 10
            print(
                f"{n:>9} {parts['snapshot']:>10,.0f} {parts['before']:>10,.0f} {parts['reorders']:>10,.0f}"
                f" {old:>10,.0f} {old / theirs:>13.2f}x   now {new / old:.3f} of before"
            )
        print(
            f"one downlink exchange: {rows[0][1]['poll']:,.0f} B now (304), "
            f"{rows[0][1]['poll_before']:,.0f} B before (200, empty list)"
        )
        print(
            f"eConcierge: {ECONCIERGE_TEN_PER_DAY:,} B/day for ten printers (scaled linearly for 1,000)"
        )
        print(
            f"downlink: {DOWNLINK_PER_DAY} polls a day at the default {DOWNLINK_INTERVAL_S} s "
            "interval (304: nothing new)"
        )


if __name__ == "__main__":
    asyncio.run(main())
