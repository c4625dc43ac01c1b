"""/docs (Swagger UI) and /redoc render in a real headless Chromium from what the server itself serves: no
request leaves for another host. Needs Debian's chromium (/usr/bin/chromium) and Playwright from PyPI (which
drives that browser; it downloads none); skips without them, and fails without them under CI=true."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from tests.conftest import IN_CI
from tests.integration.raw_events import DedicatedServer, dedicated_server

CHROMIUM = os.environ.get("MEDSTREAM_TEST_CHROMIUM", "/usr/bin/chromium")
RENDER_TIMEOUT_MS = 30_000


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module", autouse=True)
def browser_present() -> None:
    missing = _missing()
    if missing is not None:
        if IN_CI:
            pytest.fail(f"{missing} (CI=true: the browser test must run)")
        pytest.skip(missing)


@pytest_asyncio.fixture
async def docs_server(tmp_path: Path) -> AsyncIterator[DedicatedServer]:
    async with dedicated_server(tmp_path) as server:
        yield server


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def _render(browser: Any, url: str, ready: str) -> tuple[Any, list[str]]:
    """Open `url`, wait until `ready` (a JavaScript condition) holds; the page, and every URL it sent a request
    to (not those its Content-Security-Policy stopped in the browser)."""
    page = await browser.new_page()
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    await page.goto(url, wait_until="load")
    # As a function: Playwright then calls it on each poll, where a bare expression would be evaluated from its
    # text each time, which the page's Content-Security-Policy (no 'unsafe-eval') refuses once polling starts.
    await page.wait_for_function(f"() => {ready}", timeout=RENDER_TIMEOUT_MS)
    await page.wait_for_load_state("networkidle")
    return page, [r.url for r in requests if not _blocked_by_policy(r.failure)]


def _blocked_by_policy(failure: str | None) -> bool:
    """Chromium names a request its page's Content-Security-Policy stopped `csp` (ERR_BLOCKED_BY_CSP)."""
    return failure is not None and (failure == "csp" or "BLOCKED_BY_CSP" in failure)


def _elsewhere(requested: list[str], server_url: str) -> list[str]:
    own = urlsplit(server_url).netloc
    return [
        url
        for url in requested
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).netloc != own
    ]


async def test_swagger_ui_renders_offline_with_authorize_and_the_entity_routes(
    docs_server: DedicatedServer, browser: Any
) -> None:
    route = "/rest/v1/patients/{entity_id}"
    ready = f"document.querySelector('button.authorize') && document.querySelector('[data-path=\"{route}\"]')"
    page, requested = await _render(browser, f"{docs_server.url}/docs", ready)

    authorize = page.locator("button.authorize")
    assert "Authorize" in await authorize.inner_text()
    assert await page.locator(f'[data-path="{route}"]').count() >= 2  # GET and DELETE
    await authorize.click()
    assert await page.get_by_text("bearerAuth").count() >= 1  # the bearer scheme it asks a token for
    assert any(url.endswith("/openapi.json") for url in requested)
    assert any("/docs-assets/swagger-ui-bundle.js" in url for url in requested)
    assert _elsewhere(requested, docs_server.url) == []


async def test_redoc_renders_offline_with_the_entity_routes(docs_server: DedicatedServer, browser: Any) -> None:
    ready = "document.body.textContent.includes('/rest/v1/patients/{entity_id}')"
    page, requested = await _render(browser, f"{docs_server.url}/redoc", ready)

    assert await page.get_by_text("Create or modify a Patient").count() >= 1
    assert any("/docs-assets/redoc.standalone.js" in url for url in requested)
    assert _elsewhere(requested, docs_server.url) == []
