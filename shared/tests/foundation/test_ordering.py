"""Per-printer order: the seq clock, the one "stale" rule, and the optional seq on the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tonerwatch_shared import events as ev
from tonerwatch_shared.ordering import (
    SEQ_MAX,
    Position,
    StoredPosition,
    is_newer,
    is_stale,
    newest,
    next_seq,
    position_of,
)
from tonerwatch_shared.printer.model import PrinterIdentity

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _reading(seq: int | None, at: datetime) -> ev.SupplyReading:
    return ev.SupplyReading(
        source="poller/a",
        site_id="hq",
        printer_id="p-1",
        address="127.0.0.1",
        printer=PrinterIdentity(vendor="HP"),
        occurred_at=at,
        seq=seq,
    )


def test_nothing_applied_yet_means_nothing_is_stale() -> None:
    assert not is_stale(None, _reading(1, T0))
    assert is_newer(None, _reading(None, T0))


def test_seq_decides_when_both_have_one_even_against_the_clock() -> None:
    # A replica whose clock is behind stamped the newer reading with an earlier time.
    applied = position_of(_reading(200, T0))
    late_but_older = _reading(150, T0 + timedelta(minutes=5))
    newer_but_skewed = _reading(201, T0 - timedelta(minutes=5))
    assert is_stale(applied, late_but_older)
    assert not is_stale(applied, newer_but_skewed)
    assert is_newer(applied, newer_but_skewed) and not is_newer(applied, late_but_older)


def test_equal_is_neither_stale_nor_newer() -> None:
    applied = position_of(_reading(7, T0))
    again = _reading(7, T0)
    assert not is_stale(applied, again) and not is_newer(applied, again)


@pytest.mark.parametrize(
    ("applied_seq", "event_seq"), [(None, None), (5, None), (None, 5)], ids=str
)
def test_without_seq_on_either_side_occurred_at_orders(
    applied_seq: int | None, event_seq: int | None
) -> None:
    applied = Position(applied_seq, T0)
    assert is_stale(applied, _reading(event_seq, T0 - timedelta(seconds=1)))
    assert not is_stale(applied, _reading(event_seq, T0))
    assert is_newer(applied, _reading(event_seq, T0 + timedelta(seconds=1)))


def test_newest_keeps_the_later_position() -> None:
    a, b = Position(3, T0), Position(4, T0 - timedelta(hours=1))
    assert newest(a, b) == b and newest(b, a) == b and newest(None, a) == a


def test_next_seq_follows_the_clock_and_never_goes_back() -> None:
    now = T0.timestamp()
    first = next_seq(None, now)
    assert first == int(now * 1_000_000)
    assert next_seq(first, now + 1) == first + 1_000_000
    # The clock went back (another replica, NTP step): one more than the last, never less.
    assert next_seq(first, now - 3600) == first + 1
    assert next_seq(first, now) == first + 1
    assert next_seq(SEQ_MAX, now) == SEQ_MAX


def test_stored_position_round_trips() -> None:
    pos = Position(12, T0)
    assert (
        StoredPosition.model_validate_json(StoredPosition.of(pos).model_dump_json()).position()
        == pos
    )


def test_seq_is_optional_on_the_wire_and_bounded() -> None:
    """A reader ignores nothing it needs: events without seq (older pollers) still parse."""
    raw = json.loads(_reading(9, T0).to_bytes())
    assert raw["seq"] == 9
    del raw["seq"]
    old = ev.parse_event(json.dumps(raw))
    assert isinstance(old, ev.SupplyReading) and old.seq is None
    raw["seq"] = -1
    with pytest.raises(ev.UnreadableEvent):
        ev.parse_event(json.dumps(raw))
    for cls in (
        ev.SupplyReading,
        ev.PrinterUnreachable,
        ev.PrinterReachable,
        ev.ThresholdCrossed,
        ev.AlertResolved,
        ev.SupplyReplaced,
    ):
        assert issubclass(cls, ev.SequencedEvent)
        assert "seq" not in ev.json_schemas()[
            f"{cls.model_fields['type'].default.split('.')[1]}.json"
        ].get("required", [])
