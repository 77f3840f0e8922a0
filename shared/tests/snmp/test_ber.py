"""The BER codec against pysnmp's own encoder."""

from __future__ import annotations

import random

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from tonerwatch_shared.snmp.ber import (
    GET_BULK_REQUEST,
    GET_NEXT_REQUEST,
    GET_REQUEST,
    VERSION_1,
    VERSION_2C,
    BerError,
    _decode_response_by_tlv,
    _decode_response_in_one_pass,
    _get_frame,
    _pdu_frame,
    decode_response,
    encode_integer,
    encode_oid,
    encode_request,
    tlv,
)
from tonerwatch_shared.snmp.types import IpAddress, Missing, Oid

SUPPLY_LEVELS = [f"1.3.6.1.2.1.43.11.1.1.9.1.{i}" for i in range(1, 31)]


def _pysnmp_message(
    version: int,
    pdu_cls: str,
    rid: int,
    varbinds: list[tuple[str, object]],
    community: str = "public",
    **extra: int,
) -> bytes:
    p = api.PROTOCOL_MODULES[version]
    pdu = getattr(p, pdu_cls)()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, rid)
    if "non_repeaters" in extra:
        p.apiBulkPDU.set_non_repeaters(pdu, extra["non_repeaters"])
        p.apiBulkPDU.set_max_repetitions(pdu, extra["max_repetitions"])
    p.apiPDU.set_varbinds(pdu, varbinds)
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


@pytest.mark.parametrize("rid", [0x01000000, 0x12345678, 0x7FFFFFFF])
@pytest.mark.parametrize(
    ("version", "tag", "cls"),
    [
        (VERSION_1, GET_REQUEST, "GetRequestPDU"),
        (VERSION_1, GET_NEXT_REQUEST, "GetNextRequestPDU"),
        (VERSION_2C, GET_REQUEST, "GetRequestPDU"),
        (VERSION_2C, GET_NEXT_REQUEST, "GetNextRequestPDU"),
    ],
)
def test_get_requests_match_pysnmp_byte_for_byte(
    version: int, tag: int, cls: str, rid: int
) -> None:
    p = api.PROTOCOL_MODULES[version]
    ours = encode_request(version, b"public", tag, rid, SUPPLY_LEVELS)
    theirs = _pysnmp_message(version, cls, rid, [(o, p.Null("")) for o in SUPPLY_LEVELS])
    assert ours == theirs


def test_getbulk_request_matches_pysnmp_byte_for_byte() -> None:
    p = api.PROTOCOL_MODULES[VERSION_2C]
    oids = ["1.3.6.1.2.1.1.1", "1.3.6.1.2.1.43.11.1.1", "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.8"]
    ours = encode_request(
        VERSION_2C, b"jetdirect_m252dw", GET_BULK_REQUEST, 0x2000_0001, oids, 1, 25
    )
    theirs = _pysnmp_message(
        VERSION_2C,
        "GetBulkRequestPDU",
        0x2000_0001,
        [(o, p.Null("")) for o in oids],
        "jetdirect_m252dw",
        non_repeaters=1,
        max_repetitions=25,
    )
    assert ours == theirs


def test_set_and_v1_getbulk_are_refused() -> None:
    with pytest.raises(BerError, match="read-only"):
        encode_request(VERSION_2C, b"public", 0xA3, 1, ["1.3.6.1.2.1.1.5.0"])
    with pytest.raises(BerError, match="SNMPv1"):
        encode_request(VERSION_1, b"public", GET_BULK_REQUEST, 1, ["1.3.6.1.2.1.1.5.0"])


def _encoded_whole(
    version: int, community: bytes, tag: int, rid: int, oids: list[str], nr: int, mr: int
) -> bytes:
    """The request encoded element by element, as encode_request did before its PDU was kept."""
    varbinds = tlv(0x30, b"".join(tlv(0x30, encode_oid(o) + b"\x05\x00") for o in oids))
    ints = encode_integer(rid) + encode_integer(nr) + encode_integer(mr)
    pdu = tlv(tag, ints + varbinds)
    return tlv(0x30, encode_integer(version) + tlv(0x04, community) + pdu)


