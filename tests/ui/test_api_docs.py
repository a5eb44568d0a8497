"""`/docs` works offline: Swagger UI's files come from this server, and the page renders in a
browser that may reach no other host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import ServerProcess


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("docs")
    with ServerProcess(data_dir=root / "data", log_dir=root) as server:
        yield server


def test_the_docs_page_loads_only_assets_of_its_own_origin(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert urls, page.text
    for url in urls:
        assert url.startswith("/"), f"{url} is on another host"
        assert client.get(url).status_code == 200, url
    assert '"validatorUrl": null' in page.text  # no badge fetched from the online validator


def test_the_docs_render_in_a_browser_that_reaches_no_other_host(chromium: Any, docs_server: ServerProcess) -> None:
    outside: list[str] = []

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(docs_server.base_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context = chromium.new_context()
    context.route("**/*", only_this_server)
    try:
        page = context.new_page()
        page.goto(f"{docs_server.base_url}/docs")
        page.locator(".swagger-ui .info .title").filter(has_text="idstitch").wait_for(timeout=15_000)
        page.locator(".opblock-summary-path", has_text="/api/persons").first.wait_for(timeout=15_000)
    finally:
        context.close()
    assert outside == []
    assert httpx.get(f"{docs_server.base_url}/docs/assets/swagger-ui-bundle.js").status_code == 200
