"""What a replica keeps of each monitored printer: one record per configuration in KV, built once
per change, holding its place in the fleet, the overdue check's facts and what a poll needs."""

from __future__ import annotations

from dataclasses import replace

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
