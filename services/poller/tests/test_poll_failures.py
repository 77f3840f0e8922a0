"""Polls that fail for a reason we know are named (PrinterUnreachable.failure) over real NATS and a
real snmpsim SNMPv3 agent on loopback: a wrong auth key (usmStatsWrongDigests report), an unknown
user, a wrong privacy key, a key too short to use, an address that is no address, silence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tonerwatch_poller.service import PrinterHealth
from tonerwatch_shared import events as ev
from tonerwatch_shared.bus import Bus, wait_for_event
from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port
from tonerwatch_shared.testing.printers import V3_TEST_USER

from ._poller import configured, replica

RECORDING = "jetdirect_m252dw"


def v3(**over: object) -> ev.SnmpCredentials:
    u = V3_TEST_USER
    fields: dict[str, object] = {
        "version": "3",
        "user": u.name,
        "auth_protocol": u.auth_protocol,
        "auth_key": u.auth_key,
        "priv_protocol": "AES",
        "priv_key": u.priv_key,
        "community": RECORDING,  # snmpsim picks the recording by context name
        **over,
    }
    return ev.SnmpCredentials.model_validate(fields)


def printer(
    printer_id: str, port: int, creds: ev.SnmpCredentials, **fields: object
) -> ev.PrinterConfigured:
    """Return a printer polled every second with these credentials."""
    return configured(printer_id, port, interval_s=1.0, credentials=creds, **fields)


def of(printer_id: str, kind: type[ev.Event]) -> Callable[[ev.Event], bool]:
    return lambda e: isinstance(e, kind) and getattr(e, "printer_id", None) == printer_id


async def down(bus: Bus, printer_id: str) -> ev.PrinterUnreachable:
    e = await wait_for_event(
        bus,
        bus.subjects.filter("printer.unreachable"),
        of(printer_id, ev.PrinterUnreachable),
        timeout_s=30,
    )
    assert isinstance(e, ev.PrinterUnreachable)
    return e


async def test_a_wrong_v3_auth_key_is_named_at_the_first_poll_and_mends_with_the_right_key(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    # unreachable_after=5: a refused key is reported at once, not after five polls.
    async with replica(bus, nats_url, unreachable_after=5, poll_timeout_s=2.0):
        await bus.publish(printer("v3-auth", snmp_agent.port, v3(auth_key="wrong-auth-key")))
        e = await down(bus, "v3-auth")
        assert e.failure == "auth_failed" and e.consecutive_failures == 1, e
        assert "wrong auth key" in e.reason and "Wrong SNMP PDU digest" in e.reason, e.reason
        await bus.publish(printer("v3-auth", snmp_agent.port, v3()))
        up = await wait_for_event(
            bus,
            bus.subjects.filter("printer.reachable"),
            of("v3-auth", ev.PrinterReachable),
            timeout_s=30,
        )
    assert isinstance(up, ev.PrinterReachable)


async def test_an_unknown_v3_user_and_a_wrong_privacy_key_are_named(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    async with replica(bus, nats_url, unreachable_after=5, poll_timeout_s=2.0):
        await bus.publish(printer("v3-user", snmp_agent.port, v3(user="nobody-here")))
        await bus.publish(printer("v3-priv", snmp_agent.port, v3(priv_key="wrong-priv-key")))
        user, priv = await asyncio.gather(down(bus, "v3-user"), down(bus, "v3-priv"))
    assert user.failure == "unknown_user" and "does not know this SNMPv3 user" in user.reason
    assert priv.failure == "priv_failed" and "privacy key" in priv.reason


async def test_stored_short_key_and_bad_address_are_named_without_sending_or_looking_up(
    bus: Bus, nats_url: str, snmp_agent: SnmpSimulator
) -> None:
    """Rows saved before the door checked them: named at once, nothing sent, no traceback loop."""
    async with replica(bus, nats_url, unreachable_after=5):
        await bus.publish(printer("v3-short", snmp_agent.port, v3(auth_key="short")))
        await bus.publish(printer("bad-addr", snmp_agent.port, v3(), address="999.1.1.1"))
        short, bad = await asyncio.gather(down(bus, "v3-short"), down(bus, "bad-addr"))
    assert short.failure == "bad_credentials" and "auth_key" in short.reason, short.reason
    assert "at least 8 characters" in short.reason
    assert bad.failure == "bad_address" and "999.1.1.1" in bad.reason, bad.reason


async def test_silence_is_a_timeout_named_after_n_polls_in_a_row(bus: Bus, nats_url: str) -> None:
    async with replica(bus, nats_url, unreachable_after=2):
        await bus.publish(
            printer("silent", free_udp_port(), ev.SnmpCredentials(community="public"))
        )
        e = await down(bus, "silent")
    assert e.failure == "timeout" and e.consecutive_failures == 2
    assert "the community is wrong" in e.reason


def test_printer_health_continues_the_printer_seq_after_a_restart_and_a_clock_step_back() -> None:
    """The seq lives with the printer's health in KV: a replica that reads it continues it, one
    more than the last even when its clock is behind the replica that wrote it."""
    first = PrinterHealth()
    a = first.next_seq()
    b = first.next_seq()
    assert b > a
    stored = PrinterHealth.from_bytes(first.to_bytes())
    assert stored.seq == b
    ahead = PrinterHealth(seq=int((time.time() + 3600) * 1_000_000))  # written by a clock 1 h ahead
    again = PrinterHealth.from_bytes(ahead.to_bytes())
    assert again.next_seq() == ahead.seq + 1  # type: ignore[operator]