def test_requests_from_the_kept_pdu_are_those_encoded_element_by_element() -> None:
    # Request ids of every width (1 to 5 octets, negative ones), communities and PDUs with
    # short- and long-form lengths, every request type, v1 and v2c: byte for byte the same.
    rng = random.Random(15)
    oid_lists = [SUPPLY_LEVELS[:n] for n in (1, 3, 9, 30)] + [
        [f"1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.{i}.0" for i in range(1, 12)]
    ]
    rids = [0, 1, -1, 127, 128, -128, -129, 255, 256, 0x7FFF, 0x8000, 0x7FFFFF, 0x800000]
    rids += [0x00FFFFFF, 0x01000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, -(2**31)]
    rids += [rng.randrange(-(2**31), 2**32) for _ in range(200)]
    communities = [b"", b"public", b"jetdirect_m252dw", b"c" * 127, b"c" * 128, b"c" * 300]
    kinds = [(VERSION_1, GET_REQUEST), (VERSION_1, GET_NEXT_REQUEST)]
    kinds += [(VERSION_2C, GET_REQUEST), (VERSION_2C, GET_NEXT_REQUEST)]
    kinds += [(VERSION_2C, GET_BULK_REQUEST)]
    for rid in rids:
        version, tag = rng.choice(kinds)
        community, oids = rng.choice(communities), rng.choice(oid_lists)
        nr, mr = (
            (rng.randrange(3), rng.choice([10, 25, 200])) if tag == GET_BULK_REQUEST else (0, 0)
        )
        ours = encode_request(version, community, tag, rid, oids, nr, mr)
        assert ours == _encoded_whole(version, community, tag, rid, oids, nr, mr), (rid, tag)


def test_one_oid_list_sent_with_ids_of_every_width_decodes_with_pysnmp() -> None:
    # The steady poll's case: the same OIDs again and again, only the request id new; an id whose
    # content needs more or fewer octets makes every length around it change.
    p = api.PROTOCOL_MODULES[VERSION_2C]
    for rid in (0x01000000, 0x7FFFFFFF, 5, 0x80, 0x7FFF, 0x8000, 0x01000000, -7, 0x12345678):
        data = encode_request(VERSION_2C, b"brother", GET_REQUEST, rid, SUPPLY_LEVELS)
        message, rest = decoder.decode(data, asn1Spec=p.Message())
        assert rest == b""
        pdu = p.apiMessage.get_pdu(message)
        assert int(p.apiPDU.get_request_id(pdu)) == rid
        assert bytes(p.apiMessage.get_community(message)) == b"brother"
        assert [str(o) for o, _ in p.apiPDU.get_varbinds(pdu)] == SUPPLY_LEVELS


def test_the_kept_pdu_is_only_ever_a_read_and_holds_no_community() -> None:
    with pytest.raises(BerError, match="read-only"):
        _pdu_frame(0xA3, 4, ("1.3.6.1.2.1.1.5.0",), 0, 0)  # SET: refused there too
    # What is kept does not depend on the community (a sealed one is opened per request only).
    a = encode_request(VERSION_2C, b"s3cret-one", GET_REQUEST, 0x01000001, SUPPLY_LEVELS[:2])
    b = encode_request(VERSION_2C, b"public", GET_REQUEST, 0x01000001, SUPPLY_LEVELS[:2])
    head, rest = _pdu_frame(GET_REQUEST, 4, tuple(SUPPLY_LEVELS[:2]), 0, 0)
    assert a.endswith(head + (0x01000001).to_bytes(4, "big") + rest)
    assert b.endswith(head + (0x01000001).to_bytes(4, "big") + rest)
    assert b"s3cret" not in head + rest


def test_only_a_get_frame_is_kept_a_walk_step_is_not() -> None:
    kept = _get_frame.cache_info().currsize
    encode_request(
        VERSION_2C, b"public", GET_NEXT_REQUEST, 0x01000002, ["1.3.6.1.2.1.43.11.1.1.9.1.77"]
    )
    encode_request(
        VERSION_2C, b"public", GET_BULK_REQUEST, 0x01000003, ["1.3.6.1.2.1.43.11.1.1.9.1.78"], 0, 10
    )
    assert _get_frame.cache_info().currsize == kept
    encode_request(VERSION_2C, b"public", GET_REQUEST, 0x01000004, ["1.3.6.1.2.1.43.11.1.1.9.1.79"])
    assert _get_frame.cache_info().currsize == kept + 1


