"""Alert settings per site, and who is responsible for which sites: stored here, announced as events.

The api is the system of record: a site's thresholds, lead time, per-kind and per-printer overrides
and mail addresses live in site_alert_settings; a user's mail address and the sites they answer for
in user_alerting, with the printer groups they answer for. Every change queues one
AlertSettingsConfigured per affected site (whole settings, a growing revision) in the outbox; the
alerter keeps the newest. The recipients announced for a site are its own addresses plus the
addresses of the users responsible for it (neither sites nor groups chosen means every site of their
tenant); a user responsible for a group is announced per printer of it (printer_recipients), so
they are mailed about those printers only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import JSON, Column
from sqlmodel import Field as SQLField
from sqlmodel import Session, SQLModel, col, select

from tonerwatch_api import store
from tonerwatch_api.auth import Admin, Viewer
from tonerwatch_api.db import run_tx
from tonerwatch_api.groups import PrinterGroup, members_of, sites_of_groups
from tonerwatch_api.models import Printer, Site, User, UTCDateTime, utcnow
from tonerwatch_api.params import SiteId, UserId
from tonerwatch_api.projections import add_to_outbox
from tonerwatch_api.schemas import EXAMPLE_PRINTER_ID, MailAddress, error_response
from tonerwatch_api.security import role_at_least
from tonerwatch_api.state import app_state
from tonerwatch_api.store import Principal
from tonerwatch_shared.events import (
    AlertLimits,
    AlertSettingsConfigured,
    ScopedAlertLimits,
    recipient_sets,
)
from tonerwatch_shared.printer.model import SupplyKind

MAX_RECIPIENTS = 50

# --- tables --------------------------------------------------------------------------------------


class SiteAlertSettings(SQLModel, table=True):
    """A site's alert settings as last saved, and the revision last announced."""

    __tablename__ = "site_alert_settings"
    site_id: str = SQLField(
        foreign_key="sites.id", primary_key=True, max_length=64, ondelete="CASCADE"
    )
    revision: int = 0
    low_percent: float | None = None
    critical_percent: float | None = None
    lead_time_days: float | None = None
    kinds: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON(), nullable=True))
    printers: dict[str, Any] | None = SQLField(
        default=None, sa_column=Column(JSON(), nullable=True)
    )
    recipients: list[str] | None = SQLField(default=None, sa_column=Column(JSON(), nullable=True))
    updated_by: str | None = SQLField(default=None, max_length=100)
    updated_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class UserAlerting(SQLModel, table=True):
    """A user's mail address for alerts, the sites and printer groups they answer for (none: all)."""

    __tablename__ = "user_alerting"
    user_id: int = SQLField(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    email: str | None = SQLField(default=None, max_length=254)
    sites: list[str] | None = SQLField(default=None, sa_column=Column(JSON(), nullable=True))
    groups: list[int] | None = SQLField(default=None, sa_column=Column(JSON(), nullable=True))


ALERT_SETTINGS_TABLES: tuple[type[SQLModel], ...] = (SiteAlertSettings, UserAlerting)

# --- request and response bodies -----------------------------------------------------------------

Percent = Annotated[float | None, Field(default=None, ge=0, le=100)]
LeadDays = Annotated[float | None, Field(default=None, gt=0, le=365)]


class LimitsIn(BaseModel):
    """Thresholds of one scope; a field left out (null) uses the layer below (the alerter's defaults)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"low_percent": 30, "critical_percent": 10},
                {"lead_time_days": 14},
            ]
        },
    )
    low_percent: Percent = None
    critical_percent: Percent = None
    lead_time_days: LeadDays = None

    @field_validator("critical_percent")
    @classmethod
    def _critical_below_low(cls, v: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("low_percent")
        if v is not None and low is not None and v > low:
            raise ValueError(f"must not be above low_percent ({low:g})")
        return v


class PrinterLimitsIn(LimitsIn):
    """Thresholds of one printer, with per-supply-kind overrides."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"low_percent": 25, "kinds": {"waste_toner": {"low_percent": 10}}}]
        }
    )
    kinds: dict[SupplyKind, LimitsIn] = Field(default_factory=dict)


