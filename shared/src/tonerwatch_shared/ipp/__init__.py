"""IPP: Get-Printer-Attributes over the network, and its pure mapping onto the printer model."""

from tonerwatch_shared.ipp.client import (
    SUPPLY_ATTRIBUTES,
    IppConnectionError,
    IppConnectionRefused,
    IppError,
    IppExchange,
    IppNotAPrinter,
    IppResponseTooLarge,
    IppStatusError,
    IppTimeout,
    fetch_printer_attributes,
    get_printer_attributes,
)
from tonerwatch_shared.ipp.mapping import (
    colour_from_hex,
    merge_snapshots,
    parse_device_id,
    parse_identity,
    parse_ipp_attributes,
    parse_status,
    parse_supplies,
)

__all__ = [
    "SUPPLY_ATTRIBUTES",
    "IppConnectionError",
    "IppConnectionRefused",
    "IppError",
    "IppExchange",
    "IppNotAPrinter",
    "IppResponseTooLarge",
    "IppStatusError",
    "IppTimeout",
    "colour_from_hex",
    "fetch_printer_attributes",
    "get_printer_attributes",
    "merge_snapshots",
    "parse_device_id",
    "parse_identity",
    "parse_ipp_attributes",
    "parse_status",
    "parse_supplies",
]