def test_response_with_every_value_type_decodes_like_pysnmp_encoded_it() -> None:
    p = api.PROTOCOL_MODULES[VERSION_2C]
    long_descr = b"HP ETHERNET MULTI-ENVIRONMENT," * 10  # long-form lengths
    varbinds = [
        ("1.3.6.1.2.1.1.1.0", p.OctetString(long_descr)),
        ("1.3.6.1.2.1.1.2.0", p.ObjectIdentifier("1.3.6.1.4.1.11.2.3.9.1")),
        ("1.3.6.1.2.1.1.3.0", p.TimeTicks(220329339)),
        ("1.3.6.1.2.1.43.11.1.1.9.1.1", p.Integer(-3)),  # RFC 3805: some remaining
        ("1.3.6.1.2.1.43.11.1.1.8.1.1", p.Integer(2147483647)),
        ("1.3.6.1.2.1.2.2.1.10.2", p.Counter32(4294967295)),
        ("1.3.6.1.2.1.2.2.1.5.2", p.Gauge32(10000000)),
        ("1.3.6.1.2.1.31.1.1.1.6.2", p.Counter64(2**64 - 1)),
        ("1.3.6.1.2.1.4.20.1.1.10.0.0.5", p.IpAddress("10.0.0.5")),
        ("1.3.6.1.2.1.2.2.1.6.2", p.OctetString(bytes.fromhex("3CA82AF638AC"))),
        ("1.3.6.1.2.1.25.3.5.1.1.1", p.NoSuchObject("")),
        ("1.3.6.1.2.1.25.3.5.1.2.1", p.NoSuchInstance("")),
        ("1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.8.0", p.EndOfMibView("")),
        ("1.3.6.1.4.1.4294967295.200", p.Integer(0)),  # large arcs
    ]
    data = _pysnmp_message(VERSION_2C, "GetResponsePDU", 0x7654321, varbinds, "brother")
    response = decode_response(data)
    assert (response.version, response.community, response.request_id) == (1, b"brother", 0x7654321)
    assert (response.error_status, response.error_index) == (0, 0)
    assert response.varbinds == [
        ("1.3.6.1.2.1.1.1.0", long_descr),
        ("1.3.6.1.2.1.1.2.0", Oid("1.3.6.1.4.1.11.2.3.9.1")),
        ("1.3.6.1.2.1.1.3.0", 220329339),
        ("1.3.6.1.2.1.43.11.1.1.9.1.1", -3),
        ("1.3.6.1.2.1.43.11.1.1.8.1.1", 2147483647),
        ("1.3.6.1.2.1.2.2.1.10.2", 4294967295),
        ("1.3.6.1.2.1.2.2.1.5.2", 10000000),
        ("1.3.6.1.2.1.31.1.1.1.6.2", 2**64 - 1),
        ("1.3.6.1.2.1.4.20.1.1.10.0.0.5", IpAddress("10.0.0.5")),
        ("1.3.6.1.2.1.2.2.1.6.2", bytes.fromhex("3CA82AF638AC")),
        ("1.3.6.1.2.1.25.3.5.1.1.1", Missing.NO_SUCH_OBJECT),
        ("1.3.6.1.2.1.25.3.5.1.2.1", Missing.NO_SUCH_INSTANCE),
        ("1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.8.0", Missing.END_OF_MIB_VIEW),
        ("1.3.6.1.4.1.4294967295.200", 0),
    ]
    assert isinstance(response.varbinds[1][1], Oid)