class AlertSettingsIn(LimitsIn):
    """A site's alert settings, whole: what is left out goes back to the defaults."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "low_percent": 25,
                    "critical_percent": 5,
                    "lead_time_days": 10,
                    "kinds": {"ink": {"low_percent": 30}},
                    "printers": {"p-3f2a9c01de": {"low_percent": 40}},
                    "recipients": ["facilities@example.org"],
                }
            ]
        },
    )
    kinds: dict[SupplyKind, LimitsIn] = Field(
        default_factory=dict, description="Per supply kind (toner, ink, drum, waste_toner ...)"
    )
    printers: dict[str, PrinterLimitsIn] = Field(
        default_factory=dict, description="Per printer id of this site"
    )
    recipients: list[MailAddress] = Field(
        default_factory=list,
        max_length=MAX_RECIPIENTS,
        description="Addresses mailed about this site's alerts",
    )


class AlertSettingsOut(AlertSettingsIn):
    """A site's alert settings, the revision last announced and everyone who gets its mail."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "site_id": "acme-hq",
                    "revision": 4,
                    "low_percent": 25,
                    "critical_percent": 5,
                    "lead_time_days": 10,
                    "kinds": {"toner": {"low_percent": 15}},
                    "printers": {EXAMPLE_PRINTER_ID: {"low_percent": 40, "kinds": {}}},
                    "recipients": ["facilities@acme.example"],
                    "responsible": ["jdoe@acme.example"],
                    "announced_recipients": ["facilities@acme.example", "jdoe@acme.example"],
                    "printer_recipients": {EXAMPLE_PRINTER_ID: ["finance-lead@acme.example"]},
                    "updated_by": "admin",
                    "updated_at": "2025-03-10T14:02:11Z",
                }
            ]
        },
    )
    site_id: str
    revision: int
    responsible: list[str] = Field(
        default_factory=list, description="Addresses of the users responsible for the site"
    )
    announced_recipients: list[str] = Field(
        default_factory=list, description="The site's addresses and the responsible users', once"
    )
    printer_recipients: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per printer: users answering for one of its groups (not for the site)",
    )
    updated_by: str | None = None
    updated_at: datetime | None = None


class UserAlertingIn(BaseModel):
    """A user's mail address for alerts, the sites and printer groups they answer for (both []: all)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"email": "jdoe@acme.example", "responsible_sites": ["acme-hq"]},
                {"email": "finance-lead@acme.example", "responsible_groups": [3]},
                {"email": "fleet-desk@acme.example", "responsible_sites": []},
            ]
        },
    )
    email: MailAddress | None = None
    responsible_sites: list[str] = Field(default_factory=list, max_length=500)
    responsible_groups: list[int] = Field(
        default_factory=list,
        max_length=500,
        description="Printer groups (GET /groups): mailed about their printers only",
    )


class UserAlertingOut(UserAlertingIn):
    """A user's alerting profile."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "user_id": 7,
                    "username": "jdoe",
                    "email": "jdoe@acme.example",
                    "responsible_sites": ["acme-hq"],
                    "responsible_groups": [3],
                }
            ]
        },
    )
    user_id: int
    username: str


# --- logic ---------------------------------------------------------------------------------------


def _invalid(field: Sequence[str | int], message: str) -> RequestValidationError:
    """Return a 422 naming field, shaped like FastAPI's own validation errors."""
    return RequestValidationError(
        [{"loc": ("body", *field), "msg": message, "type": "value_error"}]
    )


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


def user_scope(session: Session, user_id: int) -> list[str]:
    """Return the sites a user is responsible for (see user_groups: both empty, every site)."""
    row = session.get(UserAlerting, user_id)
    return list(row.sites or []) if row else []


