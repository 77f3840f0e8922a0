"""A simulated printer fleet for `tonerwatch up --demo`: snmpsim data files whose levels fall over time.

Each printer is one snmpsim data file built from a model template in `recordings/` (our own,
modelled on RFC 3805/2790) with per-printer identity, levels and faults. Supply levels and page
counters are served through snmpsim's `numeric` variation module, which computes
``initial + rate * seconds_since_responder_start`` clamped to ``[min, max]`` on every request, so
levels fall in wall time without rewriting any file. All printers share one loopback endpoint and
are told apart by SNMP community (= data file stem).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from tonerwatch_shared.printer.profiles import brother
from tonerwatch_shared.simulator import SnmpSimulator, free_udp_port

RECORDINGS_DIR = Path(__file__).parent / "recordings"
LOOPBACK = "127.0.0.1"
COMMUNITY_PREFIX = "demo-"

# OIDs the fleet rewrites per printer (RFC 1213 / 2790 / 3805, Brother private MIB)
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"
IF_PHYS_ADDRESS_1 = "1.3.6.1.2.1.2.2.1.6.1"
HR_DEVICE_STATUS_1 = "1.3.6.1.2.1.25.3.2.1.5.1"
HR_PRINTER_STATUS_1 = "1.3.6.1.2.1.25.3.5.1.1.1"
HR_PRINTER_ERROR_STATE_1 = "1.3.6.1.2.1.25.3.5.1.2.1"
PRT_GENERAL_PRINTER_NAME_1 = "1.3.6.1.2.1.43.5.1.1.16.1"
PRT_GENERAL_SERIAL_1 = "1.3.6.1.2.1.43.5.1.1.17.1"
PRT_INPUT_CURRENT_LEVEL = "1.3.6.1.2.1.43.8.2.1.10.1"
PRT_MARKER_LIFE_COUNT_1 = "1.3.6.1.2.1.43.10.2.1.4.1.1"
PRT_SUPPLIES = "1.3.6.1.2.1.43.11.1.1"
PRT_ALERT = "1.3.6.1.2.1.43.18.1.1"
# Brother's private objects come from its vendor profile.
BROTHER_STATUS_TEXT = brother.STATUS_TEXT
BROTHER_SERIAL = brother.SERIAL
BROTHER_MAINTENANCE = brother.MAINTENANCE

# RFC 2790 hrDeviceStatus / hrPrinterStatus
DEVICE_RUNNING, DEVICE_WARNING, DEVICE_DOWN = 2, 3, 5
PRINTER_OTHER, PRINTER_IDLE = 1, 3
# RFC 2790 hrPrinterDetectedErrorState, first octet: lowPaper 0x80 .. serviceRequested 0x01
ERR_LOW_PAPER, ERR_LOW_TONER, ERR_JAMMED, ERR_SERVICE_REQUESTED = 0x80, 0x20, 0x04, 0x01
# RFC 3805 PrtAlertSeverityLevelTC, PrtAlertTrainingLevelTC, PrtAlertGroupTC, PrtAlertCodeTC
SEVERITY_CRITICAL, SEVERITY_WARNING = 3, 4
TRAINING_UNTRAINED = 3
GROUP_INPUT, GROUP_MARKER_SUPPLIES = 8, 11
CODE_JAM = 8
CODE_INPUT_MEDIA_SUPPLY_LOW = 807
CODE_TONER_ALMOST_EMPTY = 1104
CODE_WASTE_TONER_FULL = 1109
LOCATION_UNKNOWN = -2  # RFC 3805 prtAlertLocation: -2 unknown
UNIT_PERCENT = 19  # RFC 3805 PrtMarkerSuppliesSupplyUnitTC percent(19)


class Scenario(StrEnum):
    """What a demo printer shows a newcomer."""

    HEALTHY = "healthy"
    PAPER_JAM = "paper_jam"
    WASTE_TONER_FULL = "waste_toner_full"
    LOW_PAPER = "low_paper"
    BROTHER_PRIVATE_LOW = "brother_private_low"  # Printer MIB says -3, the private blob says low
    TONER_LOW_NOW = "toner_low_now"  # already under 20 % at start, falling towards 5 %
    CROSSES_LOW = "crosses_low"  # crosses 20 % a minute or three after start
    CROSSES_CRITICAL = "crosses_critical"  # crosses 5 % a minute or three after start


@dataclass(frozen=True)
class PrinterModel:
    """A model template in recordings/ and who makes it."""

    template: str
    vendor: str
    model: str
    short: str


MODELS: Mapping[str, PrinterModel] = {
    m.template: m
    for m in (
        PrinterModel("hp-m477fdw", "HP", "Color LaserJet Pro MFP M477fdw", "m477"),
        PrinterModel("hp-m404dn", "HP", "LaserJet Pro M404dn", "m404"),
        PrinterModel("xerox-c405", "Xerox", "VersaLink C405", "c405"),
        PrinterModel("brother-hl-l2350dw", "Brother", "HL-L2350DW", "l2350"),
        PrinterModel("canon-c3530", "Canon", "imageRUNNER ADVANCE C3530", "c3530"),
        PrinterModel("ricoh-imc3000", "Ricoh", "IM C3000", "imc3000"),
        PrinterModel("kyocera-m3655idn", "Kyocera", "ECOSYS M3655idn", "m3655"),
        PrinterModel("epson-wf-c5790", "Epson", "WorkForce Pro WF-C5790", "c5790"),
        PrinterModel("lexmark-ms521dn", "Lexmark", "MS521dn", "ms521"),
        PrinterModel("konica-c300i", "Konica Minolta", "bizhub C300i", "c300i"),
    )
}

# (template, scenario, supply index the scenario acts on, seconds until the threshold is crossed)
# The first printers of every fleet: the faults a newcomer should see within a minute or three.
FEATURED: tuple[tuple[str, Scenario, int, float], ...] = (
    ("hp-m404dn", Scenario.PAPER_JAM, 1, 0),
    ("xerox-c405", Scenario.WASTE_TONER_FULL, 6, 0),
    ("canon-c3530", Scenario.LOW_PAPER, 1, 0),
    ("brother-hl-l2350dw", Scenario.BROTHER_PRIVATE_LOW, 1, 0),
    ("hp-m477fdw", Scenario.CROSSES_LOW, 1, 45),
    ("ricoh-imc3000", Scenario.CROSSES_LOW, 2, 100),
    ("kyocera-m3655idn", Scenario.CROSSES_LOW, 1, 150),
    ("epson-wf-c5790", Scenario.CROSSES_CRITICAL, 4, 80),
    ("lexmark-ms521dn", Scenario.TONER_LOW_NOW, 1, 0),
    ("konica-c300i", Scenario.CROSSES_CRITICAL, 2, 170),
)

LOCATIONS = (
    "Finance, 2nd floor",
    "Reception, ground floor",
    "HR, 3rd floor",
    "Engineering, 4th floor east",
    "Engineering, 4th floor west",
    "Sales, 1st floor",
    "Legal, 3rd floor",
    "Warehouse office",
    "Marketing, 2nd floor",
    "Executive suite, 5th floor",
    "IT, basement",
    "Customer service, 1st floor",
)

LOW_PERCENT = 20.0
CRITICAL_PERCENT = 5.0


@dataclass(frozen=True)
class DemoPrinter:
    """One simulated printer: where to poll it and what it is."""

    name: str
    vendor: str
    model: str
    community: str
    host: str = LOOPBACK
    port: int = 0
    location: str = ""
    serial: str = ""
    scenario: Scenario = Scenario.HEALTHY


Record = tuple[str, str]  # (tag, value) of one snmprec line


def oid_key(oid: str) -> tuple[int, ...]:
    """Return the numeric sort key of a dotted OID (snmpsim needs files in this order)."""
    return tuple(int(part) for part in oid.split("."))


def parse_snmprec(text: str) -> dict[str, Record]:
    """Return the records of snmprec text as {oid: (tag, value)}."""
    records: dict[str, Record] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        oid, tag, value = line.split("|", 2)
        records[oid] = (tag, value)
    return records


def render_snmprec(records: Mapping[str, Record]) -> str:
    """Return snmprec text with the records sorted by numeric OID."""
    return "".join(
        f"{oid}|{tag}|{value}\n"
        for oid, (tag, value) in sorted(records.items(), key=lambda r: oid_key(r[0]))
    )


def load_template(template: str) -> dict[str, Record]:
    """Return the records of one model template."""
    return parse_snmprec((RECORDINGS_DIR / f"{template}.snmprec").read_text(encoding="ascii"))


def numeric(tag: str, *, initial: float, rate: float, minimum: float, maximum: float) -> Record:
    """Return a record served through snmpsim's numeric variation: initial + rate * t, clamped."""
    # snmpsim numeric: t is seconds since the responder started; the result is clamped to [min, max]
    return (
        f"{tag}:numeric",
        f"min={minimum:g},max={maximum:g},initial={initial:.4f},rate={rate:.6f}",
    )


