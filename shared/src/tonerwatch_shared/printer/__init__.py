"""The printer model: pure parsing of what SNMP and IPP return into supplies, counters and status."""

from tonerwatch_shared.printer.model import (
    Counters,
    PrinterAlert,
    PrinterIdentity,
    PrinterSnapshot,
    PrinterStatus,
    Supply,
    SupplyClass,
    SupplyKind,
    SupplyState,
    Tray,
)

__all__ = [
    "Counters",
    "PrinterAlert",
    "PrinterIdentity",
    "PrinterSnapshot",
    "PrinterStatus",
    "Supply",
    "SupplyClass",
    "SupplyKind",
    "SupplyState",
    "Tray",
]
