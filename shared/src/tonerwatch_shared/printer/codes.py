"""RFC 2790 / RFC 3805 enumerations as names (snake_case of the MIB names)."""

from __future__ import annotations

from tonerwatch_shared.printer.model import SupplyKind

HR_DEVICE_PRINTER = "1.3.6.1.2.1.25.3.1.5"

# hrDeviceStatus (RFC 2790)
DEVICE_STATUS: dict[int, str] = {1: "unknown", 2: "running", 3: "warning", 4: "testing", 5: "down"}
# hrPrinterStatus (RFC 2790)
PRINTER_STATUS: dict[int, str] = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}

# hrPrinterDetectedErrorState (RFC 2790 + RFC 3805 extension): (octet, mask) -> name. Bit 0 of the
# MIB is the most significant bit of the first octet.
ERROR_BITS: tuple[tuple[int, int, str], ...] = (
    (0, 0x80, "low_paper"),
    (0, 0x40, "no_paper"),
    (0, 0x20, "low_toner"),
    (0, 0x10, "no_toner"),
    (0, 0x08, "door_open"),
    (0, 0x04, "jammed"),
    (0, 0x02, "offline"),
    (0, 0x01, "service_requested"),
    (1, 0x80, "input_tray_missing"),
    (1, 0x40, "output_tray_missing"),
    (1, 0x20, "marker_supply_missing"),
    (1, 0x10, "output_near_full"),
    (1, 0x08, "output_full"),
    (1, 0x04, "input_tray_empty"),
    (1, 0x02, "overdue_prevent_maint"),
)

# PrtMarkerSuppliesTypeTC (RFC 3805 + IANA-PRINTER-MIB) -> kind; None: look at the description.
SUPPLY_TYPES: dict[int, tuple[str, SupplyKind | None]] = {
    1: ("other", None),
    2: ("unknown", None),
    3: ("toner", SupplyKind.TONER),
    4: ("wasteToner", SupplyKind.WASTE_TONER),
    5: ("ink", SupplyKind.INK),
    6: ("inkCartridge", SupplyKind.INK),
    7: ("inkRibbon", SupplyKind.RIBBON),
    8: ("wasteInk", SupplyKind.WASTE_INK),
    9: ("opc", SupplyKind.DRUM),
    10: ("developer", SupplyKind.DEVELOPER),
    11: ("fuserOil", SupplyKind.FUSER_OIL),
    12: ("solidWax", SupplyKind.SOLID_WAX),
    13: ("ribbonWax", SupplyKind.RIBBON),
    14: ("wasteWax", SupplyKind.WASTE_OTHER),
    15: ("fuser", SupplyKind.FUSER),
    16: ("coronaWire", SupplyKind.CLEANER),
    17: ("fuserOilWick", SupplyKind.FUSER_OIL),
    18: ("cleanerUnit", SupplyKind.CLEANER),
    19: ("fuserCleaningPad", SupplyKind.CLEANER),
    20: ("transferUnit", SupplyKind.TRANSFER),
    21: ("tonerCartridge", SupplyKind.TONER),
    22: ("fuserOiler", SupplyKind.FUSER_OIL),
    23: ("water", SupplyKind.OTHER),
    24: ("wasteWater", SupplyKind.WASTE_OTHER),
    25: ("glueWaterAdditive", SupplyKind.OTHER),
    26: ("wastePaper", SupplyKind.WASTE_OTHER),
    27: ("bindingSupply", SupplyKind.OTHER),
    28: ("bandingSupply", SupplyKind.OTHER),
    29: ("stitchingWire", SupplyKind.STAPLES),
    30: ("shrinkWrap", SupplyKind.OTHER),
    31: ("paperWrap", SupplyKind.OTHER),
    32: ("staples", SupplyKind.STAPLES),
    33: ("inserts", SupplyKind.OTHER),
    34: ("covers", SupplyKind.OTHER),
    35: ("matteToner", SupplyKind.TONER),
    36: ("matteInk", SupplyKind.INK),
}

WASTE_KINDS = frozenset({SupplyKind.WASTE_TONER, SupplyKind.WASTE_INK, SupplyKind.WASTE_OTHER})

# PrtMarkerSuppliesClassTC
SUPPLY_CLASS_CONSUMED = 3
SUPPLY_CLASS_RECEPTACLE = 4

# PrtMarkerSuppliesSupplyUnitTC
SUPPLY_UNITS: dict[int, str] = {
    1: "other",
    2: "unknown",
    3: "tenThousandthsOfInches",
    4: "micrometers",
    7: "impressions",
    8: "sheets",
    11: "hours",
    12: "thousandthsOfOunces",
    13: "tenthsOfGrams",
    14: "hundrethsOfFluidOunces",
    15: "tenthsOfMilliliters",
    16: "feet",
    17: "meters",
    18: "items",
    19: "percent",
}
UNIT_PERCENT = 19

