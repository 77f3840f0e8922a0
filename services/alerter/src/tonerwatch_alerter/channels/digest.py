"""Daily mail digest: a route's alerts of the day, per site, in one message at a set hour.

Alerts are collected in the ALERTER_DIGEST KV bucket, one key per (route, site), written with
compare-and-set so replicas do not lose each other's additions. At the digest hour a replica claims
the pending alerts (moves them into `sending` with its name and the time), sends the mail and
clears the claim. A replica that dies mid-send leaves a claim that goes stale; whoever finds it
sends the same digest (same Message-ID) again, so nothing collected is lost. The clock is injected:
tests move it, nothing waits for a real day. Who the web UI mails about some printers only (users
answering for a group of printers) gets a digest of those printers' alerts alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue
from pydantic import AwareDatetime, BaseModel, Field

from tonerwatch_alerter.channels.base import DeliveryFailed
from tonerwatch_alerter.channels.mail import (
    MailSender,
    facts,
    printer_url,
    subject_of,
)
from tonerwatch_alerter.state import PrinterLabel
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    ThresholdCrossed,
    UnreadableEvent,
    parse_event,
    printer_of,
)
from tonerwatch_shared.kv import KvConflict, ModelKv

log = logging.getLogger(__name__)

BUCKET = "ALERTER_DIGEST"
MAX_ITEMS = 500  # per site and day; a fleet-wide outage must not grow a key without bound
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


class Sending(BaseModel):
    """A digest claimed for sending: its day, its alerts, who claimed it and when."""

    day: date
    items: list[str]
    claimed_by: str
    claimed_at: AwareDatetime


class DigestBox(BaseModel):
    """One route's digest state for one site."""

    pending: list[str] = Field(default_factory=list, description="Event JSON, oldest first")
    opened_at: AwareDatetime | None = Field(
        default=None, description="When the first pending alert was collected"
    )
    dropped: int = 0
    sending: Sending | None = None
    last_day: date | None = Field(default=None, description="Day of the last digest handled")


def last_slot(now: datetime, sender: MailSender) -> datetime | None:
    """Return the latest digest time at or before now (in the route's zone), or None without digests."""
    at, zone = sender.config.digest_at, sender.config.zone()
    if at is None:
        return None
    local = now.astimezone(zone)
    slot = datetime.combine(local.date(), at, tzinfo=zone)
    if slot > local:
        slot = datetime.combine(local.date() - timedelta(days=1), at, tzinfo=zone)
    return slot


def due_day(
    now: datetime, sender: MailSender, opened_at: datetime | None, last_day: date | None
) -> date | None:
    """Return the day whose digest is due at now, or None.

    Due once a digest time has passed since the first pending alert was collected: an alert
    collected after today's digest went out waits for tomorrow's.
    """
    slot = last_slot(now, sender)
    if slot is None or opened_at is None or opened_at >= slot or last_day == slot.date():
        return None
    return slot.date()


