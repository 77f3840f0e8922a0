"""What belongs to a tenant: its sites, looked up (another tenant's are not found)."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Printer, Site
from tonerwatch_api.domain.errors import NotFound


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


def site_tenants(session: Session) -> dict[str, str]:
    """Return each site's tenant."""
    return {s.id: s.tenant_id for s in session.exec(select(Site)).all()}