# PrtMarkerCounterUnitTC values that are not pages (lengths, characters, hours).
NON_PAGE_COUNTER_UNITS = frozenset({3, 4, 5, 6, 9, 11, 16, 17})

# PrtAlertSeverityLevelTC
ALERT_SEVERITY: dict[int, str] = {
    1: "other",
    3: "critical",
    4: "warning",
    5: "warning_binary_change_event",
}

# PrtAlertGroupTC
ALERT_GROUPS: dict[int, str] = {
    1: "other",
    3: "host_resources_mib_storage_table",
    4: "host_resources_mib_device_table",
    5: "general_printer",
    6: "cover",
    7: "localization",
    8: "input",
    9: "output",
    10: "marker",
    11: "marker_supplies",
    12: "marker_colorant",
    13: "media_path",
    14: "channel",
    15: "interpreter",
    16: "console_display_buffer",
    17: "console_lights",
    18: "alert",
    30: "fin_device",
    31: "fin_supply",
    32: "fin_supply_media_input",
    33: "fin_attribute",
}

# PrtAlertCodeTC (RFC 3805 section 8, IANA-PRINTER-MIB)
ALERT_CODES: dict[int, str] = {
    1: "other",
    2: "unknown",
    3: "cover_open",
    4: "cover_closed",
    5: "interlock_open",
    6: "interlock_closed",
    7: "configuration_change",
    8: "jam",
    9: "subunit_missing",
    10: "subunit_life_almost_over",
    11: "subunit_life_over",
    12: "subunit_almost_empty",
    13: "subunit_empty",
    14: "subunit_almost_full",
    15: "subunit_full",
    16: "subunit_near_limit",
    17: "subunit_at_limit",
    18: "subunit_opened",
    19: "subunit_closed",
    20: "subunit_turned_on",
    21: "subunit_turned_off",
    22: "subunit_offline",
    23: "subunit_power_saver",
    24: "subunit_warming_up",
    25: "subunit_added",
    26: "subunit_removed",
    27: "subunit_resource_added",
    28: "subunit_resource_removed",
    29: "subunit_recoverable_failure",
    30: "subunit_unrecoverable_failure",
    31: "subunit_recoverable_storage_error",
    32: "subunit_unrecoverable_storage_error",
    33: "subunit_motor_failure",
    34: "subunit_memory_exhausted",
    35: "subunit_under_temperature",
    36: "subunit_over_temperature",
    37: "subunit_timing_failure",
    38: "subunit_thermistor_failure",
    501: "door_open",
    502: "door_closed",
    503: "power_up",
    504: "power_down",
    505: "printer_nms_reset",
    506: "printer_manual_reset",
    507: "printer_ready_to_print",
    801: "input_media_tray_missing",
    802: "input_media_size_change",
    803: "input_media_weight_change",
    804: "input_media_type_change",
    805: "input_media_color_change",
    806: "input_media_form_parts_change",
    807: "input_media_supply_low",
    808: "input_media_supply_empty",
    809: "input_media_change_request",
    810: "input_manual_input_request",
    811: "input_tray_position_failure",
    812: "input_tray_elevation_failure",
    813: "input_cannot_feed_size_selected",
    901: "output_media_tray_missing",
    902: "output_media_tray_almost_full",
    903: "output_media_tray_full",
    904: "output_mailbox_select_failure",
    1001: "marker_fuser_under_temperature",
    1002: "marker_fuser_over_temperature",
    1003: "marker_fuser_timing_failure",
    1004: "marker_fuser_thermistor_failure",
    1005: "marker_adjusting_print_quality",
    1101: "marker_toner_empty",
    1102: "marker_ink_empty",
    1103: "marker_print_ribbon_empty",
    1104: "marker_toner_almost_empty",
    1105: "marker_ink_almost_empty",
    1106: "marker_print_ribbon_almost_empty",
    1107: "marker_waste_toner_receptacle_almost_full",
    1108: "marker_waste_ink_receptacle_almost_full",
    1109: "marker_waste_toner_receptacle_full",
    1110: "marker_waste_ink_receptacle_full",
    1111: "marker_opc_life_almost_over",
    1112: "marker_opc_life_over",
    1113: "marker_developer_almost_empty",
    1114: "marker_developer_empty",
    1115: "marker_toner_cartridge_missing",
    1301: "media_path_media_tray_missing",
    1302: "media_path_media_tray_almost_full",
    1303: "media_path_media_tray_full",
    1304: "media_path_cannot_duplex_media_selected",
    1501: "interpreter_memory_increase",
    1502: "interpreter_memory_decrease",
    1503: "interpreter_cartridge_added",
    1504: "interpreter_cartridge_deleted",
    1505: "interpreter_resource_added",
    1506: "interpreter_resource_deleted",
    1507: "interpreter_resource_unavailable",
    1509: "interpreter_complex_page_encountered",
    1801: "alert_removal_of_binary_change_entry",
}
