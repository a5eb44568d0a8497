"""Request bodies past `max_body_bytes` are refused while they arrive, on a real server: a
`Content-Length` over the cap gets its 413 before any of the body is sent, and a chunked body
is cut off at the cap, so the server's memory stays bounded whatever a client sends."""

from __future__ import annotations

import base64
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import INGEST_TOKEN, SECRET_KEY, ServerProcess

CAP = 1024 * 1024
CHUNK = 64 * 1024
# What a client may push into the kernel's socket buffers before the server's 413 reaches it.
SOCKET_SLACK = 16 * 1024 * 1024
SEGMENT_AUTH = "Basic " + base64.b64encode(f"{INGEST_TOKEN}:".encode()).decode()
ROUTES = [
    pytest.param("/batch/", "", id="posthog"),
    pytest.param("/ingest/batch", f"Bearer {INGEST_TOKEN}", id="native"),
    pytest.param("/v1/batch", SEGMENT_AUTH, id="segment"),
    pytest.param("/api/persons/import", f"Bearer {SECRET_KEY}", id="api"),
]
# Session recordings are dropped unread: a chunked one gets its 200 before the body is whole.
RECORDINGS = pytest.param("/s/", "", id="recordings-that-are-dropped")


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp: Path = tmp_path_factory.mktemp("body-limits")
    server = ServerProcess(data_dir=tmp / "data", log_dir=tmp)
    server.env = {**server.env, "IDSTITCH_MAX_BODY_BYTES": str(CAP)}
    try:
        server.start()
        yield server
    finally:
        server.stop()


too_large = {"type": "payload_too_large", "code": "payload_too_large", "detail": f"body is larger than {CAP} bytes",
             "message": f"body is larger than {CAP} bytes"}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_request(server: ServerProcess, path: str, auth: str, framing: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    headers = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", framing]
    if auth:
        headers.append(f"Authorization: {auth}")
    sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
    return sock


def read_status(sock: socket.socket, timeout: float) -> tuple[int, dict]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"connection closed before a response: {data!r}"
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1]), json.loads(rest[:length])


@pytest.mark.parametrize("path, auth", [*ROUTES, RECORDINGS])
def test_a_body_declared_past_the_cap_is_refused_before_it_is_sent(capped_server, path, auth):
    sock = open_request(capped_server, path, auth, f"Content-Length: {1024 ** 3}")
    try:
        status, body = read_status(sock, timeout=5)  # not one byte of the gigabyte was sent
    finally:
        sock.close()
    assert (status, body) == (413, too_large)
    assert httpx.get(f"{capped_server.base_url}/_health").status_code == 200


@pytest.mark.parametrize("path, auth", [*ROUTES, RECORDINGS])
def test_a_chunked_body_is_cut_off_at_the_cap_and_memory_stays_bounded(capped_server, path, auth):
    assert capped_server.pid is not None
    before = rss_bytes(capped_server.pid)
    sock = open_request(capped_server, path, auth, "Transfer-Encoding: chunked")
    chunk = f"{CHUNK:x}\r\n".encode() + b" " * CHUNK + b"\r\n"
    sent = 0
    answered = False
    try:
        sock.setblocking(False)
        deadline = time.monotonic() + 30
        while sent < 256 * 1024 * 1024 and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                answered = True
                break
            if writable:
                try:
                    sent += sock.send(chunk)  # a partial send garbles the framing, which is fine here
                except (BrokenPipeError, ConnectionResetError):
                    answered = True
                    break
        assert answered, f"no answer after {sent} bytes of body"
        sock.setblocking(True)
        status, body = read_status(sock, timeout=5)
    finally:
        sock.close()
    assert (status, body) == ((200, {"status": 1}) if path == "/s/" else (413, too_large))
    assert sent < CAP + SOCKET_SLACK
    assert rss_bytes(capped_server.pid) - before < 64 * 1024 * 1024
    assert httpx.get(f"{capped_server.base_url}/_health").status_code == 200


def test_a_chunked_body_under_the_cap_is_ingested(capped_server):
    events = [{"event": "chunked", "distinct_id": "chunky", "uuid": f"00000000-0000-4000-8000-{i:012d}"} for i in range(50)]
    body = json.dumps({"api_key": INGEST_TOKEN, "batch": events}).encode()

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    response = httpx.post(f"{capped_server.base_url}/batch/", content=pieces())
    assert response.status_code == 200 and response.json() == {"status": 1}
    person = httpx.get(
        f"{capped_server.base_url}/api/persons", params={"distinct_id": "chunky"},
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
    )
    assert person.status_code == 200
