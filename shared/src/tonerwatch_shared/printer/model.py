"""What a printer poll yields: identity, supplies, trays, counters and status, as plain data."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    # Tolerant readers: unknown fields from newer producers are ignored, never fatal.
    model_config = ConfigDict(frozen=True, extra="ignore")


class SupplyKind(StrEnum):
    """What a supply is, whatever the vendor calls it (RFC 3805 PrtMarkerSuppliesTypeTC, grouped)."""

    TONER = "toner"
    INK = "ink"
    DRUM = "drum"  # opc, photoconductor, imaging/drum unit
    DEVELOPER = "developer"
    FUSER = "fuser"
    TRANSFER = "transfer"  # transfer unit, belt, roller
    WASTE_TONER = "waste_toner"
    WASTE_INK = "waste_ink"
    WASTE_OTHER = "waste_other"  # wasteWater, wastePaper, wax waste ...
    CLEANER = "cleaner"  # cleanerUnit, fuserCleaningPad
    FUSER_OIL = "fuser_oil"
    STAPLES = "staples"
    MAINTENANCE_KIT = "maintenance_kit"
    LASER_UNIT = "laser_unit"
    PAPER_FEED_KIT = "paper_feed_kit"
    SOLID_WAX = "solid_wax"
    RIBBON = "ribbon"  # ribbonWax, inkRibbon, tonerRibbon, transferRibbon
    OTHER = "other"


class SupplyClass(StrEnum):
    """RFC 3805 PrtMarkerSuppliesClassTC: consumed supplies empty, receptacles fill up."""

    CONSUMED = "consumed"
    RECEPTACLE = "receptacle"


class SupplyState(StrEnum):
    """How a supply stands, in words the alerter and the UI can use."""

    OK = "ok"
    LOW = "low"
    EMPTY = "empty"
    SOME_REMAINING = "some_remaining"
    UNKNOWN = "unknown"
    ALMOST_FULL = "almost_full"
    FULL = "full"


class Supply(_Frozen):
    """One supply (toner, ink, drum, waste bin ...) with its level as the device reports it."""

    index: str = Field(
        description='Position in prtMarkerSuppliesTable ("1.2"), or a source-specific key'
    )
    description: str
    part_number: str | None = None
    kind: SupplyKind = SupplyKind.OTHER
    colour: str | None = Field(
        default=None, description="black, cyan, magenta, yellow, ... or None"
    )
    colour_hex: str | None = Field(default=None, description='IPP marker-colors value ("#00FFFF")')
    supply_class: SupplyClass = SupplyClass.CONSUMED
    unit: str | None = Field(
        default=None, description="RFC 3805 PrtMarkerSuppliesSupplyUnitTC name"
    )
    level: int | None = Field(
        default=None, description="Raw prtMarkerSuppliesLevel (may be -1/-2/-3)"
    )
    max_capacity: int | None = Field(default=None, description="Raw prtMarkerSuppliesMaxCapacity")
    percent: float | None = Field(
        default=None,
        description="What remains (consumed) or space left (receptacle), 0..100; None when unknown",
    )
    state: SupplyState = SupplyState.UNKNOWN
    flags: tuple[str, ...] = Field(default=(), description='e.g. "clamped", "private_mib"')
    source: str = Field(default="printer_mib", description="printer_mib, brother_private, ipp ...")
    pages_left: int | None = Field(
        default=None, description="Pages the device expects this part to last"
    )


class Tray(_Frozen):
    """One input tray (prtInputTable)."""

    index: str
    name: str
    level: int | None = None
    max_capacity: int | None = None
    percent: float | None = None
    media: str | None = None


class Counters(_Frozen):
    """Page counters; None where the device does not say."""

    lifetime_pages: int | None = None
    power_on_pages: int | None = None
    mono_pages: int | None = None
    colour_pages: int | None = None
    duplex_pages: int | None = None
    per_marker: dict[str, int] = Field(default_factory=dict)


class PrinterAlert(_Frozen):
    """One active row of prtAlertTable."""

    index: str
    severity: str
    group: str | None = None
    code: str | None = None
    description: str = ""


class PrinterStatus(_Frozen):
    """Host Resources and Printer MIB status, decoded."""

    device_status: str | None = None  # hrDeviceStatus: unknown, running, warning, testing, down
    printer_status: str | None = None  # hrPrinterStatus: other, unknown, idle, printing, warmup
    errors: tuple[str, ...] = ()  # hrPrinterDetectedErrorState bit names, e.g. "low_toner"
    alerts: tuple[PrinterAlert, ...] = ()
    status_text: str | None = None  # vendor front-panel text where exposed


class PrinterIdentity(_Frozen):
    """Who a printer is."""

    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    sys_object_id: str | None = None
    sys_descr: str | None = None
    sys_name: str | None = None
    sys_location: str | None = None
    firmware: str | None = None
    mac_address: str | None = None
    uuid: str | None = Field(default=None, description="IPP printer-uuid (urn:uuid:...)")
    is_printer: bool = True


class PrinterSnapshot(_Frozen):
    """Everything one poll read, and what it could not read."""

    printer: PrinterIdentity
    supplies: tuple[Supply, ...] = ()
    trays: tuple[Tray, ...] = ()
    counters: Counters = Field(default_factory=Counters)
    status: PrinterStatus = Field(default_factory=PrinterStatus)
    missing: tuple[str, ...] = Field(default=(), description="Objects the device did not give")
    anomalies: tuple[str, ...] = Field(
        default=(),
        description="What the device sent that was cut, clamped or dropped (printer/clamp.py)",
    )
