"""Dead letters as a tenant sees them: each one's site decides who may see and replay it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Site
from tonerwatch_api.domain.access import Principal
from tonerwatch_api.schemas.dead_letters import DeadLetterOut
from tonerwatch_shared.bus import DeadLetter
from tonerwatch_shared.events import UnreadableEvent, parse_event
from tonerwatch_shared.subjects import Subjects


def letter_site(letter: DeadLetter, subjects: Subjects) -> str | None:
    """Return the site of a dead letter: the event's, else its subject's (None when neither)."""
    try:
        return parse_event(letter.data).site_id
    except UnreadableEvent:
        pass
    parts = letter.subject.split(".")
    if len(parts) >= 3 and parts[0] == subjects.root:
        return parts[1]
    return None


def tenant_site_ids(session: Session, tenant_id: str) -> set[str]:
    """Return the ids of the sites of tenant_id."""
    return set(session.exec(select(Site.id).where(col(Site.tenant_id) == tenant_id)).all())


def sees_unowned(who: Principal) -> bool:
    """Return whether who may see dead letters of no known site: the provider, at home."""
    return who.role == "provider" and who.home_tenant_id is None


def visible(
    letters: Iterable[DeadLetter],
    subjects: Subjects,
    own_sites: set[str],
    all_sites: set[str],
    unowned: bool,
) -> list[DeadLetterOut]:
    """Return the letters whose site is one of own_sites (and, with unowned, of no known site)."""
    out = []
    for letter in letters:
        site = letter_site(letter, subjects)
        if site in own_sites or (unowned and site not in all_sites):
            out.append(letter_out(letter, site))
    return out


def all_site_ids(session: Session) -> set[str]:
    """Return the ids of every site of every tenant."""
    return set(session.exec(select(Site.id)).all())


def letter_out(letter: DeadLetter, site: str | None) -> DeadLetterOut:
    """Return the REST body of one dead letter."""
    return DeadLetterOut(
        id=letter.seq,
        consumer=letter.consumer,
        subject=letter.subject,
        site_id=site,
        event_type=letter.event_type,
        event_id=letter.event_id,
        error=letter.error,
        deliveries=letter.deliveries,
        dead_at=datetime.fromtimestamp(letter.dead_at, UTC),
    )
