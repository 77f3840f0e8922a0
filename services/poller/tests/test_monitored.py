"""What a replica keeps of each monitored printer: one record per configuration in KV, built once
per change, holding its place in the fleet, the overdue check's facts and what a poll needs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tonerwatch_poller.leases import partition_of
from tonerwatch_poller.service import Poller
from tonerwatch_shared import events as ev
from tonerwatch_shared.subjects import token
from tonerwatch_shared.testing.infra import eventually

from ._poller import configured


def printer(printer_id: str, community: str = "public", site: str = "hq") -> ev.PrinterConfigured:
    return configured(
        printer_id,
        community=community,
        interval_s=120,
        site_id=site,
        protocol="both",
        ipp_port=8631,
    )


async def test_one_record_per_printer_follows_its_configuration(poller: Poller) -> None:
    assert poller.config_mirror is not None
    configs = [printer("rec-a"), printer("rec-b"), printer("rec-c", "private", "branch")]
    for config in configs:
        await poller.config_mirror.put(token(config.printer_id), config.to_bytes())
    a, b, c = (poller.monitored[token(config.printer_id)] for config in configs)
    assert (a.printer_id, a.site_id, a.address, a.port, a.protocol) == (
        "rec-a",
        "hq",
        "127.0.0.1",
        1161,
        "both",
    )
    assert (a.ipp_port, a.ipp_tls, a.interval_s) == (8631, False, 120)
    assert a.partition == partition_of(token("rec-a"), poller.settings.poll_partitions)
    assert a.configured_at == configs[0].occurred_at.timestamp()
    assert c.site_id == "branch" and c.credentials.community == "private"
    # Printers configured with the same credentials share them (not a copy each).
    assert a.credentials is b.credentials
    assert await poller.read_config("rec-b") is b

    # Changed: the record follows; removed (here, or by another replica): it is gone.
    moved = printer("rec-a").model_copy(update={"address": "127.0.0.2"})
    await poller.config_mirror.put(token("rec-a"), moved.to_bytes())
    assert poller.monitored[token("rec-a")].address == "127.0.0.2"
    await poller.config_mirror.delete(token("rec-a"))
    assert token("rec-a") not in poller.monitored
    await poller.printers.delete(token("rec-b"))
    await eventually(lambda: token("rec-b") not in poller.monitored)
    # Unreadable: no record (it cannot be polled), and nothing else breaks.
    await poller.config_mirror.put(token("rec-c"), b'{"not": "a configuration"}')
    assert token("rec-c") not in poller.monitored
    assert await poller.read_config("rec-c") is None


def test_the_key_kept_on_a_record_is_the_one_token_gives() -> None:
    from tonerwatch_poller.service import Monitored

    shared: dict[ev.SnmpCredentials, ev.SnmpCredentials] = {}
    for pid in ("rec-a", "hq.floor2.hp", "a*b>c", "with space"):
        record = Monitored.parse(printer(pid).to_bytes(), 3, shared)
        assert record.key == token(pid) == token(record.printer_id)
        # A copy with another printer id gets that printer's key (never a stale one).
        moved = replace(record, printer_id=pid + ".x")
        assert moved.key == token(pid + ".x")
        assert moved == replace(record, printer_id=pid + ".x")


async def test_a_printer_with_nothing_sealed_is_polled_at_one_kept_target(poller: Poller) -> None:
    from tonerwatch_poller.service import Monitored

    shared: dict[ev.SnmpCredentials, ev.SnmpCredentials] = {}
    record = Monitored.parse(printer("hp-lobby", "jetdirect_m252dw").to_bytes(), 3, shared)
    target = poller._target(record)
    assert (target.host, target.port, target.version, target.community) == (
        "127.0.0.1",
        1161,
        "2c",
        "jetdirect_m252dw",
    )
    assert (target.timeout, target.retries) == (1.0, 0)  # the replica's poll settings
    assert poller._target(record) is target is record.target  # not made again at every poll
    # A new configuration is a new record: its own target, never the old one's.
    moved = replace(record, address="127.0.0.2")
    assert moved.target is None
    assert poller._target(moved).host == "127.0.0.2"
    # A replica polling with other settings does not take a target made for these.
    poller.settings = poller.settings.model_copy(update={"poll_timeout_s": 0.5})
    assert poller._target(record).timeout == 0.5


async def test_a_sealed_community_is_opened_for_each_poll_and_kept_nowhere(poller: Poller) -> None:
    from tonerwatch_poller.service import Monitored, _Refused
    from tonerwatch_shared.sealing import Sealer, seal_credentials

    poller.sealer = Sealer("k2026-" + "b" * 40)
    sealed = seal_credentials(poller.sealer, ev.SnmpCredentials(community="jetdirect_m252dw"))
    config = printer("hp-sealed").model_copy(update={"credentials": sealed})
    record = Monitored.parse(config.to_bytes(), 3, {})
    first, second = poller._target(record), poller._target(record)
    assert first.community == second.community == "jetdirect_m252dw"
    assert first is not second and record.target is None
    # Refused before sending (no address): nothing kept either, and refused again next time.
    bad = Monitored.parse(
        printer("bad-addr").model_copy(update={"address": "999.1.1.1"}).to_bytes(), 3, {}
    )
    for _ in range(2):
        with pytest.raises(_Refused):
            poller._target(bad)
    assert bad.target is None