def brother_maintenance_blob(toner_percent: float, drum_percent: float, drum_count: int) -> str:
    """Return the hex of a Brother laser maintenance blob: records id, 0x01, 4, value; then 0xFF."""
    # Brother: 0x6f/0x41 hold 1/100 %, 0x81 whole %, 0x31/0x63 status 1 = fitted
    records = (
        (0x63, 1),
        (0x11, drum_count),
        (0x41, round(drum_percent * 100)),
        (0x31, 1),
        (0x6F, round(toner_percent * 100)),
        (0x81, round(toner_percent)),
    )
    return "".join(f"{rid:02x}0104{value:08x}" for rid, value in records) + "ff"


def alert_rows(
    index: int,
    *,
    severity: int,
    group: int,
    group_index: int,
    code: int,
    description: str,
    time_ticks: int,
) -> dict[str, Record]:
    """Return the prtAlertTable records of one alert (hrDeviceIndex 1)."""
    suffix = f"1.{index}"
    return {
        f"{PRT_ALERT}.2.{suffix}": ("2", str(severity)),
        f"{PRT_ALERT}.3.{suffix}": ("2", str(TRAINING_UNTRAINED)),
        f"{PRT_ALERT}.4.{suffix}": ("2", str(group)),
        f"{PRT_ALERT}.5.{suffix}": ("2", str(group_index)),
        f"{PRT_ALERT}.6.{suffix}": ("2", str(LOCATION_UNKNOWN)),
        f"{PRT_ALERT}.7.{suffix}": ("2", str(code)),
        f"{PRT_ALERT}.8.{suffix}": ("4", description),
        f"{PRT_ALERT}.9.{suffix}": ("67", str(time_ticks)),
    }


