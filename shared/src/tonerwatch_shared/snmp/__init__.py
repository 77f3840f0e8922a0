"""SNMP: values, the client that reads them, and recordings."""

from tonerwatch_shared.snmp.types import IpAddress, Missing, Oid, SnmpValue, VarBinds

__all__ = ["IpAddress", "Missing", "Oid", "SnmpValue", "VarBinds"]
