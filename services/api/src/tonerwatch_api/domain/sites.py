"""Sites: a tenant's places, each with its printers and poll interval."""

from __future__ import annotations

from sqlmodel import Session, col, select

from tonerwatch_api.db.models import Printer, Site
from tonerwatch_api.domain.access import Principal, audit
from tonerwatch_api.domain.alert_settings import announce, responsible_emails
from tonerwatch_api.domain.errors import Conflict
from tonerwatch_api.domain.tenancy import get_site, site_printer_counts
from tonerwatch_api.listing import Listing, Page, field
from tonerwatch_api.projections.outbox import add_to_outbox
from tonerwatch_api.projections.printers import configured_event
from tonerwatch_api.schemas.common import SiteIn, SiteOut, SitePage, SitePatch
from tonerwatch_shared.events import SiteAccount

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


SITES = Listing(
    fields={
        "id": field(col(Site.id), "str"),
        "name": field(col(Site.name), "str"),
        "created_at": field(col(Site.created_at), "datetime"),
    },
    default="id",
)


def get_account(session: Session, tenant_id: str, site_id: str) -> SiteAccount:
    """Return a site's account details (empty when none were kept)."""
    site = get_site(session, tenant_id, site_id)
    return SiteAccount.model_validate(site.account or {})


def set_account(session: Session, who: Principal, site_id: str, body: SiteAccount) -> SiteAccount:
    """Keep a site's account details (sent with its new orders upstream); audited."""
    site = get_site(session, who.tenant_id, site_id)
    site.account = body.model_dump(exclude_none=True) or None
    session.add(site)
    audit(session, who, "site.account", site.id, fields=sorted(site.account or {}))
    return body


def site_out(site: Site, printers: int | None = None) -> SiteOut:
    """Return the site as the api shows it (with its printer count when given)."""
    counted = {} if printers is None else {"printers": printers}
    return SiteOut(
        id=site.id,
        name=site.name,
        tenant_id=site.tenant_id,
        poll_interval_s=site.poll_interval_s,
        monitor_found=site.monitor_found,
        **counted,
    )


def site_page(session: Session, tenant_id: str, page: Page) -> SitePage:
    """Return one page of the tenant's sites with their printer counts."""
    base = select(Site).where(Site.tenant_id == tenant_id)
    rows, nxt = SITES.fetch(session, base, page.order, page.cursor, page.limit)
    counts = site_printer_counts(session, tenant_id)
    return SitePage(items=[site_out(x, counts.get(x.id, 0)) for x in rows], next_cursor=nxt)


def one_site(session: Session, tenant_id: str, site_id: str) -> SiteOut:
    """Return one of the tenant's sites with its printer count."""
    site = get_site(session, tenant_id, site_id)
    return site_out(site, site_printer_counts(session, tenant_id).get(site.id, 0))


def add_site(session: Session, who: Principal, body: SiteIn, source: str) -> SiteOut:
    """Create a site in who's tenant (its id becomes part of NATS subjects); return it."""
    if session.get(Site, body.id) is not None:
        raise Conflict(f"site id {body.id!r} is taken")
    site = Site(
        id=body.id,
        tenant_id=who.tenant_id,
        name=body.name or body.id,
        poll_interval_s=body.poll_interval_s,
        monitor_found=body.monitor_found,
    )
    session.add(site)
    session.flush()
    if responsible_emails(session, site):
        # Users responsible for every site are mailed about this one too: tell the alerter.
        announce(session, site, source)
    audit(session, who, "site.create", site.id)
    return site_out(site)


def change_site(
    session: Session,
    who: Principal,
    site_id: str,
    body: SitePatch,
    source: str,
    default_interval_s: float,
) -> SiteOut:
    """Rename a site and/or set its printers' poll interval (None: back to the default)."""
    site = get_site(session, who.tenant_id, site_id)
    if body.name is not None:
        site.name = body.name
        session.add(site)
        audit(session, who, "site.rename", site.id, name=body.name)
    if "poll_interval_s" in body.model_fields_set:
        set_site_interval(session, site, body.poll_interval_s, source, default_interval_s)
        audit(session, who, "site.interval", site.id, poll_interval_s=body.poll_interval_s)
    if "monitor_found" in body.model_fields_set:
        set_monitor_found(session, who, site, body.monitor_found)
    return site_out(site)


def set_monitor_found(session: Session, who: Principal, site: Site, value: bool | None) -> None:
    """Choose whether printers a sweep finds in the site are monitored at once (None: default)."""
    site.monitor_found = value
    session.add(site)
    audit(session, who, "site.monitor_found", site.id, monitor_found=value)


def remove_site(session: Session, who: Principal, site_id: str, default_site: str) -> None:
    """Delete an empty site (one that never held printers); never the default site."""
    site = get_site(session, who.tenant_id, site_id)
    if site.id == default_site:
        raise Conflict("the default site cannot be deleted")
    if session.exec(select(Printer.id).where(Printer.site_id == site.id)).first() is not None:
        raise Conflict(f"site {site.id!r} has printers (or their history); remove them first")
    session.delete(site)
    audit(session, who, "site.delete", site.id)
