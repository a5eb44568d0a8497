"""A real idstitch on a loopback port for stock clients, and a page server on another origin.

The clients under test (posthog-js in Chromium, the `posthog` and `segment` Python packages)
speak HTTP, so the app runs in uvicorn in a thread (httpx's test suite does the same) on a socket
bound before the thread starts: no port race. The browser pages come from a second server on
another port, so every request to idstitch is cross-origin and CORS is exercised for real.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from tests.chromium import chromium_browser

INGEST_TOKEN = "phc_compat_token"
SECRET_KEY = "sk_compat_secret"

START_TIMEOUT = 10.0
POLL_TIMEOUT = 20.0
POLL_INTERVAL = 0.1

T = TypeVar("T")


@dataclass
class LiveServer:
    base_url: str
    token: str = INGEST_TOKEN
    secret_key: str = SECRET_KEY


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def live_server(tmp_path: Path, store: str | None) -> Iterator[LiveServer]:
    """idstitch serving a fresh store (the test's `store`) on 127.0.0.1:<free port>, stopped at teardown."""
    config = ServerConfig(data_dir=tmp_path / "data", database=store, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY)
    sock = _bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), log_level="warning", lifespan="on", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="idstitch-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, f"uvicorn did not start within {START_TIMEOUT}s"
        time.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT)
        sock.close()


@pytest.fixture
def live_api(live_server: LiveServer) -> Iterator[httpx.Client]:
    """Reads from the live server with the secret key."""
    headers = {"Authorization": f"Bearer {live_server.secret_key}"}
    with httpx.Client(base_url=live_server.base_url, headers=headers, timeout=10.0) as client:
        yield client


def eventually(check: Callable[[], T | None], *, timeout: float = POLL_TIMEOUT, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds.

    The clients send on their own schedule (queues, flush timers, beacons); a bounded poll waits
    exactly as long as needed and never longer than `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def person(api: httpx.Client, distinct_id: str) -> dict[str, Any] | None:
    response = api.get("/api/persons", params={"distinct_id": distinct_id})
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def events(api: httpx.Client, person_id: str) -> list[dict[str, Any]]:
    """All the person's events, oldest first."""
    response = api.get(f"/api/persons/{person_id}/events", params={"limit": 1000})
    response.raise_for_status()
    return list(reversed(response.json()["results"]))


# -- pages on another origin ------------------------------------------------------------------

POSTHOG_JS = Path(__file__).parents[1] / "browser" / "node_modules" / "posthog-js" / "dist" / "array.js"


@dataclass
class PageServer:
    """Serves registered HTML pages and the posthog-js bundle from its own origin."""

    base_url: str = ""
    pages: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, html: str) -> str:
        self.pages[f"/{name}.html"] = html.encode()
        return f"{self.base_url}/{name}.html"


@pytest.fixture(scope="session")
def page_server() -> Iterator[PageServer]:
    assert POSTHOG_JS.exists(), f"{POSTHOG_JS} is missing: run scripts/test-deps (or `make test`)"
    pages = PageServer()
    bundle = POSTHOG_JS.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/posthog.js":
                body, kind = bundle, "application/javascript"
            elif path in pages.pages:
                body, kind = pages.pages[path], "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    pages.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="page-server", daemon=True)
    thread.start()
    try:
        yield pages
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=START_TIMEOUT)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium_browser() as browser:
        yield browser
