"""Former home of the simulator, kept for tests not yet moved: import tonerwatch_shared.simulator."""

from __future__ import annotations

from tonerwatch_shared.simulator import SnmpSimulator, V3User, free_udp_port

__all__ = ["SnmpSimulator", "V3User", "free_udp_port"]
