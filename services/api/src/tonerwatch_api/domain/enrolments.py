"""Site enrolment tokens: made by an admin, traded once by a collector, void when the site is revoked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from tonerwatch_api.db.collectors import SiteEnrolment
from tonerwatch_api.domain.access import Principal, audit
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.domain.tenancy import get_site


def create_enrolment(
    session: Session, who: Principal, site_id: str, hashed: str, ttl: timedelta
) -> tuple[str, datetime]:
    """Store an enrolment token (its hash) for the tenant's site; return the site and expiry."""
    site = get_site(session, who.tenant_id, site_id)
    now = datetime.now(UTC)
    row = SiteEnrolment(
        site_id=site.id,
        token_hash=hashed,
        created_by=who.username,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    audit(session, who, "site.enrolment.create", site.id, expires_at=row.expires_at.isoformat())
    return site.id, row.expires_at


def redeem_enrolment(session: Session, hashed: str) -> str:
    """Mark an unused, unexpired token used and return its site (NotFound otherwise, whatever the reason)."""
    now = datetime.now(UTC)
    # One statement: two collectors racing with the same token cannot both win.
    result = session.execute(
        update(SiteEnrolment)
        .where(
            col(SiteEnrolment.token_hash) == hashed,
            col(SiteEnrolment.used_at).is_(None),
            col(SiteEnrolment.expires_at) > now,
        )
        .values(used_at=now)
        .returning(col(SiteEnrolment.site_id))
    )
    site_id = result.scalar_one_or_none()
    if site_id is None:
        raise NotFound("enrolment token unknown, used or expired")
    audit(session, None, "site.enrolment.use", site_id)
    return str(site_id)


def void_enrolments(session: Session, who: Principal, site_id: str) -> int:
    """Void the site's unused enrolment tokens (it is being revoked); return how many."""
    site = get_site(session, who.tenant_id, site_id)
    rows = session.exec(
        select(SiteEnrolment).where(
            SiteEnrolment.site_id == site.id, col(SiteEnrolment.used_at).is_(None)
        )
    ).all()
    now = datetime.now(UTC)
    for row in rows:
        row.used_at = now
        session.add(row)
    return len(rows)


def record_revocation(session: Session, who: Principal, site_id: str, kicked: int | None) -> None:
    """Audit a collector revocation."""
    audit(session, who, "site.collector.revoke", site_id, kicked=kicked)


__all__ = ["create_enrolment", "record_revocation", "redeem_enrolment", "void_enrolments"]
