"""Fixtures for the browser SDK: a real `idstitch serve`, a site on another origin, Chromium.

- `idstitch`: the server as a process on a port chosen once, so it can be stopped and started
  again on the same port and data directory (the SDK keeps posting to one URL).
- `site`: the test pages, served by a small HTTP server of our own at
  `http://shop.idstitch.test:<port>` (and any other `*.idstitch.test` host: Chromium maps them
  all to 127.0.0.1), so the SDK talks to idstitch cross-origin as on a real site. Each page is
  the README's snippet (`sdk/js/snippet.html`) with the test's token, host and options.
- `browser`: Debian's Chromium driven by Python playwright; never a downloaded browser.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

from tests.chromium import chromium_browser

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "sdk" / "js" / "snippet.html"
BUILT_SDK = ROOT / "src" / "idstitch" / "web" / "static" / "idstitch.js"
# The test sites' hostnames (site-a.idstitch.test ...) all resolve to the loopback.
HOST_RULES = "--host-resolver-rules=MAP *.idstitch.test 127.0.0.1"

INGEST_TOKEN = "phc_sdk_token"
SECRET_KEY = "sk_sdk_secret"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
POLL_TIMEOUT = 20.0

T = TypeVar("T")


def poll(check: Callable[[], T | None], what: str, timeout: float = POLL_TIMEOUT) -> T:
    """Call `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def idstitch_command() -> list[str]:
    script = Path(sys.executable).parent / "idstitch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "idstitch.cli"]


@dataclass
class Idstitch:
    """`idstitch serve` on a fixed port; stop() and start() keep the port and the data directory."""

    data_dir: Path
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"pid {self.process.pid} is still running"
        self.starts += 1
        log = self.log_dir / f"idstitch-{self.starts}.log"
        env = {**os.environ, "IDSTITCH_INGEST_TOKEN": INGEST_TOKEN, "IDSTITCH_SECRET_KEY": SECRET_KEY}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*idstitch_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"idstitch serve exited with {self.process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{self.url}/_health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"idstitch serve did not answer within {START_TIMEOUT}s:\n{log.read_text()}")

    def stop(self) -> None:
        """SIGTERM to the one process we started, SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers={"Authorization": f"Bearer {SECRET_KEY}"}, timeout=5.0)

    def person(self, distinct_id: str) -> dict[str, Any] | None:
        response = self.get("/api/persons", distinct_id=distinct_id)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def events(self, distinct_id: str) -> list[dict[str, Any]]:
        """The events of the person owning `distinct_id`, oldest first ([] while there is none)."""
        person = self.person(distinct_id)
        if person is None:
            return []
        response = self.get(f"/api/persons/{person['id']}/events", limit=1000)
        response.raise_for_status()
        return list(reversed(response.json()["results"]))

    def event_names(self, distinct_id: str) -> list[str]:
        return [e["event"] for e in self.events(distinct_id)]


@pytest.fixture(scope="module")
def idstitch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idstitch]:
    """One server for a module's tests: each test uses its own ids (starting one takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("idstitch")
    server = Idstitch(data_dir=tmp_path / "data", log_dir=tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def idstitch_later(tmp_path: Path) -> Iterator[Idstitch]:
    """A server with its port chosen but not started: the test starts it when it wants."""
    server = Idstitch(data_dir=tmp_path / "data", log_dir=tmp_path)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Site:
    """The pages of a site that uses the SDK, on `<host>.idstitch.test:<port>`.

    Every page is the README snippet; `options` are merged into its `init` options and
    `inline[path]` is JavaScript run right after `init`, before the SDK can have loaded.
    """

    port: int
    api_url: str = ""
    script_url: str = ""  # where the page loads idstitch.js from; default: the API's /static route
    options: dict[str, Any] = field(default_factory=dict)
    inline: dict[str, str] = field(default_factory=dict)

    def url(self, path: str = "/", host: str = "shop") -> str:
        return f"http://{host}.idstitch.test:{self.port}{path}"

    def html(self, path: str) -> str:
        options = {"apiHost": self.api_url, **self.options}
        snippet = SNIPPET.read_text()
        for old, new in (
            ("'phc_YOUR_INGEST_TOKEN'", json.dumps(INGEST_TOKEN)),
            ("{ apiHost: 'https://idstitch.example.com' }", json.dumps(options)),
            ("https://idstitch.example.com/static/idstitch.js", self.script_url or f"{self.api_url}/static/idstitch.js"),
        ):
            assert old in snippet, f"{old!r} is no longer in {SNIPPET}"
            snippet = snippet.replace(old, new)
        calls = self.inline.get(path, "")
        snippet = snippet.replace("</script>\n", f"  {calls}\n</script>\n", 1)
        return f"<!doctype html><html><head><title>page {path}</title>{snippet}</head><body>{path}</body></html>"


@pytest.fixture
def site() -> Iterator[Site]:
    site = Site(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = urlsplit(self.path).path
            if path == "/idstitch.js":
                body, kind = BUILT_SDK.read_bytes(), "text/javascript"
            elif path == "/favicon.ico":
                self.send_error(404)
                return
            else:
                body, kind = site.html(path).encode(), "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="sdk-test-site", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium_browser([HOST_RULES]) as chromium:
        yield chromium
