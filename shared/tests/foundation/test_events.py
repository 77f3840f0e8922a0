"""Events: round trips, tolerant readers, poison detection, and schemas that match the code."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tonerwatch_shared import events as ev
from tonerwatch_shared.printer.model import PrinterIdentity, Supply, SupplyKind, SupplyState
from tonerwatch_shared.subjects import Subjects


def _reading() -> ev.SupplyReading:
    return ev.SupplyReading(
        source="poller",
        site_id="acme-hq",
        printer_id="p-42",
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="HP", model="LaserJet Pro M252dw"),
        supplies=(
            Supply(
                index="1.1",
                description="Black Cartridge",
                kind=SupplyKind.TONER,
                colour="black",
                level=8,
                max_capacity=100,
                percent=8.0,
                state=SupplyState.LOW,
            ),
        ),
    )


def test_supply_reading_round_trips_through_json() -> None:
    reading = _reading()
    assert ev.parse_event(reading.to_bytes()) == reading


def test_event_type_and_subject_name_the_site_and_printer() -> None:
    reading = _reading()
    assert reading.type == "tonerwatch.supply_reading.v1"
    assert reading.subject(Subjects()) == "tw.acme-hq.supply.reading.p-42"
    assert reading.occurred_at.tzinfo is not None


def test_reader_ignores_fields_it_does_not_know() -> None:
    raw = json.loads(_reading().to_bytes())
    raw["added_in_a_later_release"] = {"x": 1}
    raw["supplies"][0]["new_supply_field"] = True
    parsed = ev.parse_event(json.dumps(raw))
    assert isinstance(parsed, ev.SupplyReading)
    assert parsed.supplies[0].percent == 8.0


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "tonerwatch.nope.v1"}', "unknown event type"),
        (b'{"type": "tonerwatch.supply_reading.v1", "site_id": "x"}', "invalid"),
    ],
)
def test_unreadable_messages_are_named_poison(payload: bytes, why: str) -> None:
    with pytest.raises(ev.UnreadableEvent, match=why):
        ev.parse_event(payload)


def test_site_ids_must_be_subject_safe() -> None:
    with pytest.raises(ValueError):
        ev.PrinterRemoved(source="api", site_id="a.b", printer_id="p")


def test_events_are_frozen() -> None:
    reading = _reading()
    with pytest.raises(ValueError):
        reading.printer_id = "other"  # type: ignore[misc]


def test_snmp_secrets_never_in_repr() -> None:
    creds = ev.SnmpCredentials(
        version="3", user="u", auth_key="auth-secret", priv_key="priv-secret", community="c0mm"
    )
    configured = ev.PrinterConfigured(
        source="api", site_id="s", printer_id="p", address="127.0.0.1", credentials=creds
    )
    text = repr(configured) + str(configured)
    assert "auth-secret" not in text and "priv-secret" not in text and "c0mm" not in text


def test_every_event_type_is_registered_once() -> None:
    types = [c.model_fields["type"].default for c in ev.EVENT_CLASSES]
    assert len(types) == len(set(types)) == len(ev.EVENT_TYPES)
    assert all(t.startswith("tonerwatch.") and t.endswith(".v1") for t in types)


def test_event_ids_are_unique_uuids() -> None:
    a, b = _reading(), _reading()
    assert isinstance(a.event_id, uuid.UUID) and a.event_id != b.event_id


def test_checked_in_schemas_match_the_models() -> None:
    """Fails when a model changed without re-exporting (TONERWATCH_UPDATE_SCHEMAS=1 rewrites them)."""
    if os.environ.get("TONERWATCH_UPDATE_SCHEMAS"):
        ev.write_schemas()
    expected = ev.json_schemas()
    on_disk = {p.name: json.loads(p.read_text()) for p in ev.SCHEMA_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(expected), "schema files differ from EVENT_CLASSES"
    for name, schema in expected.items():
        assert on_disk[name] == json.loads(json.dumps(schema)), f"{name} drifted from its model"


def test_group_recipients_list_each_printer_once_per_set_of_addresses() -> None:
    big_group = {f"p-{i:010x}": ["finance-lead@acme.example"] for i in range(10_000)}
    big_group["p-reception"] = ["finance-lead@acme.example", "desk@acme.example"]
    event = ev.AlertSettingsConfigured(
        source="api", site_id="acme-hq", revision=3, printer_recipients=big_group
    )
    assert [len(s.printers) for s in event.recipient_sets] == [10_000, 1]
    assert event.recipients_of("p-reception") == ("finance-lead@acme.example", "desk@acme.example")
    assert event.recipients_of("p-0000000007") == ("finance-lead@acme.example",)
    assert event.recipients_of("p-elsewhere") == ()
    assert event.printer_recipients["p-0000000007"] == ("finance-lead@acme.example",)
    wire = event.to_bytes()
    # Well under NATS's default 1 MB message limit (the address is not repeated per printer).
    assert len(wire) < 200_000
    again = ev.parse_event(wire)
    assert isinstance(again, ev.AlertSettingsConfigured) and again == event


def _matches(pattern: str, subject: str) -> bool:
    """Return whether a NATS subject matches a filter (`*` one token, `>` the rest)."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def _all_subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in (direct, *_all_subclasses(direct))}


