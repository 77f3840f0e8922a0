"""Partition jobs arrive through a long-lived pull request, sent again only when it ends or is lost.

A replica asks for partitions only while it holds fewer than its share; holding them, it sends no
pull request at all, however many printers it polls (issue 15: a fetch per batch of due jobs once
cost a pull request for every one or two polls).
"""

from __future__ import annotations

import asyncio
import time

from nats.aio.msg import Msg

from tonerwatch_poller.leases import Beat, live
from tonerwatch_poller.mirror import KvMirror
from tonerwatch_poller.service import PULL_HEARTBEAT_S, Poller, _JobPull
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.simulator import SnmpSimulator
from tonerwatch_shared.testing.nats_traffic import counting


def job() -> Msg:
    return Msg(None, subject="tw._fleet.polljob.part.1", reply="$JS.ACK.x", data=b"{}")  # type: ignore[arg-type]


def status(code: str) -> Msg:
    return Msg(None, subject="_INBOX.x", headers={"Status": code})  # type: ignore[arg-type]


def test_a_request_is_sent_again_once_its_batch_is_delivered() -> None:
    pull = _JobPull("_INBOX.x", "$JS.API.CONSUMER.MSG.NEXT.S.D")
    assert pull.needs_request(0.0, reconnects=0)
    pull.request(2, now=0.0)
    assert not pull.needs_request(0.1, reconnects=0)
    assert pull.delivered(job(), now=0.2)
    assert not pull.needs_request(0.3, reconnects=0)
    assert pull.delivered(job(), now=0.4)
    assert pull.wake.is_set() and pull.needs_request(0.5, reconnects=0)


def test_a_request_the_server_ended_or_lost_is_sent_again_and_heartbeats_keep_one() -> None:
    pull = _JobPull("_INBOX.x", "$JS.API.CONSUMER.MSG.NEXT.S.D")
    pull.needs_request(0.0, reconnects=0)
    pull.request(64, now=0.0)
    # Idle heartbeats say it is still there: not a job, nothing to send.
    for i in range(1, 6):
        at = i * PULL_HEARTBEAT_S
        assert not pull.delivered(status("100"), now=at)
        assert not pull.needs_request(at + 0.1, reconnects=0)
    # Expired (408), or refused (409): over.
    assert not pull.delivered(status("408"), now=30.0)
    assert pull.needs_request(30.0, reconnects=0)
    pull.request(64, now=30.0)
    assert not pull.delivered(status("409"), now=31.0)
    assert pull.needs_request(31.0, reconnects=0)
    # Silence for two heartbeat intervals: lost (a NATS restart).
    pull.request(64, now=40.0)
    assert not pull.needs_request(40.0 + 2 * PULL_HEARTBEAT_S, reconnects=0)
    assert pull.needs_request(40.0 + 3 * PULL_HEARTBEAT_S, reconnects=0)
    # The connection reconnected: a restarted server forgot it.
    pull.request(64, now=100.0)
    assert pull.needs_request(100.1, reconnects=1)


async def test_steady_polls_of_several_printers_take_no_pull_request(
    bus: Bus, poller: Poller, snmp_agent: SnmpSimulator
) -> None:
    for i in range(4):
        await poller.on_config(
            ev.PrinterConfigured(
                source="test",
                site_id="hq",
                printer_id=f"hp-pull-{i}",
                address="127.0.0.1",
                port=snmp_agent.port,
                credentials=ev.SnmpCredentials(community="jetdirect_m252dw"),
                interval_s=1.0,
            ),
            None,  # type: ignore[arg-type]
        )

    def polls() -> float:
        value = poller.metrics.registry.get_sample_value(
            "tonerwatch_polls_total", {"result": "ok", "protocol": "snmp"}
        )
        return value or 0.0

    stop = asyncio.Event()
    loop = asyncio.create_task(poller.run_jobs(stop))
    try:
        deadline = time.monotonic() + 30  # bounded: first polls within 10 s, then 1 s apart
        while polls() < 8 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert polls() >= 8
        assert len(poller.leases) == poller.settings.poll_partitions  # alone: it holds them all
        with counting(bus.nc) as traffic:
            before = polls()
            await asyncio.sleep(3.0)
            steady = polls() - before
    finally:
        stop.set()
        await loop
    pulls = [s for s in traffic.published if s.startswith("$JS.API.CONSUMER.MSG.NEXT.")]
    assert steady >= 8, steady
    assert pulls == []  # every partition held: nothing to ask for


async def test_the_lease_loop_sleeps_until_a_round_a_request_lost_or_a_peer_lapsing(
    poller: Poller, bus: Bus
) -> None:
    """What only time changes for the lease loop: it sleeps until the first of them (a little
    past it: the checks are strict), everything else wakes it; not a check every second."""
    ack_wait = poller.settings.job_ack_wait_s
    now, wall, past = 1000.0, 1_700_000_000.0, 0.01

    def idle(pulls: list[_JobPull], next_round: float) -> float:
        return round(poller._leases_idle_s(pulls, next_round, now=now, wall=wall) - past, 6)

    assert idle([], now + 100.0) == 100.0  # the next round
    pull = _JobPull("_INBOX.x", "$JS.API.CONSUMER.MSG.NEXT.S.D")
    assert idle([pull], now + 100.0) == 100.0  # no request armed: nothing to lose
    pull.request(1, now=now - 1.0)
    assert idle([pull], now + 100.0) == pull.LOST_AFTER_S - 1.0
    assert pull.needs_request(now + pull.LOST_AFTER_S - 1.0 + past, reconnects=0)
    pull.request(1, now=now - 1.0)
    pull.delivered(status("100"), now=now)  # heard of since (an idle heartbeat): later
    assert idle([pull], now + 100.0) == pull.LOST_AFTER_S
    # Another replica's heartbeat lapses after the ack wait: this one's share grows then.
    poller.beats = KvMirror(await bus.key_value("POLLER_REPLICAS"))
    poller.beats.values.update(
        {
            "peer": Beat("peer", wall - 1.0, ("d",)).to_bytes(),
            "gone": Beat("gone", wall - ack_wait - 5.0, ("d",)).to_bytes(),  # lapsed already
            poller.replica_id: Beat(poller.replica_id, wall - ack_wait + 0.5, ("d",)).to_bytes(),
            "bad": b"not json",
        }
    )
    assert idle([], now + 1000.0) == ack_wait - 1.0
    peer = Beat("peer", wall - 1.0, ("d",))
    assert live([peer], wall + ack_wait - 1.0, ack_wait)
    assert not live([peer], wall + ack_wait - 1.0 + past, ack_wait)
    # The earliest of them.
    assert idle([pull], now + 0.5) == 0.5
    # A deadline past already: at once.
    assert idle([pull], now - 3.0) == 0.0
