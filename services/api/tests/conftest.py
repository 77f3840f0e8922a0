"""Fixtures for the api tests: migrated databases and event builders shaped like real printers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tonerwatch_api.db.tx import ensure_default_site, upgrade
from tonerwatch_shared.events import PrinterConfigured, SnmpCredentials, SupplyReading
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterIdentity,
    Supply,
    SupplyClass,
    SupplyKind,
    SupplyState,
)

HP_M479 = PrinterIdentity(
    vendor="HP",
    model="HP Color LaserJet Pro MFP M479fdw",
    serial="CNB1M2N3P4",
    sys_object_id="1.3.6.1.4.1.11.2.3.9.1",
    mac_address="a0:b3:cc:11:22:33",
)


def hp_supplies(
    black: float = 42.0, cyan: float = 80.0, waste_free: float = 90.0
) -> tuple[Supply, ...]:
    """Return supplies like an HP M479fdw reports them (four toners and a waste bin)."""
    toners = [
        ("1", "Black Cartridge HP W2030A", "W2030A", "black", black),
        ("2", "Cyan Cartridge HP W2031A", "W2031A", "cyan", cyan),
        ("3", "Magenta Cartridge HP W2033A", "W2033A", "magenta", 65.0),
        ("4", "Yellow Cartridge HP W2032A", "W2032A", "yellow", 8.0),
    ]
    out = [
        Supply(
            index=i,
            description=d,
            part_number=pn,
            kind=SupplyKind.TONER,
            colour=c,
            level=int(p),
            max_capacity=100,
            percent=p,
            state=SupplyState.LOW if p < 10 else SupplyState.OK,
        )
        for i, d, pn, c, p in toners
    ]
    out.append(
        Supply(
            index="5",
            description="Toner Collection Unit",
            kind=SupplyKind.WASTE_TONER,
            supply_class=SupplyClass.RECEPTACLE,
            level=-3,
            max_capacity=-2,
            percent=waste_free,
            state=SupplyState.OK,
        )
    )
    return tuple(out)


@pytest.fixture
def db(any_engine: Engine) -> Engine:
    """Return a migrated engine (SQLite and PostgreSQL) with the default site."""
    upgrade(any_engine)
    ensure_default_site(any_engine, "default")
    return any_engine


@pytest.fixture
def pg(pg_engine: Engine) -> Engine:
    """Return a migrated PostgreSQL engine with the default site."""
    upgrade(pg_engine)
    ensure_default_site(pg_engine, "default")
    return pg_engine


@pytest.fixture
def configured() -> Callable[..., PrinterConfigured]:
    """Return a builder of PrinterConfigured events for a loopback printer."""

    def build(
        printer_id: str = "p-hp479", site_id: str = "default", **kw: Any
    ) -> PrinterConfigured:
        fields: dict[str, Any] = {
            "source": "test",
            "site_id": site_id,
            "printer_id": printer_id,
            "address": "127.0.0.1",
            "port": 16100,
            "credentials": SnmpCredentials(community="s3cret-community"),
            "name": "Finance HP",
        }
        fields.update(kw)
        return PrinterConfigured(**fields)

    return build


@pytest.fixture
def reading() -> Callable[..., SupplyReading]:
    """Return a builder of SupplyReading events of an HP M479fdw."""

    def build(
        printer_id: str = "p-hp479",
        site_id: str = "default",
        occurred_at: datetime | None = None,
        **kw: Any,
    ) -> SupplyReading:
        fields: dict[str, Any] = {
            "source": "poller-test",
            "site_id": site_id,
            "printer_id": printer_id,
            "address": "127.0.0.1",
            "printer": HP_M479,
            "supplies": hp_supplies(),
            "counters": Counters(lifetime_pages=12345, mono_pages=10000, colour_pages=2345),
            "bytes_sent": 410,
            "bytes_received": 2950,
        }
        if occurred_at is not None:
            fields["occurred_at"] = occurred_at
        fields.update(kw)
        return SupplyReading(**fields)

    return build
