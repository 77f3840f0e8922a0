"""A small, realistic fleet for the browser tests: three sites, two groups, ten printers in every state.

Published as the services would (PrinterConfigured, SupplyReading, PrinterUnreachable,
ThresholdCrossed) on the test's bus; the api projects them as in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import Page

from tonerwatch_shared.bus import Bus
from tonerwatch_shared.events import (
    PrinterConfigured,
    PrinterUnreachable,
    SnmpCredentials,
    SupplyReading,
    ThresholdCrossed,
)
from tonerwatch_shared.printer.model import (
    Counters,
    PrinterIdentity,
    PrinterStatus,
    Supply,
    SupplyClass,
    SupplyKind,
    SupplyState,
)

SITES = (("hq", "Headquarters"), ("warehouse", "Warehouse"), ("lyon", "Lyon branch"))


def _state(percent: float | None, low: float = 10.0) -> SupplyState:
    if percent is None:
        return SupplyState.SOME_REMAINING
    if percent <= 0:
        return SupplyState.EMPTY
    return SupplyState.LOW if percent < low else SupplyState.OK


def colour_toners(k: float, c: float, m: float, y: float, prefix: str = "HP W203") -> list[Supply]:
    """Four toners like a colour laser reports them."""
    out = []
    for i, (name, pct, suffix) in enumerate(
        (("Black", k, "0A"), ("Cyan", c, "1A"), ("Magenta", m, "3A"), ("Yellow", y, "2A")), 1
    ):
        out.append(
            Supply(
                index=str(i),
                description=f"{name} Cartridge {prefix}{suffix}",
                kind=SupplyKind.TONER,
                colour=name.lower(),
                level=int(pct),
                max_capacity=100,
                percent=pct,
                state=_state(pct),
            )
        )
    return out


def mono(black: float | None, drum: float = 70.0, black_name: str = "Black Toner") -> list[Supply]:
    """A mono laser: black toner (None: "some remaining", level -3) and a drum."""
    return [
        Supply(
            index="1",
            description=black_name,
            kind=SupplyKind.TONER,
            colour="black",
            level=-3 if black is None else int(black),
            max_capacity=100,
            percent=black,
            state=_state(black),
        ),
        Supply(
            index="2",
            description="Drum Unit",
            kind=SupplyKind.DRUM,
            level=int(drum),
            max_capacity=100,
            percent=drum,
            state=_state(drum),
        ),
    ]


def waste(free: float) -> Supply:
    return Supply(
        index="9",
        description="Waste Toner Box",
        kind=SupplyKind.WASTE_TONER,
        supply_class=SupplyClass.RECEPTACLE,
        level=int(free),
        max_capacity=100,
        percent=free,
        state=SupplyState.ALMOST_FULL if free < 20 else SupplyState.OK,
    )


@dataclass
class Fleet:
    """One printer of the seeded fleet."""

    id: str
    name: str
    site: str
    vendor: str
    model: str
    address: str
    supplies: list[Supply] = field(default_factory=list)
    pages: int | None = None
    errors: tuple[str, ...] = ()
    reading: bool = True


FLEET = (
    Fleet("p-fin-hp", "Finance HP", "hq", "HP", "Color LaserJet Pro MFP M479fdw", "127.0.10.11",
          [*colour_toners(42, 80, 65, 8), waste(90)], 48213),
    Fleet("p-rec-bro", "Reception Brother", "hq", "Brother", "HL-L2340DW", "127.0.10.12",
          mono(55, black_name="Toner TN-2410"), 15230, errors=("jammed",)),
    Fleet("p-board-hp", "Board room HP", "hq", "HP", "LaserJet Pro M404dn", "127.0.10.13",
          mono(71, black_name="Black Cartridge HP CF259A"), 9120),
    Fleet("p-wh-kyo", "Warehouse Kyocera", "warehouse", "Kyocera", "ECOSYS M3655idn",
          "127.0.20.21", mono(3, black_name="TK-3170"), 201544),
    Fleet("p-dock-xrx", "Dock Xerox", "warehouse", "Xerox", "VersaLink C405", "127.0.20.22",
          colour_toners(35, 50, 61, 44, prefix="106R0350"), 87002),
    Fleet("p-wh-hp", "Warehouse HP", "warehouse", "HP", "LaserJet Enterprise M507", "127.0.20.23",
          mono(24, black_name="Black Toner Cartridge;SN0000000"), 130077),
    Fleet("p-lyon-ricoh", "Lyon Ricoh", "lyon", "Ricoh", "MP C3004", "127.0.30.31",
          [*colour_toners(60, 72, 18, 66, prefix="842"), waste(12)], 310420, errors=("door_open",)),
    Fleet("p-lyon-canon", "Lyon Canon", "lyon", "Canon", "imageRUNNER C3226i", "127.0.30.32",
          reading=False),
    Fleet("p-lyon-hp", "Lyon HP", "lyon", "HP", "LaserJet MFP M428fdw", "127.0.30.33",
          mono(None, drum=88, black_name="Black Cartridge HP CF259X"), 22014, errors=("low_paper",)),
    Fleet("p-legal-kyo", "Legal Kyocera", "hq", "Kyocera", "ECOSYS P3145dn", "127.0.10.14",
          mono(88, black_name="TK-3160"), 56880),
)  # fmt: skip
GROUPS = {"Finance": ["p-fin-hp", "p-board-hp"], "Logistics": ["p-wh-kyo", "p-dock-xrx", "p-wh-hp"]}


async def api_call(page: Page, method: str, path: str, body: Any = None) -> Any:
    """Call the REST API from the logged-in page (session cookie and CSRF token)."""
    return await page.evaluate(
        """async ([method, path, body]) => {
            const csrf = document.querySelector('meta[name=csrf-token]').content;
            const opts = {method, credentials: 'same-origin', headers: {'X-CSRF-Token': csrf}};
            if (body !== null) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
            const r = await fetch(path, opts);
            return {status: r.status, body: r.status === 204 ? null : await r.json()};
        }""",
        [method, path, body],
    )


def reading_of(f: Fleet, at: datetime, **kw: Any) -> SupplyReading:
    fields: dict[str, Any] = {
        "source": "poller-test",
        "site_id": f.site,
        "printer_id": f.id,
        "address": f.address,
        "printer": PrinterIdentity(vendor=f.vendor, model=f.model, serial=f"SN-{f.id}"),
        "supplies": tuple(f.supplies),
        "counters": Counters(lifetime_pages=f.pages),
        "status": PrinterStatus(
            device_status="warning" if f.errors else "running",
            printer_status="idle",
            errors=f.errors,
        ),
        "occurred_at": at,
    }
    fields.update(kw)
    return SupplyReading(**fields)


def alert(
    f: Fleet, rule: str, severity: str, message: str, supply: Supply | None = None, **kw: Any
) -> ThresholdCrossed:
    return ThresholdCrossed(
        source="alerter/test",
        site_id=f.site,
        printer_id=f.id,
        alert_id=f"{f.id}:{supply.index if supply else 'printer'}:{rule}",
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        message=message,
        supply_index=supply.index if supply else None,
        supply_description=supply.description if supply else None,
        kind=supply.kind.value if supply else None,
        colour=supply.colour if supply else None,
        percent=supply.percent if supply else None,
        **kw,
    )


def by_id(printer_id: str) -> Fleet:
    return next(f for f in FLEET if f.id == printer_id)


async def seed_fleet(page: Page, bus: Bus) -> None:
    """Create the sites and groups through the API, then publish the fleet's events and wait."""
    for site_id, name in SITES:
        r = await api_call(page, "POST", "/api/v1/sites", {"id": site_id, "name": name})
        assert r["status"] in (201, 409), r
    now = datetime.now(UTC)
    for f in FLEET:
        await bus.publish(
            PrinterConfigured(
                source="test",
                site_id=f.site,
                printer_id=f.id,
                address=f.address,
                port=16100,
                credentials=SnmpCredentials(community="public"),
                name=f.name,
            )
        )
    # A reading of a printer the api does not know yet waits for it (retried): printers first, quicker.
    await wait_for(page, lambda rows: len(rows) == len(FLEET))
    for i, f in enumerate(FLEET):
        if f.reading:
            # Seen a few minutes ago (the Xerox last answered two hours ago).
            ago = timedelta(hours=2) if f.id == "p-dock-xrx" else timedelta(minutes=2 + i)
            await bus.publish(reading_of(f, now - ago))
    await wait_for(page, lambda rows: sum(1 for r in rows if r["last_seen"]) == 9)
    xerox = by_id("p-dock-xrx")
    await bus.publish(
        PrinterUnreachable(
            source="poller-test",
            site_id=xerox.site,
            printer_id=xerox.id,
            address=xerox.address,
            consecutive_failures=3,
            reason="no SNMP answer in 3 tries",
        )
    )
    brother, kyocera, wh_hp = by_id("p-rec-bro"), by_id("p-wh-kyo"), by_id("p-wh-hp")
    finance = by_id("p-fin-hp")
    await bus.publish(alert(brother, "jammed", "critical", "Paper jam: Reception Brother"))
    await bus.publish(
        alert(
            kyocera,
            "critical",
            "critical",
            "Toner critically low: Warehouse Kyocera — TK-3170 3%",
            kyocera.supplies[0],
            days_to_empty=2.0,
        )
    )
    await bus.publish(
        alert(
            finance,
            "low",
            "warning",
            "Toner low: Finance HP — Yellow Cartridge HP W2032A 8%",
            finance.supplies[3],
            days_to_empty=6.0,
        )
    )
    await bus.publish(
        alert(
            wh_hp,
            "forecast",
            "info",
            "Runs out soon: Warehouse HP — Black Toner Cartridge about 9 days left",
            wh_hp.supplies[0],
            days_to_empty=9.0,
        )
    )
    for name, members in GROUPS.items():
        r = await api_call(page, "POST", "/api/v1/groups", {"name": name, "printer_ids": members})
        assert r["status"] == 201, r
    await wait_for(
        page,
        lambda rows: (
            any(r["id"] == "p-dock-xrx" and r["status"] == "offline" for r in rows)
            and sum(r["alerts"] for r in rows) >= 4
        ),
    )


async def fleet_json(page: Page) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await page.evaluate(
        "async () => (await (await fetch('/fleet.json?scope=all')).json()).rows"
    )
    return rows


async def wait_for(page: Page, ready: Any, tries: int = 60) -> None:
    """Wait (bounded) until the projected fleet satisfies ready(rows)."""
    for _ in range(tries):
        if ready(await fleet_json(page)):
            return
        await page.wait_for_timeout(500)
    raise AssertionError(f"the fleet never got ready: {await fleet_json(page)}")
