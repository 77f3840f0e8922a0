"""Prometheus metrics in the text exposition format (small enough to write by hand)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime


class Metrics:
    """Counters and gauges the api keeps in memory; rendered at /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: dict[tuple[str, str, str], int] = defaultdict(int)
        self.lag_s: dict[str, float] = {}
        self.last_applied: dict[str, float] = {}
        self.started = time.time()

    def event_applied(self, consumer: str, kind: str, outcome: str, occurred_at: datetime) -> None:
        """Count one handled event and note how far behind its consumer is."""
        lag = max(0.0, (datetime.now(UTC) - occurred_at).total_seconds())
        with self._lock:
            self.events[(consumer, kind, outcome)] += 1
            self.lag_s[consumer] = lag
            self.last_applied[consumer] = time.time()

    def render(
        self,
        open_alerts: Mapping[str, int],
        printers: Mapping[str, int],
        dead_outbox: int = 0,
        dead_letters: Mapping[str, int] | None = None,
    ) -> str:
        """Return the exposition text, with database gauges passed in."""
        out: list[str] = []
        with self._lock:
            events = dict(self.events)
            lag = dict(self.lag_s)
            last = dict(self.last_applied)
        _family(
            out,
            "tonerwatch_api_events_total",
            "counter",
            "Events handled by the projections, by consumer, type and outcome",
            (
                ({"consumer": c, "type": t, "outcome": o}, v)
                for (c, t, o), v in sorted(events.items())
            ),
        )
        _family(
            out,
            "tonerwatch_api_projection_lag_seconds",
            "gauge",
            "Age of the last event each projection applied, when it applied it",
            (({"consumer": c}, v) for c, v in sorted(lag.items())),
        )
        _family(
            out,
            "tonerwatch_api_projection_last_applied_timestamp_seconds",
            "gauge",
            "Unix time each projection last handled an event",
            (({"consumer": c}, v) for c, v in sorted(last.items())),
        )
        _family(
            out,
            "tonerwatch_api_open_alerts",
            "gauge",
            "Unresolved alerts by severity",
            (({"severity": s}, v) for s, v in sorted(open_alerts.items())),
        )
        _family(
            out,
            "tonerwatch_api_printers",
            "gauge",
            "Printers by status",
            (({"status": s}, v) for s, v in sorted(printers.items())),
        )
        _family(
            out,
            "tonerwatch_api_outbox_dead_events",
            "gauge",
            "Outbox events set aside as never publishable (too large for NATS, or unreadable)",
            [({}, dead_outbox)],
        )
        if dead_letters is not None:
            _family(
                out,
                "tonerwatch_dead_letters",
                "gauge",
                "Events set aside in the dead-letter stream, by the consumer that set them aside "
                "(GET /api/v1/dead-letters lists them; replay with POST .../{id}/replay)",
                (({"consumer": c}, v) for c, v in sorted(dead_letters.items())),
            )
        _family(
            out,
            "tonerwatch_api_start_time_seconds",
            "gauge",
            "Unix time the process started",
            [({}, self.started)],
        )
        return "\n".join(out) + "\n"


def _family(
    out: list[str],
    name: str,
    kind: str,
    help_: str,
    samples: Iterable[tuple[Mapping[str, str], float]],
) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        out.append(f"{name}{_labels(labels)} {_num(value)}")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    parts = [f'{k}="{_escape(v)}"' for k, v in labels.items()]
    return "{" + ",".join(parts) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))