def test_a_steady_answer_is_decoded_in_one_pass_as_tlv_by_tlv() -> None:
    p = api.PROTOCOL_MODULES[VERSION_2C]
    varbinds = [
        ("1.3.6.1.2.1.1.3.0", p.TimeTicks(220329339)),
        ("1.3.6.1.2.1.43.11.1.1.9.1.1", p.Integer(-3)),
        ("1.3.6.1.2.1.43.11.1.1.9.1.2", p.Integer(200)),
        ("1.3.6.1.2.1.43.11.1.1.9.1.3", p.Integer(0)),
        ("1.3.6.1.2.1.43.10.2.1.4.1.1", p.Counter32(4294967295)),
        ("1.3.6.1.2.1.25.3.5.1.2.1", p.OctetString(b"\x00")),
        ("1.3.6.1.2.1.1.2.0", p.ObjectIdentifier("1.3.6.1.4.1.11.2.3.9.1")),
        ("1.3.6.1.2.1.25.3.2.1.5.1", p.NoSuchInstance("")),
    ]
    data = _pysnmp_message(VERSION_2C, "GetResponsePDU", 0x7654321, varbinds, "public")
    one_pass = _decode_response_in_one_pass(data)
    assert one_pass is not None  # the usual form: not left to the TLV-by-TLV reading
    assert one_pass == _decode_response_by_tlv(data) == decode_response(data)
    assert [v for _, v in one_pass.varbinds] == [
        220329339,
        -3,
        200,
        0,
        4294967295,
        b"\x00",
        Oid("1.3.6.1.4.1.11.2.3.9.1"),
        Missing.NO_SUCH_INSTANCE,
    ]
    # A varbind of more than 127 octets (long-form lengths): left to the TLV-by-TLV reading.
    long = [("1.3.6.1.2.1.1.1.0", p.OctetString(b"x" * 200))]
    data = _pysnmp_message(VERSION_2C, "GetResponsePDU", 1 << 24, long, "public")
    assert _decode_response_in_one_pass(data) is None
    assert decode_response(data).varbinds == [("1.3.6.1.2.1.1.1.0", b"x" * 200)]


def test_counter_without_leading_zero_from_a_sloppy_agent_is_unsigned() -> None:
    # Counter32 4294967295 sent as ff ff ff ff instead of 00 ff ff ff ff.
    p = api.PROTOCOL_MODULES[VERSION_2C]
    good = _pysnmp_message(
        VERSION_2C,
        "GetResponsePDU",
        0x1000000,
        [("1.3.6.1.2.1.2.2.1.10.2", p.Counter32(4294967295))],
    )
    sloppy = good.replace(b"\x41\x05\x00\xff\xff\xff\xff", b"\x41\x04\xff\xff\xff\xff")
    sloppy = bytes([sloppy[0], sloppy[1] - 1]) + sloppy[2:]
    # Fix the enclosing lengths (message, PDU, varbind list, varbind) by re-decoding with ours.
    with pytest.raises(BerError):
        decode_response(sloppy)  # lengths now inconsistent: rejected, not misread
    body = b"\x06\x0a" + bytes([0x2B, 6, 1, 2, 1, 2, 2, 1, 10, 2]) + b"\x41\x04\xff\xff\xff\xff"
    vb = b"\x30" + bytes([len(body)]) + body
    vbl = b"\x30" + bytes([len(vb)]) + vb
    pdu_body = b"\x02\x04\x01\x00\x00\x00\x02\x01\x00\x02\x01\x00" + vbl
    pdu = b"\xa2" + bytes([len(pdu_body)]) + pdu_body
    msg_body = b"\x02\x01\x01\x04\x06public" + pdu
    msg = b"\x30" + bytes([len(msg_body)]) + msg_body
    assert decode_response(msg).varbinds == [("1.3.6.1.2.1.2.2.1.10.2", 4294967295)]


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x30",
        b"\x30\x80\x02\x01\x01",  # indefinite length: not allowed in SNMP
        b"\x04\x03abc",
        bytes.fromhex("301002010104067075626c6963a0030201"),  # PDU cut inside
    ],
)
def test_malformed_messages_raise_ber_error(garbage: bytes) -> None:
    with pytest.raises(BerError):
        decode_response(garbage)


def test_truncated_response_raises_ber_error() -> None:
    p = api.PROTOCOL_MODULES[VERSION_2C]
    data = _pysnmp_message(
        VERSION_2C, "GetResponsePDU", 0x1000000, [(o, p.Integer(5)) for o in SUPPLY_LEVELS]
    )
    for cut in (len(data) - 1, len(data) // 2, 10):
        with pytest.raises(BerError):
            decode_response(data[:cut])