def _supply_indices(records: Mapping[str, Record]) -> list[int]:
    prefix = f"{PRT_SUPPLIES}.9.1."
    return sorted(int(oid[len(prefix) :]) for oid in records if oid.startswith(prefix))


def _supply(records: Mapping[str, Record], column: int, index: int) -> str:
    return records[f"{PRT_SUPPLIES}.{column}.1.{index}"][1]


def _error_state(first_octet: int) -> Record:
    return ("4x", f"{first_octet:02x}00")


def _tray_name(records: Mapping[str, Record], tray: int) -> str:
    return records[f"1.3.6.1.2.1.43.8.2.1.13.1.{tray}"][1]


def make_printer_records(
    template: str,
    *,
    scenario: Scenario,
    focus_supply: int,
    crossing_seconds: float,
    number: int,
    rng: random.Random,
    time_scale: float = 1.0,
) -> tuple[dict[str, Record], dict[str, str]]:
    """Return one printer's records and identity (name, serial, location) from a model template."""
    records = load_template(template)
    spec = MODELS[template]
    name = f"{spec.short}-{number:02d}"
    serial = f"{records[PRT_GENERAL_SERIAL_1][1][:4]}{rng.randrange(10**5, 10**6)}{number:02d}"
    location = LOCATIONS[number % len(LOCATIONS)]
    uptime_ticks = rng.randrange(2, 40) * 8_640_000 + rng.randrange(8_640_000)
    records[SYS_NAME] = ("4", name)
    records[SYS_LOCATION] = ("4", location)
    records[PRT_GENERAL_PRINTER_NAME_1] = ("4", name)
    records[PRT_GENERAL_SERIAL_1] = ("4", serial)
    records[IF_PHYS_ADDRESS_1] = ("4x", f"02dd{number:04x}{rng.randrange(0x10000):04x}")
    # TimeTicks count hundredths of a second
    records[SYS_UPTIME] = numeric(
        "67", initial=uptime_ticks, rate=100, minimum=0, maximum=2**32 - 1
    )

    pages_per_second = rng.uniform(0.02, 0.2) * time_scale
    life = int(records[PRT_MARKER_LIFE_COUNT_1][1])
    records[PRT_MARKER_LIFE_COUNT_1] = numeric(
        "65",
        initial=life + rng.randrange(20_000),
        rate=pages_per_second,
        minimum=0,
        maximum=2**32 - 1,
    )

    for index in _supply_indices(records):
        maximum = int(_supply(records, 8, index))
        level = int(_supply(records, 9, index))
        if maximum <= 0 or level < 0:
            continue  # RFC 3805: -2 unknown, -3 some remaining; served as recorded
        # healthy supplies: 35-95 % left, an hour or more before reaching 20 %
        start = rng.uniform(0.35, 0.95) * maximum
        rate = -rng.uniform(0.0005, 0.003) * maximum / 100 * time_scale
        if index == focus_supply and scenario in (Scenario.CROSSES_LOW, Scenario.CROSSES_CRITICAL):
            threshold = LOW_PERCENT if scenario is Scenario.CROSSES_LOW else CRITICAL_PERCENT
            start = (threshold + 3.0) / 100 * maximum
            # fall 3 points in crossing_seconds, i.e. cross the threshold then
            rate = -3.0 / 100 * maximum / crossing_seconds * time_scale
        elif index == focus_supply and scenario is Scenario.TONER_LOW_NOW:
            start = 0.14 * maximum
            rate = -0.02 / 100 * maximum * time_scale  # to 5 % in 7.5 minutes
        elif index == focus_supply and scenario is Scenario.WASTE_TONER_FULL:
            records[f"{PRT_SUPPLIES}.9.1.{index}"] = ("2", "0")  # receptacle: no space left
            continue
        records[f"{PRT_SUPPLIES}.9.1.{index}"] = numeric(
            "2", initial=start, rate=rate, minimum=0, maximum=maximum
        )

    alert_time = max(uptime_ticks - rng.randrange(6_000, 360_000), 0)
    if scenario is Scenario.PAPER_JAM:
        # RFC 3805 2.2.13.2: jammed -> hrDeviceStatus down, hrPrinterStatus other
        records[HR_DEVICE_STATUS_1] = ("2", str(DEVICE_DOWN))
        records[HR_PRINTER_STATUS_1] = ("2", str(PRINTER_OTHER))
        records[HR_PRINTER_ERROR_STATE_1] = _error_state(ERR_JAMMED)
        records.update(
            alert_rows(
                1,
                severity=SEVERITY_CRITICAL,
                group=GROUP_INPUT,
                group_index=2,
                code=CODE_JAM,
                description=f"13.B2 Paper jam in {_tray_name(records, 2)}",
                time_ticks=alert_time,
            )
        )
    elif scenario is Scenario.WASTE_TONER_FULL:
        records[HR_DEVICE_STATUS_1] = ("2", str(DEVICE_DOWN))
        records[HR_PRINTER_STATUS_1] = ("2", str(PRINTER_OTHER))
        records[HR_PRINTER_ERROR_STATE_1] = _error_state(ERR_SERVICE_REQUESTED)
        part = _supply(records, 6, focus_supply)
        records.update(
            alert_rows(
                1,
                severity=SEVERITY_CRITICAL,
                group=GROUP_MARKER_SUPPLIES,
                group_index=focus_supply,
                code=CODE_WASTE_TONER_FULL,
                description=f"Replace {part}: waste cartridge full",
                time_ticks=alert_time,
            )
        )
    elif scenario is Scenario.LOW_PAPER:
        records[HR_DEVICE_STATUS_1] = ("2", str(DEVICE_WARNING))
        records[HR_PRINTER_STATUS_1] = ("2", str(PRINTER_IDLE))
        records[HR_PRINTER_ERROR_STATE_1] = _error_state(ERR_LOW_PAPER)
        tray = 2
        records[f"{PRT_INPUT_CURRENT_LEVEL}.{tray}"] = ("2", "18")
        records.update(
            alert_rows(
                1,
                severity=SEVERITY_WARNING,
                group=GROUP_INPUT,
                group_index=tray,
                code=CODE_INPUT_MEDIA_SUPPLY_LOW,
                description=f"{_tray_name(records, tray)}: paper low",
                time_ticks=alert_time,
            )
        )
    elif scenario is Scenario.TONER_LOW_NOW:
        records[HR_DEVICE_STATUS_1] = ("2", str(DEVICE_WARNING))
        records[HR_PRINTER_ERROR_STATE_1] = _error_state(ERR_LOW_TONER)
        records.update(
            alert_rows(
                1,
                severity=SEVERITY_WARNING,
                group=GROUP_MARKER_SUPPLIES,
                group_index=focus_supply,
                code=CODE_TONER_ALMOST_EMPTY,
                description=f"{_supply(records, 6, focus_supply)} low",
                time_ticks=alert_time,
            )
        )

    if BROTHER_MAINTENANCE in records:
        low = scenario is Scenario.BROTHER_PRIVATE_LOW
        toner = 12.0 if low else rng.uniform(35, 95)
        records[BROTHER_MAINTENANCE] = (
            "4x",
            brother_maintenance_blob(toner, rng.uniform(40, 95), rng.randrange(1_000, 20_000)),
        )
        records[BROTHER_SERIAL] = ("4", serial)
        # Brother pads its front-panel text to 16 characters
        records[BROTHER_STATUS_TEXT] = (
            "4x",
            f"{'Toner Low' if low else 'Sleep':<16}".encode().hex(),
        )
        if low:
            records[HR_DEVICE_STATUS_1] = ("2", str(DEVICE_WARNING))
            records[HR_PRINTER_ERROR_STATE_1] = _error_state(ERR_LOW_TONER)

    return records, {"name": name, "serial": serial, "location": location}


