"""Sites: a tenant's places, each with its printers and poll interval."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import (
    Printer,
    Site,
)
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.projections.outbox import add_to_outbox
from tonerwatch_api.projections.printers import (
    configured_event,
)

# --- sites ---------------------------------------------------------------------------------------


def tenant_sites(session: Session, tenant_id: str) -> list[Site]:
    """Return the tenant's sites by id."""
    return list(
        session.exec(select(Site).where(Site.tenant_id == tenant_id).order_by(col(Site.id))).all()
    )


def get_site(session: Session, tenant_id: str, site_id: str) -> Site:
    """Return the tenant's site, or raise NotFound."""
    site = session.get(Site, site_id)
    if site is None or site.tenant_id != tenant_id:
        raise NotFound(f"site {site_id!r} not found")
    return site


def site_printer_counts(session: Session, tenant_id: str) -> dict[str, int]:
    """Return live printers per site of the tenant."""
    q = (
        select(Printer.site_id, func.count())
        .join(Site, col(Site.id) == col(Printer.site_id))
        .where(Site.tenant_id == tenant_id, col(Printer.removed_at).is_(None))
        .group_by(col(Printer.site_id))
    )
    return {site: int(n) for site, n in session.exec(q).all()}


DEFAULT_INTERVAL_S = 300.0  # RFC-free choice: 5 minutes, as the issue and most tools default


def set_site_interval(
    session: Session,
    site: Site,
    interval_s: float | None,
    source: str,
    default_interval_s: float = DEFAULT_INTERVAL_S,
) -> int:
    """Set a site's poll interval and re-announce the printers following it; return how many."""
    site.poll_interval_s = interval_s
    session.add(site)
    followers = session.exec(
        select(Printer).where(
            Printer.site_id == site.id,
            col(Printer.interval_follows_site).is_(True),
            col(Printer.removed_at).is_(None),
        )
    ).all()
    for printer in followers:
        printer.interval_s = interval_s or default_interval_s
        session.add(printer)
        if printer.monitored:
            event = configured_event(printer, source=source, site_id=site.id)
            printer.config_at = event.occurred_at
            add_to_outbox(session, event)
    return len(followers)


def site_tenants(session: Session) -> dict[str, str]:
    """Return each site's tenant."""
    return {s.id: s.tenant_id for s in session.exec(select(Site)).all()}
