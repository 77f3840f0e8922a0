"""Pure presentation logic: printer status, attention order, colorant colours, level bars, charts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from tonerwatch_api.attention import clean_name

STATUS_LABEL = {
    "offline": "Offline",
    "critical": "Needs action",
    "attention": "Attention",
    "pending": "No data",
    "ok": "OK",
    "paused": "Not monitored",
}

# True colorant colours (what the cartridge looks like), keyed by the normalised colour name.
COLORANTS: dict[str, str] = {
    "black": "#1d1d1f",
    "photo black": "#2b2b2e",
    "matte black": "#3a3a3c",
    "cyan": "#00a0e3",
    "light cyan": "#7fd3f5",
    "magenta": "#e4007c",
    "light magenta": "#f59acb",
    "vivid magenta": "#e5007e",
    "vivid light magenta": "#f48fc7",
    "yellow": "#ffe100",
    "red": "#e53935",
    "orange": "#fb8c00",
    "green": "#43a047",
    "blue": "#1e5fd6",
    "violet": "#7e57c2",
    "gray": "#8e8e93",
    "grey": "#8e8e93",
    "light gray": "#c7c7cc",
    "light grey": "#c7c7cc",
    "light light gray": "#dedee3",
    "dark gray": "#636366",
    "white": "#f5f5f7",
    "gold": "#d4af37",
    "silver": "#c0c0c0",
    "clear": "#e3f2fd",
}
NEUTRAL = "#9aa0a6"
RECEPTACLE_FILL = "#6d6256"  # receptacles (waste bins) show how full they are, in a drab brown


def colorant_hex(colour: str | None, colour_hex: str | None = None) -> str:
    """Return the CSS colour for a supply: the device's own hex, a known colorant, else neutral."""
    if colour_hex and len(colour_hex) == 7 and colour_hex.startswith("#"):
        return colour_hex.lower()
    if not colour:
        return NEUTRAL
    key = colour.strip().lower().replace("_", " ").replace("-", " ")
    return COLORANTS.get(key, NEUTRAL)


@dataclass(frozen=True)
class Bar:
    """One level bar as the UI draws it."""

    label: str
    fill_percent: float | None  # None: level unknown (hatched bar)
    colour: str
    text: str
    state: str
    receptacle: bool
    part_number: str | None
    severity: str | None = None  # its worst open alert's (a critical alert draws it red)


def level_bar(
    description: str,
    percent: float | None,
    state: str,
    supply_class: str,
    colour: str | None,
    colour_hex: str | None = None,
    part_number: str | None = None,
    severity: str | None = None,
) -> Bar:
    """Return the bar for one supply; receptacles show fullness (100 - space left)."""
    receptacle = supply_class == "receptacle"
    fill: float | None = None
    if percent is not None:
        fill = max(0.0, min(100.0, 100.0 - percent if receptacle else percent))
    if fill is None:
        text = {
            "some_remaining": "some left",
            "empty": "empty",
            "full": "full",
            "almost_full": "almost full",
            "ok": "OK",
        }.get(state, "unknown")
    else:
        text = f"{fill:.0f}% full" if receptacle else f"{fill:.0f}%"
    return Bar(
        label=clean_name(description),
        fill_percent=fill,
        colour=RECEPTACLE_FILL if receptacle else colorant_hex(colour, colour_hex),
        text=text,
        state=state,
        receptacle=receptacle,
        part_number=part_number,
        severity=severity,
    )


@dataclass(frozen=True)
class Series:
    """One supply's line in the level history chart."""

    label: str
    colour: str
    points: str  # SVG polyline points

    @property
    def last(self) -> tuple[str, str]:
        """Return the SVG x, y of the newest point (marked with a dot: one reading is a dot)."""
        x, _, y = self.points.rpartition(" ")[2].partition(",")
        return x, y


