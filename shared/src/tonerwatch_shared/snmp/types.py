"""SNMP values as plain Python: the seam between the wire (I/O) and the printer model (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum


class Oid(str):
    """An OBJECT IDENTIFIER value, dotted, without a leading dot ("1.3.6.1.4.1.11")."""

    __slots__ = ()


class IpAddress(str):
    """An IpAddress value, dotted quad."""

    __slots__ = ()


class Missing(Enum):
    """SNMPv2 exceptions in a varbind: the agent answered, but has no such value."""

    NO_SUCH_OBJECT = "noSuchObject"
    NO_SUCH_INSTANCE = "noSuchInstance"
    END_OF_MIB_VIEW = "endOfMibView"


# int covers INTEGER, Counter32/64, Gauge32, TimeTicks; bytes is OCTET STRING as sent.
SnmpValue = int | bytes | Oid | IpAddress | Missing
VarBinds = Mapping[str, SnmpValue]
