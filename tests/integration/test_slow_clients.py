"""Clients that hold connections without sending requests: a real `idstitch serve`, silent and
slowloris sockets, and a real client that must still be served."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import ServerProcess

HEADER_TIMEOUT = 2


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server started under the common default of 1024 open files, with a short head timeout."""
    server = ServerProcess(data_dir=tmp_path / "data", log_dir=tmp_path, open_files=1024)
    server.env = {**server.env, "IDSTITCH_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    server.start()
    yield server
    server.stop()


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """The server closed `sock` (we read its end, or it reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_silent_sockets_are_closed_and_never_starve_a_real_client(strict_server: ServerProcess) -> None:
    with ExitStack() as stack:
        silent = [stack.enter_context(connect(strict_server)) for _ in range(1100)]
        time.sleep(0.5)  # every one accepted by the server
        assert httpx.get(f"{strict_server.base_url}/_health", timeout=5).status_code == 200
        started = time.monotonic()
        assert closed_by_server(silent[0], within=HEADER_TIMEOUT + 5)
        assert all(closed_by_server(sock, within=1) for sock in silent[1:])
        assert time.monotonic() - started < HEADER_TIMEOUT + 5


def test_a_slowloris_head_is_cut_off_at_the_header_timeout(strict_server: ServerProcess) -> None:
    with connect(strict_server) as sock:
        sock.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        sock.settimeout(0.3)
        closed = False
        for byte in b"X-Slow: " + b"a" * 60:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed and time.monotonic() - started < HEADER_TIMEOUT + 2


def test_an_idle_keep_alive_connection_is_closed(strict_server: ServerProcess) -> None:
    with connect(strict_server) as sock:
        sock.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert closed_by_server(sock, within=10)
        assert time.monotonic() - started < 7  # keep_alive_timeout, 5 s by default


def test_connections_past_the_cap_get_503_with_retry_after(tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", log_dir=tmp_path)
    server.env = {**server.env, "IDSTITCH_MAX_CONNECTIONS": "20"}
    server.start()
    try:
        with ExitStack() as stack:
            for _ in range(20):
                stack.enter_context(connect(server))
            time.sleep(0.3)
            answer = httpx.get(f"{server.base_url}/_health", timeout=5)
            assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        time.sleep(0.3)
        assert httpx.get(f"{server.base_url}/_health", timeout=5).status_code == 200
    finally:
        server.stop()


def test_a_body_that_stops_arriving_is_cut_off(strict_server: ServerProcess) -> None:
    with connect(strict_server) as sock:
        sock.sendall(
            b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"batch\": ["
        )
        started = time.monotonic()
        assert closed_by_server(sock, within=HEADER_TIMEOUT + 5)
        assert time.monotonic() - started < HEADER_TIMEOUT + 2
