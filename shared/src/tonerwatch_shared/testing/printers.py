"""pytest plugin: the real printer recordings and a session-wide snmpsim agent serving them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from tonerwatch_shared.simulator import SnmpSimulator, V3User, free_udp_port
from tonerwatch_shared.snmp.target import SnmpTarget

V3_TEST_USER = V3User("tonerwatch-test")


def _walks_dir(config: pytest.Config) -> Path:
    return Path(config.rootpath).parent / "shared" / "printer-walks"


@pytest.fixture(scope="session")
def printer_walks_dir(pytestconfig: pytest.Config) -> Path:
    """../shared/printer-walks from the repo root; skipped when absent (failed when CI is set)."""
    path = _walks_dir(pytestconfig)
    if not any(path.glob("*.snmprec")):
        reason = f"printer recordings not found at {path}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def free_udp_port_factory() -> Callable[[], int]:
    """A function returning a free UDP port on 127.0.0.1."""
    return free_udp_port


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def snmp_agent(printer_walks_dir: Path) -> AsyncIterator[SnmpSimulator]:
    """snmpsim serving every recording on a free 127.0.0.1 port; target(name) reads one by name."""
    simulator = SnmpSimulator(sorted(printer_walks_dir.glob("*.snmprec")), v3_user=V3_TEST_USER)
    async with simulator:
        yield simulator


def agent_target(agent: SnmpSimulator, name: str, **kwargs: object) -> SnmpTarget:
    """A v2c target for recording `name` on the agent."""
    return agent.target(name, **kwargs)
