"""The OIDs a printer poll reads: scalars fetched by GET, columns walked (RFC 1213, 2790, 3805)."""

from __future__ import annotations

# SNMPv2-MIB system group
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"

# HOST-RESOURCES-MIB (RFC 2790), device index 1 is the printer on nearly every agent
HR_DEVICE_TYPE = "1.3.6.1.2.1.25.3.2.1.2"
HR_DEVICE_DESCR = "1.3.6.1.2.1.25.3.2.1.3"
HR_DEVICE_STATUS = "1.3.6.1.2.1.25.3.2.1.5"
HR_PRINTER_STATUS = "1.3.6.1.2.1.25.3.5.1.1"
HR_PRINTER_DETECTED_ERROR_STATE = "1.3.6.1.2.1.25.3.5.1.2"

# Printer-MIB (RFC 3805)
PRT_GENERAL_SERIAL_NUMBER = "1.3.6.1.2.1.43.5.1.1.17"
PRT_MARKER_LIFE_COUNT = "1.3.6.1.2.1.43.10.2.1.4"
PRT_MARKER_POWER_ON_COUNT = "1.3.6.1.2.1.43.10.2.1.5"
PRT_MARKER_SUPPLIES = "1.3.6.1.2.1.43.11.1.1"  # columns .2 marker index .. .9 level
PRT_MARKER_COLORANT_VALUE = "1.3.6.1.2.1.43.12.1.1.4"
PRT_INPUT = "1.3.6.1.2.1.43.8.2.1"
PRT_ALERT = "1.3.6.1.2.1.43.18.1.1"

PRT_LOCALIZATION_CHARSET = "1.3.6.1.2.1.43.7.1.1.4.1.1"
IF_PHYS_ADDRESS = "1.3.6.1.2.1.2.2.1.6"
IF_TYPE = "1.3.6.1.2.1.2.2.1.3"
HR_DEVICE_TABLE_TYPE = HR_DEVICE_TYPE

# A full first poll: GET these standard scalars (device index 1; a noSuchObject answer is normal)
# and the vendor profiles' private ones (profiles/registry.py), then walk these column prefixes.
# Kept to what parse_snapshot reads.
POLL_SCALARS: tuple[str, ...] = (
    SYS_DESCR,
    SYS_OBJECT_ID,
    SYS_UPTIME,
    SYS_NAME,
    SYS_LOCATION,
    f"{HR_DEVICE_STATUS}.1",
    f"{HR_PRINTER_STATUS}.1",
    f"{HR_PRINTER_DETECTED_ERROR_STATE}.1",
    f"{PRT_GENERAL_SERIAL_NUMBER}.1",
)

POLL_COLUMNS: tuple[str, ...] = (
    HR_DEVICE_TYPE,
    HR_DEVICE_DESCR,
    IF_TYPE,
    IF_PHYS_ADDRESS,
    # prtMarkerSuppliesTable: colorant index, class, type, description, unit, max capacity, level
    *(f"{PRT_MARKER_SUPPLIES}.{col}" for col in (3, 4, 5, 6, 7, 8, 9)),
    PRT_MARKER_COLORANT_VALUE,
    # prtInputTable: max capacity, current level, media name, name, description
    *(f"{PRT_INPUT}.{col}" for col in (9, 10, 12, 13, 18)),
    # prtMarkerTable: counter unit, life count, power-on count
    "1.3.6.1.2.1.43.10.2.1.3",
    PRT_MARKER_LIFE_COUNT,
    PRT_MARKER_POWER_ON_COUNT,
    # prtAlertTable: severity, group, code, description
    *(f"{PRT_ALERT}.{col}" for col in (2, 4, 7, 8)),
)
