"""SNMPv3 (USM auth/priv) through pysnmp's asyncio high-level API: one engine, cached transports."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyasn1.type import univ
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.error import PySnmpError
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
    SnmpAccessError,
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
# What an SNMPv3 report (or pysnmp's own check) means, by pysnmp's error-indication class name.
ACCESS_ERRORS = {
    "WrongDigest": "auth_failed",  # usmStatsWrongDigests: wrong auth key or protocol
    "AuthenticationFailure": "auth_failed",
    "AuthenticationError": "auth_failed",
    "UnknownUserName": "unknown_user",  # usmStatsUnknownUserNames
    "UnknownSecurityName": "unknown_user",
    "DecryptionError": "priv_failed",  # usmStatsDecryptionErrors: wrong privacy key or protocol
    "UnknownEngineID": "unknown_engine_id",  # usmStatsUnknownEngineIDs, after discovery
    "EngineIDMismatch": "unknown_engine_id",
    "UnsupportedSecurityLevel": "unsupported_security",  # usmStatsUnsupportedSecLevels
    "UnsupportedAuthProtocol": "unsupported_security",
    "UnsupportedPrivProtocol": "unsupported_security",
    "NoAuthentication": "unsupported_security",
    "NoEncryption": "unsupported_security",
    "NotInTimeWindow": "not_in_time_window",  # usmStatsNotInTimeWindows
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


@dataclass
class _Call:
    """One request in flight: whose counters its datagrams go to, and its request-ids."""

    stats: IoStats | None
    request_ids: list[int] = field(default_factory=list)


# The call whose coroutine is running: pysnmp sends the first datagram synchronously inside it.
_CURRENT_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "tonerwatch_snmp_v3_call", default=None
)
_SENT = "rfc3412.sendPdu"
# A response, or a report (engine-ID discovery, time window): both name the request-id.
_RECEIVED = ("rfc3412.receiveMessage:response", "rfc3412.prepareDataElements:internal")


class _CountingDispatcher(AsyncioDispatcher):  # type: ignore[misc]
    """pysnmp's asyncio dispatcher, noting each datagram's size while pysnmp handles it."""

    def __init__(self) -> None:
        super().__init__()
        self.incoming = 0

    def _callback_function(self, transport: Any, address: Any, message: Any) -> Any:
        # Synchronous down to the observers: they read the size of the message they see.
        self.incoming = len(message)
        try:
            return super()._callback_function(transport, address, message)
        finally:
            self.incoming = 0


def _address_key(address: Any) -> tuple[str, int] | None:
    try:
        return (str(address[0]), int(address[1]))
    except (TypeError, ValueError, IndexError):
        return None


def _request_id(pdu: Any) -> int | None:
    try:
        return int(pdu.getComponentByPosition(0))
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


class V3SnmpClient(SnmpProtocol):
    """SNMPv3 client: one SnmpEngine for all targets, one transport per target, no MIB lookups."""

    def __init__(self, max_in_flight: int = 32) -> None:
        self._engine = SnmpEngine()
        self._semaphore = asyncio.Semaphore(max_in_flight)
        self._transports: dict[tuple[str, int, float, int], UdpTransportTarget] = {}
        self._calls: dict[int, _Call] = {}
        self._last_call: dict[tuple[str, int] | None, _Call] = {}
        self._dispatcher: _CountingDispatcher | None = None
        self.totals = IoStats()
        """Counters over the client's lifetime (bytes are whole SNMPv3 messages)."""
        # pysnmp's observer sees every serialised message it sends (retries and engine-ID
        # discovery included) and every response or report it matches to a request.
        self._engine.observer.register_observer(self._observe, _SENT, *_RECEIVED)

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None:
            # Created inside the event loop, before pysnmp would make its own plain one.
            self._dispatcher = _CountingDispatcher()
            self._engine.register_transport_dispatcher(self._dispatcher)

    def _observe(self, _engine: Any, execpoint: str, variables: dict[str, Any], _ctx: Any) -> None:
        rid = _request_id(variables.get("pdu"))
        call = self._calls.get(rid) if rid is not None else None
        address = _address_key(variables.get("transportAddress"))
        if call is None and execpoint != _SENT:
            # Reports need not echo the request-id: the last call to that agent owns them.
            call = self._last_call.get(address)
        if execpoint == _SENT:
            size = len(variables.get("outgoingMessage") or b"")
            self.totals.bytes_sent += size
            if call is None:
                call = _CURRENT_CALL.get()
                if call is not None and rid is not None:
                    call.request_ids.append(rid)
                    self._calls[rid] = call
            if call is not None:
                self._last_call[address] = call
                if call.stats is not None:
                    call.stats.bytes_sent += size
        else:
            size = self._dispatcher.incoming if self._dispatcher is not None else 0
            self.totals.bytes_received += size
            if call is not None and call.stats is not None:
                call.stats.bytes_received += size

    async def close(self) -> None:
        """Closes the engine's sockets."""
        self._engine.close_dispatcher()
        self._dispatcher = None
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
        self._ensure_dispatcher()
        transport = await self._transport(target)
        binds = [ObjectType(ObjectIdentity(o)) for o in oids]
        call = _Call(stats)
        async with self._semaphore:
            token = _CURRENT_CALL.set(call)
            try:
                error_indication, error_status, error_index, var_binds = await command(
                    self._engine,
                    self._user(target),
                    transport,
                    self._context(target),
                    *args,
                    *binds,
                    lookupMib=False,
                )
            except PySnmpError as exc:
                # e.g. WrongValueError for a key under 8 characters: refused before anything is sent
                raise SnmpAccessError(
                    f"{target}: the SNMPv3 user, keys or protocols cannot be used "
                    f"({type(exc).__name__}; keys are at least 8 characters)",
                    "bad_credentials",
                ) from None
            finally:
                _CURRENT_CALL.reset(token)
                for rid in call.request_ids:
                    self._calls.pop(rid, None)
                for address, last in list(self._last_call.items()):
                    if last is call:
                        del self._last_call[address]
        self.totals.requests += 1
        if stats is not None:
            stats.requests += 1
            stats.round_trips += 1
        if error_indication:
            text = str(error_indication)
            access = ACCESS_ERRORS.get(type(error_indication).__name__)
            if access is not None:
                raise SnmpAccessError(f"{target}: {text}", access)
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
