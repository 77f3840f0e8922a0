"""SNMP: values, the client that reads them, and recordings."""

from tonerwatch_shared.snmp.client import SnmpClient
from tonerwatch_shared.snmp.errors import (
    IoStats,
    SnmpError,
    SnmpProtocolError,
    SnmpResponseError,
    SnmpTimeoutError,
)
from tonerwatch_shared.snmp.poll import PollPlan, PollResult, poll_printer
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import IpAddress, Missing, Oid, SnmpValue, VarBinds
from tonerwatch_shared.snmp.udp import UdpSnmpClient

__all__ = [
    "IoStats",
    "IpAddress",
    "Missing",
    "Oid",
    "PollPlan",
    "PollResult",
    "SnmpClient",
    "SnmpError",
    "SnmpProtocolError",
    "SnmpResponseError",
    "SnmpTarget",
    "SnmpTimeoutError",
    "SnmpValue",
    "UdpSnmpClient",
    "VarBinds",
    "poll_printer",
]
