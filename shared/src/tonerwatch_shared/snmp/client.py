"""SnmpClient: one object for all targets, v1/v2c on the lean UDP client, v3 on pysnmp's engine."""

from __future__ import annotations

from collections.abc import Sequence

from tonerwatch_shared.snmp.base import SnmpProtocol, VarBindList
from tonerwatch_shared.snmp.errors import IoStats
from tonerwatch_shared.snmp.target import SnmpTarget
from tonerwatch_shared.snmp.types import SnmpValue
from tonerwatch_shared.snmp.udp import UdpSnmpClient


class SnmpClient(SnmpProtocol):
    """Picks the v1/v2c or v3 client by target version; both created on first use."""

    def __init__(self, max_in_flight: int = 32) -> None:
        self._max_in_flight = max_in_flight
        self._udp: UdpSnmpClient | None = None
        self._v3: SnmpProtocol | None = None

    def _for(self, target: SnmpTarget) -> SnmpProtocol:
        if target.version == "3":
            if self._v3 is None:
                # Imported late: pysnmp's engine is only paid for when v3 is used.
                from tonerwatch_shared.snmp.v3 import V3SnmpClient

                self._v3 = V3SnmpClient(self._max_in_flight)
            return self._v3
        if self._udp is None:
            self._udp = UdpSnmpClient(self._max_in_flight)
        return self._udp

    async def close(self) -> None:
        """Closes whichever clients were opened."""
        for client in (self._udp, self._v3):
            if client is not None:
                await client.close()
        self._udp = self._v3 = None

    async def get(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> dict[str, SnmpValue]:
        """The values of these exact OIDs (Missing where the agent has none)."""
        return await self._for(target).get(target, oids, stats=stats)

    async def get_next(
        self, target: SnmpTarget, oids: Sequence[str], *, stats: IoStats | None = None
    ) -> VarBindList:
        """The next OID and value after each of these, in order."""
        return await self._for(target).get_next(target, oids, stats=stats)

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
        return await self._for(target).get_bulk(
            target, oids, non_repeaters, max_repetitions, stats=stats
        )
