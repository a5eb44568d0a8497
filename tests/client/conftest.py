"""A real idstitch server (uvicorn, in a thread of this process) on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import uvicorn

import idstitch
from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from tests.conftest import INGEST_TOKEN, SECRET_KEY


@dataclass(frozen=True)
class LiveServer:
    url: str
    config: ServerConfig


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(config: ServerConfig) -> Iterator[LiveServer]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning", loop="asyncio", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="idstitch-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", config)
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def live_server(config: ServerConfig) -> Iterator[LiveServer]:
    with running_server(config) as server:
        yield server


@pytest.fixture
def sdk(live_server: LiveServer) -> Iterator[idstitch.Client]:
    """A client of the live server holding both the ingest token and the secret key."""
    client = idstitch.Client(live_server.url, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY, flush_interval=0.05)
    yield client
    client.shutdown()
