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

# IEEE 1284 device ID strings ("MFG:..;MDL:..;") kept at private OIDs; HP's is used by others too.
DEVICE_ID_OIDS = (
    "1.3.6.1.4.1.11.2.3.9.1.1.7.0",  # HP (and many OEMs)
    "1.3.6.1.4.1.2435.2.3.9.1.1.7.0",  # Brother
)

# Brother private MIB (brother library, real fixtures in ../shared/printer-walks/brother_*)
BROTHER_MAINTENANCE = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.8.0"
BROTHER_COUNTERS = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.10.0"
BROTHER_PAGES_LEFT = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.11.0"
BROTHER_STATUS_TEXT = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.4.5.2.0"
BROTHER_SERIAL = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.1.0"
