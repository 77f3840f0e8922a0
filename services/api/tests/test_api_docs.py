"""The API docs work with no internet access: /api/docs loads Swagger UI from this server (the
swagger-ui-py package's files), never a CDN, and its OAuth2 redirect page is under /api/docs.

The browser test renders the docs in Chromium with every request to another host refused.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Route, expect
from sqlalchemy.engine import Engine

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import ensure_admin, ensure_default_site, upgrade
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.storage import make_engine

from .test_browser_ui import Api, api, browser

__all__ = ["api", "browser"]  # fixtures, imported to be shared


class _Refs(HTMLParser):
    """Collects every src and href of a page, and the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.extend(v for k, v in attrs if k in ("src", "href") and v)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'tw.db'}")
    upgrade(eng)
    ensure_default_site(eng, "default")
    ensure_admin(eng, "docs-admin-password")
    yield eng
    eng.dispose()


@pytest.fixture
async def client(engine: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine, bus, Settings(session_secret="s", cookie_secure=False))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


async def test_api_docs_page_refers_only_to_files_this_server_serves(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/api/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    refs = _Refs()
    refs.feed(r.text)
    assert refs.urls, "the docs page loads no script or style"
    for url in refs.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{url} is not on this server"
        assert url.startswith("/api/docs/"), url
    # Nor does its script name another host (the spec and the redirect are relative too).
    inline = "\n".join(refs.scripts)
    assert not re.search(r"https?://", inline), inline
    assert "'/api/v1/openapi.json'" in inline
    assert "/api/docs/oauth2-redirect" in inline

    kinds = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for url in refs.urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert kinds[Path(url).suffix] in asset.headers["content-type"], url
        assert len(asset.content) > 1000, url
    bundle = await client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content


async def test_oauth2_redirect_and_licence_are_served_under_api_docs(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/api/docs/oauth2-redirect")
    assert r.status_code == 200
    assert "swaggerUIRedirectOauth2" in r.text
    assert not re.search(r"https?://", r.text)
    licence = await client.get("/api/docs/assets/LICENSE")
    assert licence.status_code == 200
    assert "Apache License" in licence.text
    # Only what the page loads: the package's other files (its editor) are not served.
    assert (await client.get("/api/docs/assets/swagger-editor-bundle.js")).status_code == 404
    assert (await client.get("/api/docs/assets/../__init__.py")).status_code == 404
    # The docs are not operations of the API.
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert not [p for p in spec["paths"] if p.startswith("/api/docs")]


async def test_swagger_ui_renders_in_chromium_with_every_other_host_refused(
    browser: Browser, api: Api
) -> None:
    here = urlsplit(api.url).netloc
    elsewhere: list[str] = []

    async def only_this_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == here:
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort("internetdisconnected")

    context = await browser.new_context()
    await context.route("**/*", only_this_server)
    page = await context.new_page()
    await page.goto(f"{api.url}/api/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "TonerWatch API", timeout=15000
    )
    # The operations are listed, and one opens.
    sites = page.locator(".opblock-summary-path", has_text=re.compile(r"^/api/v1/sites$")).first
    await expect(sites).to_be_visible()
    await expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    await context.close()
    assert elsewhere == []


async def test_every_page_names_a_favicon_that_is_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    refs = _Refs()
    refs.feed(page.text)
    assert "/static/favicon.svg" in refs.urls
    icon = await client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in icon.content