def fleet_plan(count: int) -> list[tuple[str, Scenario, int, float]]:
    """Return (template, scenario, focus supply, crossing seconds) for each printer of a fleet."""
    plan = list(FEATURED[:count])
    templates = list(MODELS)
    while len(plan) < count:
        plan.append((templates[len(plan) % len(templates)], Scenario.HEALTHY, 0, 0.0))
    return plan


def build_fleet(
    data_dir: Path,
    *,
    count: int = 30,
    seed: int = 7,
    port: int = 0,
    time_scale: float = 1.0,
) -> list[DemoPrinter]:
    """Write one snmprec data file per printer into data_dir; return the printers (community = stem)."""
    if not 1 <= count <= 500:
        raise ValueError(f"count must be 1..500, not {count}")
    if time_scale <= 0:
        raise ValueError(f"time_scale must be positive, not {time_scale}")
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob(f"{COMMUNITY_PREFIX}*.snmprec"):
        stale.unlink()  # a smaller fleet must not keep serving the old one's printers
    rng = random.Random(seed)
    printers: list[DemoPrinter] = []
    for number, (template, scenario, focus, crossing) in enumerate(fleet_plan(count), 1):
        records, identity = make_printer_records(
            template,
            scenario=scenario,
            focus_supply=focus,
            crossing_seconds=crossing,
            number=number,
            rng=rng,
            time_scale=time_scale,
        )
        community = f"{COMMUNITY_PREFIX}{template}-{number:02d}"
        (data_dir / f"{community}.snmprec").write_text(render_snmprec(records), encoding="ascii")
        spec = MODELS[template]
        printers.append(
            DemoPrinter(
                name=identity["name"],
                vendor=spec.vendor,
                model=spec.model,
                community=community,
                host=LOOPBACK,
                port=port,
                location=identity["location"],
                serial=identity["serial"],
                scenario=scenario,
            )
        )
    return printers


