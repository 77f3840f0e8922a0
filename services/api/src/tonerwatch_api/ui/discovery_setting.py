"""UI: whether printers a sweep finds in a site are monitored at once or wait for a person."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from tonerwatch_api.deps import app_state, change
from tonerwatch_api.domain.sites import set_monitor_found
from tonerwatch_api.domain.tenancy import get_site
from tonerwatch_api.security import role_at_least
from tonerwatch_api.ui.common import _check_csrf, error_page, ui_user

router = APIRouter(include_in_schema=False)
CHOICES: dict[str, bool | None] = {"pick": False, "monitor": True, "default": None}


@router.post("/discovery/found-printers")
async def found_printers_setting(request: Request) -> Response:
    """Save a site's choice from the Discovery page (admins, like PATCH /sites/{id})."""
    who = await ui_user(request)
    st = app_state(request)
    data = await _check_csrf(request, who)
    if not role_at_least(who.role, "admin"):
        return error_page(request, 403, "changing what happens to found printers needs an admin")
    choice = data.get("monitor_found", "")
    if choice not in CHOICES:
        return error_page(request, 422, "monitor_found: choose pick, monitor or default")
    site_id = data.get("site_id", "")

    def work(s: Session) -> None:
        set_monitor_found(s, who, get_site(s, who.tenant_id, site_id), CHOICES[choice])

    await change(st, work)
    return RedirectResponse("/discovery#found-printers", status_code=303)
