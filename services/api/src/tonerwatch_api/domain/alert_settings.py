"""Alert settings: limits and recipients per site, announced to the alerter as AlertSettingsChanged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlmodel import Session, col, select

from tonerwatch_api.db.alerting import SiteAlertSettings, UserAlerting
from tonerwatch_api.db.groups import PrinterGroup
from tonerwatch_api.db.models import Printer, Site, User, utcnow
from tonerwatch_api.domain.access import Principal, audit, members_of, sites_of_groups
from tonerwatch_api.domain.errors import Invalid, NotFound
from tonerwatch_api.domain.tenancy import get_site, tenant_sites
from tonerwatch_api.projections.outbox import add_to_outbox
from tonerwatch_api.schemas.alert_settings import (
    AlertSettingsIn,
    AlertSettingsOut,
    LimitsIn,
    UserAlertingIn,
    UserAlertingOut,
)
from tonerwatch_shared.events import (
    AlertLimits,
    AlertSettingsConfigured,
    ScopedAlertLimits,
    recipient_sets,
)

# --- logic ---------------------------------------------------------------------------------------


def _invalid(field: Sequence[str | int], message: str) -> Invalid:
    """Return a 422 naming field."""
    return Invalid(tuple(field), message)


def _unique(addresses: Iterable[str]) -> list[str]:
    """Return addresses once each (compared without case), first spelling kept, in order."""
    seen: dict[str, str] = {}
    for a in addresses:
        seen.setdefault(a.strip().lower(), a.strip())
    return list(seen.values())


def profiles(session: Session, tenant_id: str) -> dict[int, UserAlerting]:
    """Return the alerting profiles of the tenant's users, by user id."""
    q = (
        select(UserAlerting)
        .join(User, col(User.id) == col(UserAlerting.user_id))
        .where(User.tenant_id == tenant_id)
    )
    return {p.user_id: p for p in session.exec(q).all()}


def _mailed_users(session: Session, tenant_id: str) -> list[tuple[str, list[str], list[int]]]:
    """Return (address, sites, groups) of the tenant's enabled users with an alert address."""
    q = (
        select(UserAlerting.email, UserAlerting.sites, UserAlerting.groups)
        .join(User, col(User.id) == col(UserAlerting.user_id))
        .where(User.tenant_id == tenant_id, col(User.disabled).is_(False))
        .where(col(UserAlerting.email).is_not(None))
        .order_by(col(User.username))
    )
    return [
        (email, list(sites or []), list(groups or []))
        for email, sites, groups in session.exec(q)
        if email
    ]


def responsible_emails(session: Session, site: Site) -> list[str]:
    """Return the addresses of the enabled users responsible for site (not just some printers)."""
    return _unique(
        email
        for email, sites, groups in _mailed_users(session, site.tenant_id)
        if site.id in sites or not (sites or groups)
    )


def group_emails(session: Session, site: Site, besides: Iterable[str]) -> dict[str, list[str]]:
    """Return, per printer of site, the addresses of users responsible for one of its groups.

    Addresses in besides (the site's recipients, mailed about every printer already) are left out.
    """
    skip = {a.strip().lower() for a in besides}
    wanted: dict[int, list[str]] = {}
    for email, _, groups in _mailed_users(session, site.tenant_id):
        if email.strip().lower() in skip:
            continue
        for gid in groups:
            wanted.setdefault(gid, []).append(email)
    if not wanted:
        return {}
    site_printers = set(
        session.exec(
            select(Printer.id).where(Printer.site_id == site.id, col(Printer.removed_at).is_(None))
        ).all()
    )
    per_printer: dict[str, list[str]] = {}
    for gid, printers in members_of(session, wanted).items():
        for pid in printers & site_printers:
            per_printer.setdefault(pid, []).extend(wanted[gid])
    return {pid: _unique(per_printer[pid]) for pid in sorted(per_printer)}