def render_digest(
    sender: MailSender,
    site: str,
    day: date,
    events: Sequence[Event],
    labels: dict[str, PrinterLabel | None],
    *,
    sent_at: datetime,
    recipients: Sequence[str] | None = None,
    part: str | None = None,
) -> EmailMessage:
    """Return the digest mail for one site and day: every alert, worst first, in text and HTML.

    part names a digest of some printers only (its own Message-ID beside the site's).
    """
    cfg = sender.config
    raised = [e for e in events if isinstance(e, ThresholdCrossed)]
    raised.sort(key=lambda e: (SEVERITY_ORDER.get(e.severity, 9), e.occurred_at))
    others = sorted((e for e in events if not isinstance(e, ThresholdCrossed)), key=_at)
    resolved = sum(isinstance(e, AlertResolved) for e in others)
    counts = f"{len(raised)} alert{'s' if len(raised) != 1 else ''}"
    if resolved:
        counts += f", {resolved} resolved"
    subject = f"TonerWatch daily digest, site {site}, {day.isoformat()}: {counts}"
    text_lines = [subject, ""]
    html_items = []
    for event in [*raised, *others]:
        label = labels.get(printer_of(event) or "")
        line = subject_of(event, label)
        link = printer_url(sender.public_url, printer_of(event) or "")
        extras = [
            f"{k.lower()} {v}"
            for k, v in facts(event, label)
            if k in ("Part number", "Days left") and v
        ]
        when = event.occurred_at.astimezone(cfg.zone()).strftime("%H:%M")
        detail = f" ({', '.join(extras)})" if extras else ""
        text_lines += [f"- {when} {line}{detail}", f"  {link}"]
        html_items.append(
            f'<li>{when} <a href="{html.escape(link, quote=True)}">{html.escape(line)}</a>'
            f"{html.escape(detail)}</li>"
        )
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.recipients_for(site) if recipients is None else recipients)
    msg["Date"] = format_datetime(sent_at)
    suffix = f".{part}" if part else ""
    msg["Message-ID"] = f"<digest.{cfg.name}.{site}.{day.isoformat()}{suffix}@tonerwatch>"
    msg.set_content("\n".join([*text_lines, ""]))
    msg.add_alternative(
        '<!DOCTYPE html>\n<html><body style="font-family:sans-serif">\n'
        f"<h2>{html.escape(subject)}</h2>\n<ul>\n"
        + "\n".join(html_items)
        + "\n</ul>\n</body></html>\n",
        subtype="html",
    )
    return msg


def _at(event: Event) -> datetime:
    return event.occurred_at