# --- serving ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def run_demo_fleet(
    data_dir: Path,
    port: int | None = None,
    *,
    count: int = 30,
    seed: int = 7,
    time_scale: float = 1.0,
    startup_timeout: float = 30.0,
) -> AsyncIterator[list[DemoPrinter]]:
    """Build the demo fleet in data_dir and serve each printer at its own loopback address (127.77.0.N); yield them."""
    printers = build_fleet(data_dir, count=count, seed=seed, time_scale=time_scale)
    # One address per printer, as on a real network (Linux routes all of 127.0.0.0/8 to loopback).
    hosts = [demo_address(i) for i in range(len(printers))]
    files = [data_dir / f"{p.community}.snmprec" for p in printers]
    # A port picked free can be taken before snmpsim binds it: try a fresh one a few times.
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        simulator = SnmpSimulator(
            files,
            endpoints=[
                (h, chosen)
                for chosen in [port if port is not None else free_udp_port()]
                for h in hosts
            ],
            startup_timeout=startup_timeout,
        )
        try:
            await simulator.start()
        except (RuntimeError, TimeoutError):
            if attempt + 1 == attempts:
                raise
            continue
        try:
            yield [
                replace(p, host=h, port=simulator.port)
                for p, h in zip(printers, hosts, strict=True)
            ]
        finally:
            simulator.stop()
        return


def demo_address(index: int) -> str:
    """Return the loopback address of the demo printer at index."""
    return f"127.77.{index // 250}.{index % 250 + 1}"


def describe(printers: Iterable[DemoPrinter]) -> str:
    """Return a short table of the fleet for the terminal."""
    rows = [
        f"{p.name:<12} {p.vendor:<15} {p.model:<32} {p.location:<30} {p.scenario.value}"
        for p in printers
    ]
    return "\n".join(rows)