def chart_series(
    history: Mapping[str, Sequence[tuple[datetime, float]]],
    labels: Mapping[str, tuple[str, str]],
    start: datetime,
    end: datetime,
    width: int = 600,
    height: int = 200,
) -> list[Series]:
    """Return SVG polylines (x: time from start to end, y: 0..100 %) per supply index."""
    span = max((end - start).total_seconds(), 1.0)
    out = []
    for index, points in history.items():
        coords = []
        for at, percent in points:
            x = (at - start).total_seconds() / span * width
            y = height - max(0.0, min(100.0, percent)) / 100.0 * height
            coords.append(f"{x:.1f},{y:.1f}")
        if coords:
            label, colour = labels.get(index, (index, NEUTRAL))
            out.append(Series(label=label, colour=colour, points=" ".join(coords)))
    return out


@dataclass(frozen=True)
class CounterChart:
    """The page counter chart: lines of total (and mono/colour) pages, y from low to high."""

    series: list[Series]
    ticks: list[tuple[float, str]]  # (y in SVG units, label)
    low: int
    high: int

    printed: int = 0  # pages printed over the chart's span (the total counter's rise)


COUNTER_LINES = (
    ("lifetime_pages", "Total pages", "#1f2937"),
    ("mono_pages", "Mono pages", "#6b7280"),
    ("colour_pages", "Colour pages", "#0891b2"),
)


def counter_chart(
    history: Mapping[str, Sequence[tuple[datetime, int]]],
    start: datetime,
    end: datetime,
    width: int = 600,
    height: int = 200,
    first_total: int | None = None,
) -> CounterChart | None:
    """Return the page counter chart of counter name -> (time, pages), None without data.

    Every line shares one y scale from the lowest to the highest count, so a flat line means
    nothing was printed; the scale does not start at zero (a 200,000 page printer would draw
    a flat line at the top). first_total: the lowest total counter of the span when the points are
    buckets (each holds its last value), so the first bucket's pages count.
    """
    values = [v for pts in history.values() for _, v in pts]
    if not values:
        return None
    low, high = min(values), max(values)
    spread = max(high - low, 1)
    span = max((end - start).total_seconds(), 1.0)

    def y(v: int) -> float:
        return height - (v - low) / spread * height if high > low else height / 2

    series = []
    for name, label, colour in COUNTER_LINES:
        pts = history.get(name) or []
        coords = " ".join(
            f"{(at - start).total_seconds() / span * width:.1f},{y(v):.1f}" for at, v in pts
        )
        if coords:
            series.append(Series(label=label, colour=colour, points=coords))
    levels = [low, high] if high > low else [low]
    if high - low >= 4:
        levels.insert(1, (low + high) // 2)
    ticks = [(y(v), f"{v:,}") for v in levels]
    return CounterChart(
        series=series, ticks=ticks, low=low, high=high, printed=pages_printed(history, first_total)
    )


def pages_printed(
    history: Mapping[str, Sequence[tuple[datetime, int]]], first_total: int | None = None
) -> int:
    """Return how far the total counter rose (else mono + colour): never across counters.

    first_total, when given, is the lowest total seen (buckets keep their last value only).
    """
    names = ["lifetime_pages"] if history.get("lifetime_pages") else ["mono_pages", "colour_pages"]
    rises = []
    for name in names:
        values = [v for _, v in history.get(name) or []]
        if name == "lifetime_pages" and values and first_total is not None:
            values.append(first_total)
        if values:
            rises.append(max(values) - min(values))
    return sum(rises)


def _days(value: float) -> str:
    if value < 1:
        return "under a day"
    if value >= 365:
        return "over a year"
    return f"{value:.0f} day{'' if round(value) == 1 else 's'}"


def days_left(
    days: float | None, low: float | None, high: float | None, *, receptacle: bool = False
) -> str:
    """Return days to empty (a waste bin: to full) with its 90 % band, in words for people.

    None: too little history yet (the forecast needs three drops over two days), or not in use.
    """
    if days is None:
        return "—"
    if days <= 0:
        return "full now" if receptacle else "empty now"
    text = ("full in " if receptacle else "") + ("about " if days >= 1 else "") + _days(days)
    if low is None or days >= 365:
        return text
    if high is None:
        return f"{text} ({_days(low)} or more)"
    if round(low) == round(high) or (high >= 365 and low >= 365):
        return text
    hi = "over a year" if high >= 365 else f"{high:.0f}"
    return f"{text} ({low:.0f}–{hi})" if low >= 1 else f"{text} (under a day–{hi})"