class Digest:
    """Collects a mail route's alerts per site and sends each site one digest a day."""

    def __init__(
        self,
        sender: MailSender,
        kv: KeyValue,
        *,
        instance: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sender = sender
        self.kv = kv
        self.boxes = ModelKv(kv, DigestBox)
        self.instance = instance
        self.clock = clock
        self.sent = 0

    @property
    def name(self) -> str:
        """Return the route's name."""
        return self.sender.config.name

    def key(self, site: str) -> str:
        """Return the KV key of this route's digest for site."""
        return f"{self.name}.{site}"

    async def _load(self, key: str) -> tuple[DigestBox, int]:
        read = await self.boxes.read(key)
        return read.value or DigestBox(), read.revision

    async def _save(self, key: str, box: DigestBox, revision: int) -> int | None:
        """Write box if key is still at revision; return the new revision, or None on a conflict."""
        try:
            return await self.boxes.write(key, box, revision)
        except KvConflict:
            return None

    async def collect(self, event: Event) -> None:
        """Add event to its site's pending digest (once, however often it is delivered)."""
        key = self.key(event.site_id)
        raw = event.model_dump_json()

        def add(current: DigestBox | None) -> DigestBox | None:
            box = current or DigestBox()
            items = [*box.pending, *(box.sending.items if box.sending else [])]
            if any(str(event.event_id) in item for item in items):
                return None
            if not box.pending:
                box.opened_at = self.clock()
            box.pending.append(raw)
            if len(box.pending) > MAX_ITEMS:
                box.dropped += len(box.pending) - MAX_ITEMS
                box.pending = box.pending[-MAX_ITEMS:]
            return box

        try:
            await self.boxes.edit(key, add, pause_s=0.01)
        except KvConflict:
            raise DeliveryFailed(f"digest {key}: too many concurrent writers") from None

    async def sites(self) -> list[str]:
        """Return the sites this route has digest state for."""
        keys = await self.boxes.keys()
        prefix = f"{self.name}."
        return sorted(k[len(prefix) :] for k in keys if k.startswith(prefix))

    async def flush(self) -> int:
        """Send every digest that is due now; return how many were sent."""
        sent = 0
        for site in await self.sites():
            try:
                sent += await self._flush_site(site)
            except DeliveryFailed as exc:
                # Left claimed: the next tick (or another replica, once stale) tries again.
                log.warning("digest %s: %s", self.key(site), exc)
        self.sent += sent
        return sent

    async def _flush_site(self, site: str) -> int:
        key = self.key(site)
        now = self.clock()
        box, rev = await self._load(key)
        if box.sending is None:
            day = due_day(now, self.sender, box.opened_at, box.last_day)
            if day is None or not box.pending:
                return 0
            box.sending = Sending(
                day=day, items=box.pending, claimed_by=self.instance, claimed_at=now
            )
            box.pending, box.opened_at = [], None
        else:
            stale = box.sending.claimed_at + timedelta(
                seconds=self.sender.config.worst_case_s() + 60
            )
            if box.sending.claimed_by != self.instance and now < stale:
                return 0  # another replica is sending it right now
            box.sending = box.sending.model_copy(
                update={"claimed_by": self.instance, "claimed_at": now}
            )
        rev2 = await self._save(key, box, rev)
        if rev2 is None:
            return 0  # someone else moved it on; look again next tick
        claim = box.sending
        events = _parse(claim.items)
        labels = {
            pid: await self.sender.label(pid) for pid in {printer_of(e) or "" for e in events}
        }
        to = await self.sender.recipients(site)
        messages = []
        if to:
            messages.append(
                render_digest(
                    self.sender, site, claim.day, events, labels, sent_at=now, recipients=to
                )
            )
        for part, (addresses, printers) in (await self._printer_parts(site, events, to)).items():
            mine = [e for e in events if printer_of(e) in printers]
            messages.append(
                render_digest(
                    self.sender,
                    site,
                    claim.day,
                    mine,
                    labels,
                    sent_at=now,
                    recipients=addresses,
                    part=part,
                )
            )
        for message in messages:
            try:
                await self.sender.deliver(message)
            except DeliveryFailed as exc:
                if not exc.permanent:
                    raise
                log.error("digest %s for %s dropped: %s", key, claim.day, exc)
        await self._release(key, claim.day)
        return 1

    async def _printer_parts(
        self, site: str, events: Sequence[Event], site_to: Sequence[str]
    ) -> dict[str, tuple[list[str], frozenset[str]]]:
        """Return the digests of some printers only: part name -> (recipients, printer ids).

        Whoever is mailed about the same printers (and not about the whole site) shares one.
        """
        whole = {a.lower() for a in site_to}
        printers_of: dict[str, set[str]] = {}
        spelled: dict[str, str] = {}
        printers = {pid for e in events if (pid := printer_of(e))}
        for pid in sorted(printers):
            for address in await self.sender.printer_extra(site, pid):
                if address.lower() not in whole:
                    printers_of.setdefault(address.lower(), set()).add(pid)
                    spelled.setdefault(address.lower(), address)
        by_printers: dict[frozenset[str], list[str]] = {}
        for address, theirs in printers_of.items():
            by_printers.setdefault(frozenset(theirs), []).append(spelled[address])
        parts = {}
        for pids, addresses in by_printers.items():
            # Named after its printers: the same digest sent again keeps its Message-ID.
            name = hashlib.sha256("\n".join(sorted(pids)).encode()).hexdigest()[:12]
            parts[name] = (sorted(addresses), pids)
        return parts

    async def _release(self, key: str, day: date) -> None:
        """Clear the claim after sending, keeping whatever was collected meanwhile."""
        for _ in range(20):
            box, rev = await self._load(key)
            box.sending = None
            box.last_day = day
            if await self._save(key, box, rev) is not None:
                return
        log.error("digest %s: could not clear the claim; it will be sent again", key)

    async def run(self, stop: asyncio.Event, interval_s: float = 30.0) -> None:
        """Check for due digests every interval_s until stop is set."""
        while not stop.is_set():
            try:
                await self.flush()
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("digest %s: %r", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)


def _parse(items: Sequence[str]) -> list[Event]:
    out = []
    for raw in items:
        try:
            out.append(parse_event(raw))
        except UnreadableEvent as exc:
            log.error("digest: dropped unreadable item: %s", exc)
    return out


__all__ = ["BUCKET", "Digest", "DigestBox", "due_day", "last_slot", "render_digest"]
