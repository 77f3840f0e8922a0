"""UI: add many printers at once from a CSV or a list of addresses, with a result per line."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import app_state, change
from tonerwatch_api.domain.bulk_add import bulk_add
from tonerwatch_api.domain.errors import Invalid
from tonerwatch_api.domain.tenancy import tenant_sites
from tonerwatch_api.schemas.bulk_add import BULK_MAX_LINES, BulkAddIn
from tonerwatch_api.security import role_at_least
from tonerwatch_api.ui.common import _check_csrf, error_page, render, ui_user

router = APIRouter(include_in_schema=False)
_FIELDS = ("text", "site_id", "protocol", "interval_s", "community")


@router.get("/printers/bulk", response_class=HTMLResponse)
async def bulk_add_page(request: Request) -> Response:
    """The form: paste addresses or a CSV."""
    who = await ui_user(request)
    sites = await run_tx(app_state(request).engine, lambda s: tenant_sites(s, who.tenant_id))
    return render(
        request,
        "printer_bulk.html",
        who,
        sites=sites,
        errors=[],
        values={"monitored": "on"},
        result=None,
        most=BULK_MAX_LINES,
    )


@router.post("/printers/bulk")
async def bulk_add_submit(request: Request) -> Response:
    """Add the printers and show what became of each line."""
    who = await ui_user(request)
    st = app_state(request)
    data = await _check_csrf(request, who)
    if not role_at_least(who.role, "operator"):
        return error_page(request, 403, "adding printers needs the operator role")
    fields: dict[str, object] = {k: data[k] for k in _FIELDS if data.get(k, "").strip()}
    fields["monitored"] = data.get("monitored") == "on"
    sites = await run_tx(st.engine, lambda s: tenant_sites(s, who.tenant_id))
    safe = {k: v for k, v in data.items() if k not in ("community", "csrf")}
    errors: list[str] = []
    result = None
    try:
        body = BulkAddIn.model_validate(fields)
        result = await change(
            st,
            lambda s: bulk_add(
                s, who, body, st.settings.default_site, st.source, st.settings.default_interval_s
            ),
        )
    except ValidationError as exc:
        errors = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
    except Invalid as exc:
        errors = [f"{'.'.join(str(x) for x in exc.field)}: {exc.message}"]
    return render(
        request,
        "printer_bulk.html",
        who,
        status=422 if errors else 200,
        sites=sites,
        errors=errors,
        values=safe,
        result=result,
        most=BULK_MAX_LINES,
    )
