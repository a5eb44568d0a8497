"""Fixtures for the web UI: the app in-process (signed in or not), and a real `idstitch serve`
loaded by `idstitch demo`, driven by Debian's Chromium through Python playwright.

The browser only ever talks to the loopback server: every other request (the demo's Gravatar
avatar URLs) is answered by the test itself with a local SVG, or refused.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.chromium import chromium_browser
from tests.conftest import SECRET_KEY
from tests.integration.conftest import ServerProcess, idstitch_command

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
UI_SECRET_KEY = "sk_ui_test_secret"
AVATAR_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="#9db8e6"/>'
    '<circle cx="32" cy="25" r="12" fill="#fff"/><rect x="12" y="41" width="40" height="24" rx="12" fill="#fff"/></svg>'
)


def login_nonce(client: TestClient) -> str:
    page = client.get("/ui/login")
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def sign_in(client: TestClient, secret: str = SECRET_KEY, next_url: str = "/ui/users") -> Any:
    nonce = login_nonce(client)
    return client.post(
        "/ui/login", data={"csrf_token": nonce, "secret_key": secret, "next": next_url}, follow_redirects=False
    )


def csrf_of(html: str) -> str:
    """The CSRF token a signed-in page carries in its forms."""
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


@pytest.fixture
def ui(client: TestClient) -> TestClient:
    """The in-process app with a signed-in browser session (cookies kept by the client)."""
    answer = sign_in(client)
    assert answer.status_code == 303, answer.text
    return client


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`idstitch demo` into a fresh data directory, then `idstitch serve` on it."""
    root = tmp_path_factory.mktemp("ui-demo")
    data_dir = root / "data"
    loaded = subprocess.run(
        [*idstitch_command(), "demo", "--data-dir", str(data_dir), "--visitors", "120", "--seed", "11"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "secret key:" in loaded.stdout, loaded.stdout
    server = ServerProcess(data_dir=data_dir, log_dir=root, secret_key=UI_SECRET_KEY)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with chromium_browser() as browser:
        yield browser


def loopback_only(base_url: str) -> Any:
    """A route handler: the server under test passes, avatars get a local picture, the rest is refused."""

    def handle(route: Any) -> None:
        url = route.request.url
        if url.startswith(base_url):
            route.continue_()
        elif "gravatar.com/avatar/" in url:
            route.fulfill(status=200, content_type="image/svg+xml", body=AVATAR_SVG)
        else:
            route.abort()

    return handle


@pytest.fixture
def browser_page(chromium: Any, demo_server: ServerProcess) -> Iterator[Any]:
    """A fresh browser context (no cookies) on a desktop-sized window."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", loopback_only(demo_server.base_url))
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
