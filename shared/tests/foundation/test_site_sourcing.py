"""What the hub sources from a site: every event a collector sends up, keyed or not."""

from __future__ import annotations

from tonerwatch_shared import events as ev
from tonerwatch_shared import subjects as sj
from tonerwatch_shared.sites import UP_EVENTS, hub_site_source
from tonerwatch_shared.subjects import Subjects

HUB = Subjects()


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more trailing tokens."""
    want, have = pattern.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(want) == len(have)


def _sourced(subject: str) -> bool:
    source = hub_site_source(HUB, "acme-hq")
    return any(_matches(t.src, subject) for t in source.subject_transforms or [])


def test_printer_found_by_a_collector_sweep_reaches_the_hub() -> None:
    # The MSP walkthrough (README) found 3 printers at the site and none at the hub:
    # PrinterFound is unkeyed (tw.acme-hq.printer.found) and only `printer.found.>` was sourced.
    found = ev.PrinterFound(
        source="discovery",
        site_id="acme-hq",
        job_id="j-1",
        address="127.0.77.1",
        identity=ev.PrinterIdentity(sys_object_id="1.3.6.1.4.1.2435.2.3.9.1"),
    )
    subject = found.subject(HUB)
    assert subject == "tw.acme-hq.printer.found"
    assert _sourced(subject)


def test_every_up_event_is_sourced_keyed_and_unkeyed() -> None:
    for kind in UP_EVENTS:
        assert _sourced(HUB.subject("acme-hq", kind)), kind
        assert _sourced(HUB.subject("acme-hq", kind, "p-1")), kind


def test_what_the_hub_sent_the_site_is_not_sourced_back() -> None:
    assert not _sourced(HUB.subject("acme-hq", sj.DISCOVERY_REQUESTED, "j-1"))
    assert not _sourced(HUB.subject("acme-hq", sj.PRINTER_CONFIGURED, "p-1"))
    assert not _sourced(HUB.subject("other-site", sj.PRINTER_FOUND))