def user_groups(session: Session, user_id: int) -> list[int]:
    """Return the printer groups a user is responsible for."""
    row = session.get(UserAlerting, user_id)
    return list(row.groups or []) if row else []


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
    site = store.get_site(session, who.tenant_id, site_id)
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
    store.audit(
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
    sites = store.tenant_sites(session, who.tenant_id)
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
    store.audit(session, who, "user.alerting", user.username, sites=after, groups=after_groups)
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
    sites = store.tenant_sites(session, user.tenant_id)
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
        raise store.NotFound(f"user {user_id} not found")
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


# --- REST ----------------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1")
_CRITICAL_ABOVE_LOW = "Value error, must not be above low_percent (20)"
ERRORS: dict[int | str, dict[str, object]] = {
    401: error_response(
        401,
        "Not authenticated",
        "not authenticated: send 'Authorization: Bearer <token>' (get one from "
        "POST /api/v1/auth/token) — a token may also be expired or revoked",
    ),
    403: error_response(
        403, "Needs the admin role", "needs role admin or higher (you are operator)"
    ),
    404: error_response(404, "Not found (or another tenant's)", "site 'acme-hq' not found"),
    422: error_response(
        422,
        "Invalid settings; the error names the field",
        f"invalid request: critical_percent: {_CRITICAL_ABOVE_LOW}",
        [{"field": "critical_percent", "location": "body", "message": _CRITICAL_ABOVE_LOW}],
    ),
}


@router.get(
    "/sites/{site_id}/alert-settings",
    response_model=AlertSettingsOut,
    tags=["alerting"],
    responses=ERRORS,
)
async def get_alert_settings(request: Request, site_id: SiteId, who: Admin) -> AlertSettingsOut:
    """Return a site's thresholds, lead time, overrides and mail recipients."""

    def work(s: Session) -> AlertSettingsOut:
        return settings_out(s, store.get_site(s, who.tenant_id, site_id))

    return await run_tx(app_state(request).engine, work)


@router.put(
    "/sites/{site_id}/alert-settings",
    response_model=AlertSettingsOut,
    tags=["alerting"],
    responses=ERRORS,
)
async def put_alert_settings(
    request: Request, site_id: SiteId, body: AlertSettingsIn, who: Admin
) -> AlertSettingsOut:
    """Replace a site's alert settings and announce them to the alerter (AlertSettingsConfigured)."""
    st = app_state(request)
    out = await run_tx(st.engine, lambda s: save_settings(s, who, site_id, body, st.source))
    await _flush(request)
    return out


@router.get(
    "/users/{user_id}/alerting",
    response_model=UserAlertingOut,
    tags=["users"],
    responses=ERRORS,
)
async def get_user_alerting(request: Request, user_id: UserId, who: Viewer) -> UserAlertingOut:
    """Return a user's alert mail address, responsible sites and groups (admins: anyone's; others: their own)."""

    def work(s: Session) -> UserAlertingOut:
        _may_edit(who, user_id)
        return user_alerting_out(s, tenant_user(s, who.tenant_id, user_id))

    return await run_tx(app_state(request).engine, work)


@router.put(
    "/users/{user_id}/alerting",
    response_model=UserAlertingOut,
    tags=["users"],
    responses=ERRORS,
)
async def put_user_alerting(
    request: Request, user_id: UserId, body: UserAlertingIn, who: Admin
) -> UserAlertingOut:
    """Set a user's alert mail address, responsible sites and groups; re-announces the sites concerned."""
    st = app_state(request)

    def work(s: Session) -> UserAlertingOut:
        return set_user_alerting(s, who, tenant_user(s, who.tenant_id, user_id), body, st.source)

    out = await run_tx(st.engine, work)
    await _flush(request)
    return out


def _may_edit(who: Principal, user_id: int) -> None:
    if who.user_id != user_id and not role_at_least(who.role, "admin"):
        raise HTTPException(403, "only admins see other users' settings")


async def _flush(request: Request) -> None:
    # Late import: api imports this module for the user form.
    from tonerwatch_api.api import publish_outbox

    await publish_outbox(app_state(request))


__all__ = [
    "ALERT_SETTINGS_TABLES",
    "AlertSettingsIn",
    "AlertSettingsOut",
    "SiteAlertSettings",
    "UserAlerting",
    "UserAlertingIn",
    "UserAlertingOut",
    "announce",
    "reannounce_all",
    "responsible_emails",
    "router",
    "save_settings",
    "set_user_alerting",
    "settings_out",
    "user_groups",
    "user_scope",
]
