"""SNMPv3 (USM auth/priv) through pysnmp's asyncio high-level API: one engine, cached transports."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pyasn1.type import univ
from pysnmp.hlapi.v3arch.asyncio import (
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    next_cmd,
)
from pysnmp.hlapi.v3arch.asyncio import auth as _auth
from pysnmp.proto import rfc1902, rfc1905

from tonerwatch_shared.snmp.base import SnmpProtocol, VarBindList
from tonerwatch_shared.snmp.errors import (
    IoStats,
    SnmpError,
    SnmpResponseError,
    SnmpTimeoutError,
)
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import IpAddress, Missing, Oid, SnmpValue

AUTH_PROTOCOLS = {
    "MD5": _auth.USM_AUTH_HMAC96_MD5,
    "SHA": _auth.USM_AUTH_HMAC96_SHA,
    "SHA224": _auth.USM_AUTH_HMAC128_SHA224,
    "SHA256": _auth.USM_AUTH_HMAC192_SHA256,
    "SHA384": _auth.USM_AUTH_HMAC256_SHA384,
    "SHA512": _auth.USM_AUTH_HMAC384_SHA512,
}
PRIV_PROTOCOLS = {
    "DES": _auth.USM_PRIV_CBC56_DES,
    "3DES": _auth.USM_PRIV_CBC168_3DES,
    "AES": _auth.USM_PRIV_CFB128_AES,
    "AES128": _auth.USM_PRIV_CFB128_AES,
    "AES192": _auth.USM_PRIV_CFB192_AES,
    "AES256": _auth.USM_PRIV_CFB256_AES,
}
_MISSING = {
    rfc1905.NoSuchObject.tagSet: Missing.NO_SUCH_OBJECT,
    rfc1905.NoSuchInstance.tagSet: Missing.NO_SUCH_INSTANCE,
    rfc1905.EndOfMibView.tagSet: Missing.END_OF_MIB_VIEW,
}


def to_snmp_value(value: Any) -> SnmpValue:
    """A pysnmp/pyasn1 value as an SnmpValue."""
    missing = _MISSING.get(value.tagSet)
    if missing is not None:
        return missing
    if value.tagSet == rfc1902.IpAddress.tagSet:
        return IpAddress(".".join(str(b) for b in value.asOctets()))
    if isinstance(value, univ.ObjectIdentifier):
        return Oid(".".join(str(a) for a in value))
    if isinstance(value, univ.OctetString):  # also Opaque, Bits
        return bytes(value.asOctets())
    if isinstance(value, univ.Null):
        return Missing.NO_SUCH_OBJECT
    return int(value)


class V3SnmpClient(SnmpProtocol):
    """SNMPv3 client: one SnmpEngine for all targets, one transport per target, no MIB lookups."""

    def __init__(self, max_in_flight: int = 32) -> None:
        self._engine = SnmpEngine()
        self._semaphore = asyncio.Semaphore(max_in_flight)
        self._transports: dict[tuple[str, int, float, int], UdpTransportTarget] = {}

    async def close(self) -> None:
        """Closes the engine's sockets."""
        self._engine.close_dispatcher()
        self._transports.clear()

    async def _transport(self, target: SnmpTarget) -> UdpTransportTarget:
        key = (target.host, target.port, target.timeout, target.retries)
        transport = self._transports.get(key)
        if transport is None:
            # create() resolves the name in a thread: once per target, not per request.
            transport = await UdpTransportTarget.create(
                target.address, timeout=target.timeout, retries=target.retries
            )
            self._transports[key] = transport
        return transport

    @staticmethod
    def _user(target: SnmpTarget) -> UsmUserData:
        return UsmUserData(
            target.user or "",
            authKey=target.auth_key,
            privKey=target.priv_key,
            authProtocol=AUTH_PROTOCOLS[target.auth_protocol]
            if target.auth_protocol
            else _auth.USM_AUTH_NONE,
            privProtocol=PRIV_PROTOCOLS[target.priv_protocol]
            if target.priv_protocol
            else _auth.USM_PRIV_NONE,
        )

    @staticmethod
    def _context(target: SnmpTarget) -> ContextData:
        # snmpsim selects a recording by context name; real agents use the default context.
        return ContextData(contextName=target.community if target.community != "public" else "")

    async def _run(
        self,
        target: SnmpTarget,
        command: Any,
        oids: Sequence[str],
        stats: IoStats | None,
        *args: int,
    ) -> VarBindList:
        transport = await self._transport(target)
        binds = [ObjectType(ObjectIdentity(o)) for o in oids]
        async with self._semaphore:
            error_indication, error_status, error_index, var_binds = await command(
                self._engine,
                self._user(target),
                transport,
                self._context(target),
                *args,
                *binds,
                lookupMib=False,
            )
        if stats is not None:
            stats.requests += 1
            stats.round_trips += 1
        if error_indication:
            text = str(error_indication)
            if "timeout" in text.lower() or "no snmp response" in text.lower():
                raise SnmpTimeoutError(f"{target}: {text}")
            raise SnmpError(f"{target}: {text}")
        if stats is not None:
            stats.responses += 1
        if int(error_status):
            i = int(error_index)
            raise SnmpResponseError(
                str(target), int(error_status), i, oids[i - 1] if 0 < i <= len(oids) else None
            )
        return [(".".join(str(a) for a in name), to_snmp_value(value)) for name, value in var_binds]

    async def get(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> dict[str, SnmpValue]:
        """The values of these exact OIDs (Missing where the agent has none)."""
        return dict(await self._run(target, get_cmd, list(dict.fromkeys(oids)), stats))

    async def get_next(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> VarBindList:
        """The next OID and value after each of these, in order."""
        return await self._run(target, next_cmd, oids, stats)

    async def get_bulk(
        self,
        target: SnmpTarget,
        oids: Sequence[str],
        non_repeaters: int,
        max_repetitions: int,
        *,
        stats: IoStats | None = None,
    ) -> VarBindList:
        """The raw GETBULK answer: non-repeaters first, then rows of repeaters."""
        return await self._run(target, bulk_cmd, oids, stats, non_repeaters, max_repetitions)
