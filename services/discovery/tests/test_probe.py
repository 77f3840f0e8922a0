"""The probe and the identifying GET, checked against the shared codec and real recordings (pure)."""

from __future__ import annotations

import bz2
from pathlib import Path

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message

from tonerwatch_discovery.identify import IDENTIFY_OIDS, identify_oids
from tonerwatch_discovery.probe import (
    answer_key,
    probe_order,
    probe_sys_object_id,
    probe_template,
)
from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.printer import oids
from tonerwatch_shared.printer.parse import parse_identity
from tonerwatch_shared.printer.profiles import registry
from tonerwatch_shared.snmp.ber import GET_REQUEST, VERSION_1, VERSION_2C, encode_request
from tonerwatch_shared.snmp.snmprec import load_snmprec, parse_snmprec_bytes
from tonerwatch_shared.snmp.types import Oid

from ._lab import OTHERS, other_device


@pytest.mark.parametrize("rid", [0x0080, 0x1234, 0x7FFF])
def test_v2c_public_probe_is_41_bytes_and_matches_the_codec(rid: int) -> None:
    template = probe_template(SnmpCredentials(community="public"))
    message = template.message(rid)
    assert len(message) == template.size == 41
    assert message == encode_request(VERSION_2C, b"public", GET_REQUEST, rid, [oids.SYS_OBJECT_ID])


def test_v1_probe_carries_version_0() -> None:
    message = probe_template(SnmpCredentials(version="1", community="private")).message(0x0102)
    assert message == encode_request(
        VERSION_1, b"private", GET_REQUEST, 0x0102, [oids.SYS_OBJECT_ID]
    )


def test_v3_probe_is_an_unauthenticated_discovery_message() -> None:
    template = probe_template(
        SnmpCredentials(version="3", user="ops", auth_protocol="SHA", auth_key="k" * 8)
    )
    message = template.message(0x0A0B)
    decoded, rest = decoder.decode(message, asn1Spec=SNMPv3Message())
    assert rest == b"" and len(message) <= 64
    assert int(decoded["msgVersion"]) == 3
    assert int(decoded["msgGlobalData"]["msgID"]) == 0x0A0B
    assert bytes(decoded["msgGlobalData"]["msgFlags"]) == b"\x04"  # reportable, no auth, no priv
    assert b"ops" not in message and b"k" * 8 not in message  # no secret on the wire
    assert answer_key(message) == 0x0A0B


def test_answer_key_reads_a_response_request_id_and_ignores_requests() -> None:
    request = probe_template(SnmpCredentials()).message(0x01AB)
    response = request.replace(b"\xa0", b"\xa2", 1)
    assert answer_key(response) == 0x01AB
    assert answer_key(request) is None
    assert answer_key(b"\x30\x03garbage") is None


def test_probe_answer_gives_sys_object_id() -> None:
    # The Response an agent sends, encoded by pysnmp's own v2c protocol module.
    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = v2c.GetResponsePDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, 0x0101)
    v2c.apiPDU.set_varbinds(
        pdu, [(oids.SYS_OBJECT_ID, v2c.ObjectIdentifier("1.3.6.1.4.1.11.2.3.9.1"))]
    )
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, "public")
    v2c.apiMessage.set_pdu(message, pdu)
    data = encoder.encode(message)
    assert answer_key(data) == 0x0101
    assert probe_sys_object_id(data) == Oid("1.3.6.1.4.1.11.2.3.9.1")


def _identify_view(values: dict[str, object], sys_object_id: str | None) -> dict[str, object]:
    asked = identify_oids(sys_object_id)
    view = {o: values[o] for o in asked if o in values}
    if sys_object_id is not None:
        view[oids.SYS_OBJECT_ID] = Oid(sys_object_id)
    return view


def test_every_recorded_printer_is_a_printer_from_the_identifying_get(
    printer_walks_dir: Path,
) -> None:
    for path in sorted(printer_walks_dir.glob("*.snmprec")):
        values = load_snmprec(path)
        sys_oid = values.get(oids.SYS_OBJECT_ID)
        view = _identify_view(dict(values), str(sys_oid) if isinstance(sys_oid, str) else None)
        if not parse_identity(values).is_printer:
            continue  # the parser itself cannot tell from the whole walk
        assert parse_identity(view).is_printer, path.name  # type: ignore[arg-type]


def test_hp_m252dw_identified_with_model_serial_and_mac(printer_walks_dir: Path) -> None:
    values = dict(load_snmprec(printer_walks_dir / "jetdirect_m252dw.snmprec"))
    identity = parse_identity(_identify_view(values, "1.3.6.1.4.1.11.2.3.9.1"))  # type: ignore[arg-type]
    assert (identity.vendor, identity.model, identity.serial) == (
        "HP",
        "Color LaserJet Pro M252dw",
        "VNB3J99999",
    )
    assert identity.mac_address == "3c:a8:2a:f6:38:ac"


def test_brother_hl_l2340dw_needs_its_private_device_id(printer_walks_dir: Path) -> None:
    values = dict(load_snmprec(printer_walks_dir / "brother_hl-l2340dw.snmprec"))
    assert oids.SYS_OBJECT_ID not in values  # the probe gets noSuchObject: the full GET is asked
    assert registry.DEVICE_ID_OIDS[1] in identify_oids(None)
    identity = parse_identity(_identify_view(values, None))  # type: ignore[arg-type]
    assert identity.is_printer and identity.model == "HL-L2340DW"


@pytest.mark.parametrize("name", sorted(OTHERS.values()))
def test_switch_linux_host_and_ups_are_not_printers(name: str) -> None:
    path = other_device(name)
    data = path.read_bytes()
    values = parse_snmprec_bytes(bz2.decompress(data) if path.suffix == ".bz2" else data)
    sys_oid = values.get(oids.SYS_OBJECT_ID)
    view = _identify_view(dict(values), str(sys_oid) if isinstance(sys_oid, str) else None)
    # The Linux host (slackware) lists a CUPS queue as hrDevicePrinter at a later index: a print
    # server, not a printer; the identifying GET (device row 1) rightly does not offer it.
    assert not parse_identity(view).is_printer  # type: ignore[arg-type]


def test_manual_add_get_asks_sys_object_id_itself() -> None:
    assert oids.SYS_OBJECT_ID in IDENTIFY_OIDS
    assert oids.SYS_OBJECT_ID not in identify_oids("1.3.6.1.4.1.11.2.3.9.1")


def test_silent_addresses_get_one_v3_probe_whatever_the_number_of_v3_users() -> None:
    v2c = SnmpCredentials(community="public")
    v3a = SnmpCredentials(version="3", user="ops")
    v3b = SnmpCredentials(version="3", user="audit")
    other = SnmpCredentials(community="hq-private")
    templates = [probe_template(c) for c in (v2c, v3a, v3b, other)]
    # public -> v3 (ops) -> hq-private: the engine-discovery probe is the same for "audit".
    assert probe_order(templates) == [1, 3, 3, None]
    assert probe_order([probe_template(v3b), probe_template(v3a)]) == [None, None]
