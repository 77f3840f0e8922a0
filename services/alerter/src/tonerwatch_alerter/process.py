"""Apply one event to a printer: load state → evaluate → commit state with an outbox → publish.

A steady reading (only when the printer was read moved) is not written each time: see store.py.

The state and the events it implies are committed together (compare-and-set on the KV revision)
before anything is published, so of two replicas racing on a printer only the winner publishes,
and the loser re-evaluates on the winner's state. A crash after the commit leaves the events in the
outbox; whoever next touches the printer publishes them first. Event ids derive from the alert and
its crossing, so a re-publish is a duplicate JetStream drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import replace

from nats.aio.msg import Msg

from tonerwatch_alerter.engine import HANDLED, Context, evaluate, new_state
from tonerwatch_alerter.site_settings import SiteSettings, rules_of
from tonerwatch_alerter.store import StateConflict, StateStore, only_times_differ
from tonerwatch_shared.bus import Bus, event_type
from tonerwatch_shared.events import (
    AlertSettingsConfigured,
    Event,
    PrinterEvent,
    SupplyReading,
    UnreadableEvent,
    parse_event,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


class Processor:
    """Turns bus events into alert events for one alerter replica."""

    def __init__(
        self,
        bus: Bus,
        store: StateStore,
        ctx: Context,
        site_settings: SiteSettings | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.ctx = ctx
        self.site_settings = site_settings
        # Per site: its configured settings as last loaded, and the context made of them.
        self._contexts: dict[str, tuple[AlertSettingsConfigured | None, Context]] = {}
        self.published = 0
        self.duplicates = 0
        self.conflicts = 0

    async def handle(self, event: Event, msg: Msg | None = None) -> None:
        """Apply event to its printer's state and publish what it causes; raise to have it retried."""
        if not isinstance(event, HANDLED):
            return
        pid = event.printer_id
        ctx = self.ctx
        if self.site_settings is not None and isinstance(event, SupplyReading):
            # Looked up per reading (in memory once started): a change saved in the web UI
            # applies to the next one.
            ctx = await self._context(self.site_settings, event.site_id)
        for attempt in range(MAX_ATTEMPTS):
            # After a conflict the mirror may not have the winner's state yet: ask KV.
            loaded = await (self.store.load(pid) if attempt == 0 else self.store.load_fresh(pid))
            state = loaded.state or new_state(pid, event.site_id)
            pending = _unpack(state.outbox)
            if pending:
                await self._publish(pending)
            outcome = evaluate(state.model_copy(update={"outbox": []}), event, ctx)
            if not outcome.changed and not pending:
                return
            if (
                not pending
                and not outcome.events
                and loaded.state is not None
                and self.store.may_defer(pid)
                and only_times_differ(loaded.state, outcome.state)
            ):
                # A steady reading: nothing an alert depends on moved. Keep it in memory; the
                # store writes it within its touch interval (or at stop).
                self.store.defer(pid, outcome.state, loaded.revision)
                return
            committed = outcome.state.model_copy(
                update={"outbox": [e.model_dump_json() for e in outcome.events]}
            )
            try:
                revision = await self.store.save(pid, committed, loaded.revision)
            except StateConflict:
                self.conflicts += 1
                # Another replica moved the printer on: back off a little and re-evaluate.
                await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                continue
            if outcome.events:
                await self._publish(outcome.events)
                # On conflict the next writer has seen our outbox, re-sent it (dropped as
                # duplicates) and cleared it.
                with contextlib.suppress(StateConflict):
                    await self.store.save(
                        pid, committed.model_copy(update={"outbox": []}), revision
                    )
            return
        raise StateConflict(f"gave up on {pid} after {MAX_ATTEMPTS} conflicting writes")

    async def _context(self, site_settings: SiteSettings, site_id: str) -> Context:
        """Return the context of a site's readings: kept while its configured settings are the same."""
        configured = await site_settings.load(site_id)
        kept = self._contexts.get(site_id)
        if kept is not None and kept[0] is configured:
            return kept[1]
        ctx = replace(self.ctx, configured=rules_of(configured))
        self._contexts[site_id] = (configured, ctx)
        return ctx

    async def _publish(self, events: Sequence[Event]) -> None:
        for ev in events:
            if await self.bus.publish(ev):
                self.published += 1
                log.info(
                    "%s %s",
                    event_type(ev),
                    getattr(ev, "alert_id", None) or getattr(ev, "supply_index", ""),
                    extra={
                        "printer_id": ev.printer_id if isinstance(ev, PrinterEvent) else None,
                        "site": ev.site_id,
                    },
                )
            else:
                self.duplicates += 1


def _unpack(outbox: Sequence[str]) -> list[Event]:
    events = []
    for raw in outbox:
        try:
            events.append(parse_event(raw))
        except UnreadableEvent as exc:
            log.error("dropped unreadable outbox entry: %s", exc)
    return events
