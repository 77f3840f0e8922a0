"""The interactive API docs (Swagger UI) at /api/docs, served with no internet access.

Swagger UI's files come from the `swagger-ui-py` package (Swagger UI 5, Apache-2.0, its LICENSE
is served beside the files), never from a CDN: an operator on a closed network gets the docs too.
The OAuth2 redirect page lives under /api/docs as well.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS = "/api/docs"
ASSETS = f"{DOCS}/assets"
OAUTH2_REDIRECT = f"{DOCS}/oauth2-redirect"
# The files the page loads; the package's other files (its editor) are not served.
SERVED = frozenset(
    {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon-32x32.png",
        "favicon-16x16.png",
        "LICENSE",
    }
)

router = APIRouter()


def swagger_ui_dir() -> Path:
    """Return the directory of Swagger UI's files in the installed swagger-ui-py package."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: the API docs need its files")
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    missing = sorted(name for name in SERVED if not (static / name).is_file())
    if missing:
        raise RuntimeError(f"swagger-ui-py lacks {', '.join(missing)} in {static}")
    return static


class SwaggerAssets(StaticFiles):
    """Swagger UI's files, and only those the docs page loads."""

    def __init__(self) -> None:
        super().__init__(directory=swagger_ui_dir())

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if path not in SERVED:
            return "", None
        return super().lookup_path(path)


@router.get(DOCS, include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    """The Swagger UI page: its script, style and icon from this server only."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - docs",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        oauth2_redirect_url=OAUTH2_REDIRECT,
        # No validator badge: it would send the document to a host on the internet.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT, include_in_schema=False)
async def swagger_ui_redirect() -> HTMLResponse:
    """Where an OAuth2 login started from the docs comes back to."""
    return get_swagger_ui_oauth2_redirect_html()