def _settings_in(row: SiteAlertSettings | None) -> AlertSettingsIn:
    if row is None:
        return AlertSettingsIn()
    return AlertSettingsIn.model_validate(
        {
            "low_percent": row.low_percent,
            "critical_percent": row.critical_percent,
            "lead_time_days": row.lead_time_days,
            "kinds": row.kinds or {},
            "printers": row.printers or {},
            "recipients": row.recipients or [],
        }
    )


def settings_out(session: Session, site: Site) -> AlertSettingsOut:
    """Return site's alert settings (the defaults when never saved)."""
    row = session.get(SiteAlertSettings, site.id)
    body = _settings_in(row)
    responsible = responsible_emails(session, site)
    announced = _unique([*body.recipients, *responsible])
    return AlertSettingsOut(
        **body.model_dump(),
        site_id=site.id,
        revision=row.revision if row else 0,
        responsible=responsible,
        announced_recipients=announced,
        printer_recipients=group_emails(session, site, announced),
        updated_by=row.updated_by if row else None,
        updated_at=row.updated_at if row else None,
    )


def _limits(v: LimitsIn) -> AlertLimits:
    return AlertLimits(
        low_percent=v.low_percent,
        critical_percent=v.critical_percent,
        lead_time_days=v.lead_time_days,
    )


def announce(
    session: Session, site: Site, source: str, *, bump: bool = True
) -> AlertSettingsConfigured:
    """Queue the site's whole alert settings in the outbox (after bumping the revision); return the event."""
    row = session.get(SiteAlertSettings, site.id)
    if row is None:
        row = SiteAlertSettings(site_id=site.id)
    if bump:
        row.revision += 1
        session.add(row)
    body = _settings_in(row)
    recipients = _unique([*body.recipients, *responsible_emails(session, site)])
    event = AlertSettingsConfigured(
        source=source,
        site_id=site.id,
        revision=row.revision,
        low_percent=body.low_percent,
        critical_percent=body.critical_percent,
        lead_time_days=body.lead_time_days,
        kinds={k: _limits(v) for k, v in body.kinds.items()},
        printers={
            pid: ScopedAlertLimits(
                **_limits(v).model_dump(), kinds={k: _limits(x) for k, x in v.kinds.items()}
            )
            for pid, v in body.printers.items()
        },
        recipients=tuple(recipients),
        recipient_sets=recipient_sets(dict(group_emails(session, site, recipients))),
    )
    add_to_outbox(session, event)
    return event


def reannounce_all(session: Session, source: str) -> int:
    """Queue every announced site's settings again, same revision; return how many.

    At api start: an alerter whose bucket was lost, or the stream aged out, learns them again;
    an alerter that has them, or a newer revision, keeps what it has.
    """
    q = (
        select(Site)
        .join(SiteAlertSettings, col(SiteAlertSettings.site_id) == col(Site.id))
        .where(col(SiteAlertSettings.revision) > 0)
    )
    sites = list(session.exec(q).all())
    for site in sites:
        announce(session, site, source, bump=False)
    return len(sites)


def save_settings(
    session: Session, who: Principal, site_id: str, body: AlertSettingsIn, source: str
) -> AlertSettingsOut:
    """Store a site's alert settings and queue their announcement; 422 names a foreign printer."""
    site = get_site(session, who.tenant_id, site_id)
    if body.printers:
        known = set(
            session.exec(
                select(Printer.id).where(
                    Printer.site_id == site.id,
                    col(Printer.id).in_(list(body.printers)),
                    col(Printer.removed_at).is_(None),
                )
            ).all()
        )
        for pid in body.printers:
            if pid not in known:
                raise _invalid(("printers", pid), f"no printer {pid!r} in site {site.id!r}")
    row = session.get(SiteAlertSettings, site.id) or SiteAlertSettings(site_id=site.id)
    row.low_percent = body.low_percent
    row.critical_percent = body.critical_percent
    row.lead_time_days = body.lead_time_days
    row.kinds = {str(k): v.model_dump() for k, v in body.kinds.items()}
    row.printers = {pid: v.model_dump(mode="json") for pid, v in body.printers.items()}
    row.recipients = _unique(body.recipients)
    row.updated_by = who.username
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    announce(session, site, source)
    audit(
        session,
        who,
        "site.alert_settings",
        site.id,
        fields=sorted(body.model_dump(exclude_defaults=True)),
    )
    return settings_out(session, site)


