"""The sweep's probe: one small SNMP GET encoded once per credential set, only the request-id patched (pure).

v1/v2c: GET sysObjectID.0 with the community (41 bytes with "public"). v3: the engine-discovery
message of RFC 3414 section 4 (no user, reportable, empty varbind list), which every v3 agent answers
with a Report whatever users it has; no secret goes on the wire for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.printer import oids
from tonerwatch_shared.snmp.ber import (
    GET_REQUEST,
    REPORT,
    RESPONSE,
    VERSION_1,
    VERSION_2C,
    BerError,
    decode_header,
    decode_response,
    encode_integer,
    encode_request,
    tlv,
)
from tonerwatch_shared.snmp.types import Oid

# Request ids of exactly 2 content octets: every probe has the same size, 41 bytes with "public"
# (4-octet ids make it 43). 32,640 ids are plenty: a sweep keeps at most MAX_IN_FLIGHT probes
# waiting, and an answer must also come from the address its id was sent to.
RID_MIN = 0x0080
RID_MAX = 0x7FFF
RID_OCTETS = 2
MAX_IN_FLIGHT = 30000
_SENTINEL = 0x5A5A
_V3_MAX_SIZE = 65507


@dataclass(frozen=True, slots=True)
class ProbeTemplate:
    """A pre-encoded probe: the message is the request-id's 4 octets joined between the parts."""

    version: str
    parts: tuple[bytes, ...]

    def message(self, rid: int) -> bytes:
        """The probe carrying this request-id (RID_MIN..RID_MAX)."""
        return rid.to_bytes(RID_OCTETS, "big").join(self.parts)

    @property
    def size(self) -> int:
        """Bytes of SNMP payload per probe."""
        return sum(map(len, self.parts)) + RID_OCTETS * (len(self.parts) - 1)


def probe_template(credentials: SnmpCredentials) -> ProbeTemplate:
    """The probe for one credential set."""
    if credentials.version == "3":
        return ProbeTemplate("3", _v3_discovery_parts())
    version = VERSION_1 if credentials.version == "1" else VERSION_2C
    sample = encode_request(
        version, credentials.community.encode(), GET_REQUEST, _SENTINEL, [oids.SYS_OBJECT_ID]
    )
    end = decode_header(sample)[4]  # offset just after the request-id
    return ProbeTemplate(credentials.version, (sample[: end - RID_OCTETS], sample[end:]))


def probe_order(templates: Sequence[ProbeTemplate]) -> list[int | None]:
    """For each credential set, the next one whose probe a silent address gets (None: no more).

    Every v3 set shares one probe (engine discovery carries no user), so only the first v3 set is
    probed; when it answers, identification tries each v3 set from there on in order.
    """
    first_v3 = next((i for i, t in enumerate(templates) if t.version == "3"), None)
    probed = [i for i, t in enumerate(templates) if t.version != "3" or i == first_v3]
    order: list[int | None] = []
    for i in range(len(templates)):
        order.append(next((j for j in probed if j > i), None))
    return order


def _v3_discovery_parts() -> tuple[bytes, ...]:
    marker = _SENTINEL.to_bytes(RID_OCTETS, "big")
    global_data = tlv(
        0x30,
        tlv(0x02, marker) + encode_integer(_V3_MAX_SIZE) + tlv(0x04, b"\x04") + encode_integer(3),
    )
    usm = tlv(
        0x30,
        tlv(0x04, b"")
        + encode_integer(0)
        + encode_integer(0)
        + tlv(0x04, b"")
        + tlv(0x04, b"")
        + tlv(0x04, b""),
    )
    pdu = tlv(
        GET_REQUEST, tlv(0x02, marker) + encode_integer(0) + encode_integer(0) + tlv(0x30, b"")
    )
    scoped = tlv(0x30, tlv(0x04, b"") + tlv(0x04, b"") + pdu)
    message = tlv(0x30, encode_integer(3) + global_data + tlv(0x04, usm) + scoped)
    parts = tuple(message.split(marker))
    if len(parts) != 3:  # pragma: no cover - the sentinel appears exactly twice by construction
        raise AssertionError("v3 probe template")
    return parts


def _read_tl(data: bytes, pos: int) -> tuple[int, int, int]:
    """Tag, content start and content end of the TLV at pos."""
    if pos + 2 > len(data):
        raise BerError("truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4:
            raise BerError("bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise BerError("overrun")
    return tag, pos, pos + length


def answer_key(data: bytes) -> int | None:
    """The request-id (v1/v2c Response) or msgID (v3) an answer carries; None for anything else."""
    try:
        tag, pos, _end = _read_tl(data, 0)
        if tag != 0x30:
            return None
        tag, start, stop = _read_tl(data, pos)
        if tag != 0x02:
            return None
        version = int.from_bytes(data[start:stop], "big", signed=True)
        if version in (VERSION_1, VERSION_2C):
            _v, _community, pdu_tag, rid, _pos = decode_header(data)
            return rid if pdu_tag == RESPONSE else None
        if version == 3:
            tag, pos, _gend = _read_tl(data, stop)
            if tag != 0x30:
                return None
            tag, start, stop = _read_tl(data, pos)
            return int.from_bytes(data[start:stop], "big", signed=True) if tag == 0x02 else None
    except BerError:
        return None
    return None


def probe_sys_object_id(data: bytes) -> str | None:
    """The sysObjectID a v1/v2c probe answer carries, or None (v3 Report, error, malformed)."""
    try:
        response = decode_response(data)
    except BerError:
        return None
    if response.error_status or not response.varbinds:
        return None
    oid, value = response.varbinds[0]
    return str(value) if oid == oids.SYS_OBJECT_ID and isinstance(value, Oid) else None


__all__ = [
    "REPORT",
    "RID_MAX",
    "RID_MIN",
    "ProbeTemplate",
    "answer_key",
    "probe_order",
    "probe_template",
]