def test_every_concrete_event_class_is_in_the_registry() -> None:
    # A class with a `type` but missing from EVENT_CLASSES would be unreadable and its area unkept.
    concrete = {c for c in _all_subclasses(ev.Event) if "type" in c.model_fields}
    assert concrete == set(ev.EVENT_CLASSES)


def test_stream_areas_come_from_the_event_classes() -> None:
    assert set(ev.EVENT_AREAS) == {
        "printer",
        "supply",
        "alert",
        "discovery",
        "config",
        "sync",
        "order",
        "site",
    }
    assert Subjects("tw").stream_subjects(ev.EVENT_AREAS)[0] == "tw.*.printer.>"


@pytest.mark.parametrize("cls", ev.EVENT_CLASSES, ids=lambda c: c.__name__)
def test_each_event_is_kept_by_the_stream_and_matched_by_its_own_filter(
    cls: type[ev.Event],
) -> None:
    subjects = Subjects("tw")
    fields: dict[str, object] = {
        "source": "t",
        "site_id": "hq",
        "printer_id": "p-1",
        "job_id": "j-1",
        "collector_id": "c-1",
        "item_id": "i-1",
        "server_id": 1,
    }
    event = cls.model_construct(**fields)
    subject = event.subject(subjects)
    assert any(_matches(f, subject) for f in subjects.stream_subjects(ev.EVENT_AREAS))
    assert _matches(cls.subject_filter(subjects), subject)
    assert _matches(cls.subject_filter(subjects, site="hq"), subject)
    assert not _matches(cls.subject_filter(subjects, site="branch"), subject)
    assert _matches(subjects.area(cls.subject_area()), subject)
    # A filter names one kind: no other kind's subject matches it (a batch of readings is of
    # the readings' kind on purpose: every readings consumer receives it).
    others = {o.area_what for o in ev.EVENT_CLASSES} - {cls.area_what}
    assert not any(_matches(cls.subject_filter(subjects), f"tw.hq.{o}.p-1") for o in others)


def test_printer_events_are_the_ones_keyed_by_a_printer_id() -> None:
    printer_events = {c for c in ev.EVENT_CLASSES if issubclass(c, ev.PrinterEvent)}
    assert printer_events == {
        c
        for c in ev.EVENT_CLASSES
        if "printer_id" in c.model_fields and c.model_fields["printer_id"].is_required()
    }
    assert ev.SupplyReading in printer_events and ev.UpstreamSynced not in printer_events


def test_a_batch_with_its_type_first_parses_as_the_general_path_parses_it() -> None:
    """parse_event validates a batch as encode_batch writes it (type first) straight from the
    JSON: the same event as json.loads + model_validate; a broken one is still UnreadableEvent."""
    from tonerwatch_shared.events import (
        SupplyReading,
        SupplyReadingBatch,
        UnreadableEvent,
        encode_batch,
        parse_event,
        parse_parts,
    )
    from tonerwatch_shared.printer.model import PrinterIdentity

    readings = [
        SupplyReading(
            source="poller",
            site_id="default",
            printer_id=f"p-{i}",
            address="127.0.0.1",
            printer=PrinterIdentity(vendor="HP", model="M252dw"),
        )
        for i in range(3)
    ]
    data = encode_batch(
        [r.to_bytes() for r in readings],
        site_id="default",
        source="poller",
        event_id=uuid.uuid4(),
    )
    assert data.startswith(b'{"type":"tonerwatch.supply_reading_batch.v1",')
    event = parse_event(data)
    assert isinstance(event, SupplyReadingBatch)
    assert event == SupplyReadingBatch.model_validate(json.loads(data))
    assert event.readings == tuple(readings)
    carried = parse_parts(data)
    assert carried.batch and carried.parts == tuple(readings)
    with pytest.raises(UnreadableEvent, match="not JSON"):
        parse_event(data[:-2])
    with pytest.raises(UnreadableEvent, match=r"invalid tonerwatch\.supply_reading_batch\.v1"):
        parse_event(data.replace(b'"site_id":"default"', b'"site_id":"other"', 1))