def _sites_mailed(
    session: Session,
    sites: Sequence[Site],
    email: str | None,
    scope: Sequence[str],
    groups: Sequence[int],
) -> set[str]:
    """Return the ids of the sites a user's address is announced for (no sites nor groups: all)."""
    if not email:
        return set()
    if not scope and not groups:
        return {s.id for s in sites}
    return {s.id for s in sites if s.id in scope} | sites_of_groups(session, groups)


def set_user_alerting(
    session: Session, who: Principal, user: User, body: UserAlertingIn, source: str
) -> UserAlertingOut:
    """Store a user's address and scope, and re-announce the sites whose recipients may change."""
    sites = tenant_sites(session, who.tenant_id)
    for i, sid in enumerate(body.responsible_sites):
        if sid not in {s.id for s in sites}:
            raise _invalid(("responsible_sites", i), f"no site {sid!r}")
    own_groups = set(
        session.exec(select(PrinterGroup.id).where(PrinterGroup.tenant_id == who.tenant_id)).all()
    )
    for i, gid in enumerate(body.responsible_groups):
        if gid not in own_groups:
            raise _invalid(("responsible_groups", i), f"no group {gid}")
    assert user.id is not None
    row = session.get(UserAlerting, user.id) or UserAlerting(user_id=user.id)
    before_email, before = row.email, list(row.sites or [])
    before_groups = list(row.groups or [])
    after = list(dict.fromkeys(body.responsible_sites))
    after_groups = list(dict.fromkeys(body.responsible_groups))
    row.email, row.sites, row.groups = body.email, after, after_groups
    session.add(row)
    session.flush()
    if (before_email, before, before_groups) != (body.email, after, after_groups):
        touched = _sites_mailed(session, sites, before_email, before, before_groups)
        touched |= _sites_mailed(session, sites, body.email, after, after_groups)
        for site in sites:
            if site.id in touched:
                announce(session, site, source)
    audit(session, who, "user.alerting", user.username, sites=after, groups=after_groups)
    return UserAlertingOut(
        user_id=user.id,
        username=user.username,
        email=body.email,
        responsible_sites=after,
        responsible_groups=after_groups,
    )


def sites_mailing(session: Session, user: User) -> list[Site]:
    """Return the sites whose alert mail goes to user (to re-announce when the user changes)."""
    assert user.id is not None
    row = session.get(UserAlerting, user.id)
    if row is None or not row.email:
        return []
    sites = tenant_sites(session, user.tenant_id)
    mailed = _sites_mailed(session, sites, row.email, row.sites or [], row.groups or [])
    return [s for s in sites if s.id in mailed]


def reannounce(session: Session, sites: Sequence[Site], source: str) -> None:
    """Tell the alerter the recipients of sites again (after a user was disabled or deleted)."""
    session.flush()
    for site in sites:
        announce(session, site, source)


def tenant_user(session: Session, tenant_id: str, user_id: int) -> User:
    """Return the tenant's user, or raise NotFound."""
    user = session.get(User, user_id)
    if user is None or user.tenant_id != tenant_id:
        raise NotFound(f"user {user_id} not found")
    return user


def user_alerting_out(session: Session, user: User) -> UserAlertingOut:
    """Return a user's alerting profile (empty when never set)."""
    assert user.id is not None
    row = session.get(UserAlerting, user.id)
    return UserAlertingOut(
        user_id=user.id,
        username=user.username,
        email=row.email if row else None,
        responsible_sites=list(row.sites or []) if row else [],
        responsible_groups=list(row.groups or []) if row else [],
    )
