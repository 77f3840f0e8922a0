"""Fuzzing what a device sends (hypothesis): the BER decoder and the printer model never fail badly.

- decode_response / decode_header, fed any bytes or mutations of real responses (built from our
  hostile recordings), return a Response or raise BerError (the UDP client turns that into
  SnmpProtocolError) and nothing else; what they return is bounded by the input's size.
- parse_supplies / parse_snapshot, fed any OID -> value mapping over the Printer-MIB columns (huge
  and negative integers, long texts, raw bytes, exceptions), never raise and give values within
  the clamps of printer/clamp.py (levels in BIGINT, percent 0..100, <= MAX_ROWS rows, texts cut
  ending in TRUNCATED, no control characters), and clamping that again changes nothing.

Bounded: max_examples per test, deadline off, no timed assertions. The example database (failures
ever found) is kept in shared/tests/fuzz/ and replayed first on every run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from tonerwatch_shared.printer.clamp import (
    _CONTROL,
    IDENTITY_LIMITS,
    MAX_ROWS,
    MAX_STORED_INT,
    MIN_STORED_INT,
    RFC3805_SPECIAL,
    SUPPLY_LIMITS,
    TRUNCATED,
    _clamp_parts,
    clamp_snapshot,
    fit_text,
)
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterAlert,
    PrinterIdentity,
    PrinterSnapshot,
    PrinterStatus,
    Supply,
    Tray,
)
from tonerwatch_shared.printer.oids import POLL_COLUMNS, POLL_SCALARS
from tonerwatch_shared.printer.parse import parse_snapshot, parse_supplies
from tonerwatch_shared.snmp.ber import (
    RESPONSE,
    BerError,
    Response,
    _decode_response_by_tlv,
    _decode_response_in_one_pass,
    decode_header,
    decode_response,
    encode_integer,
    encode_oid,
    tlv,
)
from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.types import IpAddress, Missing, Oid, SnmpValue

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
CORPUS = DirectoryBasedExampleDatabase(str(Path(__file__).parent / "fuzz"))
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=CORPUS,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ABSURD = load_snmprec(HOSTILE / "absurd-values.snmprec")
PHANTOM = load_snmprec(HOSTILE / "phantom-rows.snmprec")


# ----------------------------------------------------------------------------- BER decoder


def _value_tlv(value: SnmpValue) -> bytes:
    if isinstance(value, Missing):
        return {Missing.NO_SUCH_OBJECT: b"\x80\x00", Missing.NO_SUCH_INSTANCE: b"\x81\x00"}.get(
            value, b"\x82\x00"
        )
    if isinstance(value, Oid):
        return encode_oid(value)
    if isinstance(value, IpAddress):
        return tlv(0x40, bytes(int(p) for p in value.split(".")))
    if isinstance(value, int):
        if value >= 0 and value.bit_length() > 63:  # Counter64 past a signed INTEGER
            return tlv(0x46, value.to_bytes((value.bit_length() + 7) // 8, "big"))
        return encode_integer(value)
    return tlv(0x04, value)


def response_message(varbinds: list[tuple[str, SnmpValue]], rid: int = 0x1234) -> bytes:
    """An SNMPv2c Response message carrying varbinds, as an agent would send it."""
    vbl = b"".join(tlv(0x30, encode_oid(oid) + _value_tlv(v)) for oid, v in varbinds)
    pdu = tlv(
        RESPONSE, encode_integer(rid) + encode_integer(0) + encode_integer(0) + tlv(0x30, vbl)
    )
    return tlv(0x30, encode_integer(1) + tlv(0x04, b"public") + pdu)


def _chunks(values: dict[str, SnmpValue], size: int = 12) -> list[bytes]:
    items = list(values.items())
    return [response_message(items[i : i + size]) for i in range(0, min(len(items), 120), size)]


REAL_RESPONSES = _chunks(ABSURD) + _chunks(PHANTOM)[:3]


def _check_decoded(data: bytes) -> None:
    with contextlib.suppress(BerError):
        decode_header(data)
    try:
        one_pass = _decode_response_in_one_pass(data)
    except (BerError, IndexError):
        one_pass = None
    if one_pass is not None:  # what the one pass takes, it reads as the TLV-by-TLV reading does
        by_tlv = _decode_response_by_tlv(data)
        assert one_pass == by_tlv
        assert [type(v) for _, v in one_pass.varbinds] == [type(v) for _, v in by_tlv.varbinds]
    try:
        response = decode_response(data)
    except BerError:
        return
    assert isinstance(response, Response)
    # Each varbind costs at least 7 octets (SEQUENCE, OID of one octet, value): nothing invented.
    assert len(response.varbinds) * 7 <= len(data)
    assert len(response.community) <= len(data)
    for oid, _value in response.varbinds:
        assert len(oid.split(".")) <= 129


@FUZZ
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\x30\x80")  # indefinite length: SNMP forbids it
@example(b"\x30\x84\xff\xff\xff\xff")  # a length of 4 GiB in a 6-octet datagram
@example(response_message([("1.3.6.1.2.1.1.1.0", b"x")])[:-1])  # one octet short
def test_any_bytes_decode_or_raise_ber_error(data: bytes) -> None:
    _check_decoded(data)


@st.composite
def mutated_responses(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL_RESPONSES)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if action == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF]))
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and len(data) > 1:
            del data[pos]
        elif action == "truncate":
            del data[max(pos, 1) :]
    return bytes(data)


@FUZZ
@given(mutated_responses())
def test_mutated_real_responses_decode_or_raise_ber_error(data: bytes) -> None:
    _check_decoded(data)


oids = st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20).map(
    lambda arcs: "1.3." + ".".join(map(str, arcs))
)
snmp_values: st.SearchStrategy[SnmpValue] = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(2**63, 2**64 - 1),
    st.binary(max_size=300),
    st.sampled_from(list(Missing)),
    oids.map(Oid),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: IpAddress(".".join(map(str, t)))),
)


@FUZZ
@given(st.lists(st.tuples(oids, snmp_values), max_size=40))
@example([(oid, v) for oid, v in list(ABSURD.items())[:40]])
def test_well_formed_responses_decode_to_what_was_sent(
    varbinds: list[tuple[str, SnmpValue]],
) -> None:
    response = decode_response(response_message(varbinds))
    assert response.varbinds == varbinds


# ----------------------------------------------------------------------------- printer model

_SUFFIXES = st.one_of(
    st.sampled_from(["1", "1.1", "1.2", "1.64", "1.65", "2.1"]),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3).map(
        lambda a: ".".join(map(str, a))
    ),
)
_COLUMNS = sorted(
    {
        *POLL_COLUMNS,
        *(f"1.3.6.1.2.1.43.11.1.1.{c}" for c in range(1, 10)),
        "1.3.6.1.2.1.43.12.1.1.4",
    }
)
_SCALARS = sorted({*POLL_SCALARS, *(k for k in ABSURD if not k.startswith("1.3.6.1.2.1.43.11"))})
printer_oids = st.one_of(
    st.sampled_from(_SCALARS),
    st.builds(lambda col, idx: f"{col}.{idx}", st.sampled_from(_COLUMNS), _SUFFIXES),
    st.sampled_from(sorted(ABSURD)),
)
printer_values: st.SearchStrategy[SnmpValue] = st.one_of(
    st.integers(-5, 110),
    st.integers(-(2**70), 2**70),
    st.sampled_from(
        [-3, -2, -1, 0, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63) - 1]
    ),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.text(min_size=200, max_size=3000).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=80),
    st.sampled_from([b"-1", b"42", b"\x1b[2J", b"\xff\xfe", b"MFG:HP;MDL:M404;"]),
    st.sampled_from(list(Missing)),
    oids.map(Oid),
)
walks = st.dictionaries(printer_oids, printer_values, max_size=120)


def _assert_supply_fits(supply: Supply) -> None:
    for name, limit in SUPPLY_LIMITS.items():
        text = getattr(supply, name)
        if text is not None:
            assert len(text) <= limit, (name, len(text))
            assert not _CONTROL.search(text), name
    for value in (supply.level, supply.max_capacity):
        assert value is None or MIN_STORED_INT <= value <= MAX_STORED_INT
    assert (
        supply.max_capacity is None
        or supply.max_capacity >= 0
        or supply.max_capacity in RFC3805_SPECIAL
    )
    assert supply.percent is None or 0.0 <= supply.percent <= 100.0
    assert supply.pages_left is None or 0 <= supply.pages_left <= MAX_STORED_INT
    assert len(supply.flags) <= MAX_ROWS


@FUZZ
@given(walks)
@example(dict(ABSURD))
@example(dict(PHANTOM))
@example({"1.3.6.1.2.1.43.11.1.1.9.1.1": 2**64, "1.3.6.1.2.1.43.11.1.1.8.1.1": -(2**70)})
@example({"1.3.6.1.2.1.43.11.1.1.6.1.1": b"x" * 5000, "1.3.6.1.2.1.43.11.1.1.9.1.1": 50})
def test_any_walk_gives_supplies_within_the_clamps(values: dict[str, SnmpValue]) -> None:
    supplies = parse_supplies(values)
    assert len(supplies) <= MAX_ROWS
    for supply in supplies:
        _assert_supply_fits(supply)


@FUZZ
@given(walks)
@example(dict(ABSURD))
@example(dict(PHANTOM))
# Found by this test: a level below BIGINT was dropped, and clamping again noted "level None is
# no RFC 3805 value": clamp_snapshot was not idempotent.
@example({"1.3.6.1.2.1.43.11.1.1.9.1": -(2**63) - 1})
def test_any_walk_gives_a_snapshot_within_the_clamps_and_clamping_is_idempotent(
    values: dict[str, SnmpValue],
) -> None:
    snapshot = parse_snapshot(values)
    assert len(snapshot.supplies) <= MAX_ROWS
    assert len(snapshot.trays) <= MAX_ROWS
    assert len(snapshot.missing) <= MAX_ROWS
    for supply in snapshot.supplies:
        _assert_supply_fits(supply)
    for name, limit in IDENTITY_LIMITS.items():
        text = getattr(snapshot.printer, name)
        assert text is None or (len(text) <= limit and not _CONTROL.search(text)), name
    assert clamp_snapshot(snapshot) == snapshot
    # The parsers must cope with what they are given, not fall back on _safe.
    assert not [m for m in snapshot.missing if m.endswith("(unparseable)")], snapshot.missing


@FUZZ
@given(st.text(max_size=600), st.integers(2, 300))
@example("x" * 3000, 255)
@example("\x1b[2J" + "é" * 300, 64)
def test_long_texts_are_cut_to_their_limit_ending_in_the_mark(text: str, limit: int) -> None:
    fitted, changed = fit_text(text, limit)
    assert fitted is not None
    assert len(fitted) <= limit
    assert not _CONTROL.search(fitted)
    if len(text) > limit:
        assert len(fitted) == limit and fitted.endswith(TRUNCATED)
    else:
        assert len(fitted) == len(text)
    assert bool(changed) == (fitted != text)
    assert fit_text(fitted, limit) == (fitted, [])


# Parts as a producer may send them, unclamped: texts too long or with controls, integers beyond
# BIGINT, RFC 3805's specials, percents out of range or NaN, too many rows.
_texts = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.text(min_size=60, max_size=300),
    st.sampled_from(["\x1b[2J", "a\x00b", "\u00a0", "é", "\x85", ""]),
)
_words = st.lists(st.one_of(st.text(max_size=8), st.text(min_size=60, max_size=90)), max_size=3)
_ints = st.one_of(
    st.none(),
    st.integers(-5, 110),
    st.sampled_from([-100, -3, -2, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
)
_percents = st.one_of(st.none(), st.floats(-5, 105), st.just(float("nan")))
_supplies = st.builds(
    Supply.model_construct,
    index=st.text(max_size=70),
    description=st.text(max_size=300),
    part_number=_texts,
    colour=_texts,
    colour_hex=_texts,
    unit=_texts,
    level=_ints,
    max_capacity=_ints,
    percent=_percents,
    flags=st.one_of(_words, st.just(["invalid_level"])).map(tuple),
    source=st.text(max_size=70),
    pages_left=_ints,
)
_trays = st.builds(
    Tray.model_construct,
    index=st.text(max_size=70),
    name=st.text(max_size=300),
    level=_ints,
    max_capacity=_ints,
    percent=_percents,
    media=_texts,
)
_snapshots = st.builds(
    PrinterSnapshot.model_construct,
    printer=st.builds(PrinterIdentity.model_construct, vendor=_texts, model=_texts, serial=_texts),
    supplies=st.one_of(
        st.lists(_supplies, max_size=3), st.just([Supply(index="1", description="x")] * 65)
    ).map(tuple),
    trays=st.lists(_trays, max_size=2).map(tuple),
    counters=st.builds(
        Counters.model_construct,
        lifetime_pages=_ints,
        mono_pages=_ints,
        per_marker=st.dictionaries(st.text(max_size=70), st.integers(-2, 2**64), max_size=2),
    ),
    status=st.builds(
        PrinterStatus.model_construct,
        device_status=_texts,
        status_text=_texts,
        errors=_words.map(tuple),
        alerts=st.lists(
            st.builds(PrinterAlert.model_construct, index=st.text(max_size=70), severity=_texts),
            max_size=2,
        ).map(tuple),
    ),
    missing=_words.map(tuple),
)


@FUZZ
@given(_snapshots)
def test_a_snapshot_that_fits_is_what_clamping_it_part_by_part_gives(
    snapshot: PrinterSnapshot,
) -> None:
    # clamp_snapshot returns a snapshot its quick check finds fitting as it is: that must be what
    # clamping every part (the reference) gives, anomalies included.
    assert clamp_snapshot(snapshot) == _clamp_parts(snapshot)


# A fitting snapshot with one value off: the quick check must see each on its own.
_tame = st.builds(
    PrinterSnapshot,
    printer=st.builds(PrinterIdentity, vendor=st.sampled_from(["HP", None]), serial=st.just("S1")),
    supplies=st.lists(
        st.builds(
            Supply,
            index=st.sampled_from(["1", "1.2"]),
            description=st.just("Black Toner"),
            level=st.integers(0, 100),
            max_capacity=st.sampled_from([100, -2, None]),
            percent=st.one_of(st.none(), st.floats(0, 100)),
            pages_left=st.one_of(st.none(), st.integers(0, 10**6)),
            flags=st.sampled_from([(), ("clamped",)]),
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
    trays=st.lists(
        st.builds(Tray, index=st.just("1"), name=st.just("Tray 1")), min_size=1, max_size=2
    ).map(tuple),
    counters=st.builds(Counters, lifetime_pages=st.integers(0, 10**6)),
    status=st.builds(PrinterStatus, errors=st.sampled_from([(), ("low_toner",)])),
)
_LONG, _ESC = "x" * 1100, "a\x1bb"
_OFF: list[tuple[str, str, object]] = [
    ("printer", "model", _LONG),
    ("printer", "sys_descr", _ESC),
    ("supply", "index", _LONG),
    ("supply", "description", _ESC),
    ("supply", "colour_hex", "#" * 17),
    ("supply", "level", 2**63),
    ("supply", "level", -(2**63) - 1),
    ("supply", "level", 101),  # above max capacity 100 (noted) or fitting
    ("supply", "max_capacity", -5),
    ("supply", "max_capacity", 2**64),
    ("supply", "percent", float("nan")),
    ("supply", "percent", 100.5),
    ("supply", "percent", -0.5),
    ("supply", "pages_left", -1),
    ("supply", "pages_left", 2**63),
    ("supply", "flags", ("x" * 65,)),
    ("supply", "flags", ("invalid_level",)),
    ("supply", "flags", ("f",) * 65),
    ("tray", "name", _ESC),
    ("tray", "level", -4),
    ("tray", "max_capacity", 2**63),
    ("tray", "percent", 101.0),
    ("counters", "mono_pages", -1),
    ("counters", "per_marker", {"x" * 65: 1}),
    ("counters", "per_marker", {"k": -1}),
    ("status", "status_text", "\x00"),
    ("status", "errors", ("e\x07",)),
    ("status", "alerts", (PrinterAlert(index="1", severity="s" * 33),)),
    ("missing", "", ("m" * 256,)),
    ("supplies", "", "65 rows"),
]


@FUZZ
@given(_tame, st.sampled_from(_OFF))
def test_one_value_off_is_clamped_as_part_by_part(
    snapshot: PrinterSnapshot, off: tuple[str, str, object]
) -> None:
    part, field, value = off

    def with_(model: Any) -> Any:
        return model.model_copy(update={field: value})

    if part == "printer":
        snapshot = snapshot.model_copy(update={"printer": with_(snapshot.printer)})
    elif part == "supply":
        supplies = (with_(snapshot.supplies[0]), *snapshot.supplies[1:])
        snapshot = snapshot.model_copy(update={"supplies": supplies})
    elif part == "tray":
        snapshot = snapshot.model_copy(update={"trays": (with_(snapshot.trays[0]),)})
    elif part in ("counters", "status"):
        snapshot = snapshot.model_copy(update={part: with_(getattr(snapshot, part))})
    elif part == "missing":
        snapshot = snapshot.model_copy(update={"missing": value})
    else:
        snapshot = snapshot.model_copy(update={"supplies": snapshot.supplies * 65})
    assert clamp_snapshot(snapshot) == _clamp_parts(snapshot)
