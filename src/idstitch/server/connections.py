"""Connections a client cannot hold for free: the HTTP protocol `idstitch serve` runs uvicorn with.

uvicorn closes a keep-alive connection that stays silent after a response (`timeout_keep_alive`),
but a connection that never sends a request, or sends its head a byte at a time (slowloris), it
keeps forever, and each one holds a file descriptor until none is left for real clients. Here:

* a connection has `header_timeout` seconds, from the moment it opens or its last response
  ends, to send a whole request head (the request line and headers), and as long again between
  two pieces of a request body; then it is closed;
* past `max_connections` open at once, a new connection is answered `503` with `Retry-After`
  and closed at once, so the descriptors in use stay bounded;
* `raise_open_files_limit` lifts the soft limit on descriptors to the hard one at start-up (1024
  is a common default), and `connection_cap` keeps `max_connections` below what is left of it
  for the database's own files.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 39\r\n\r\nToo many open connections; retry later\n"
)


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines for the client's part of each request and a
    cap on open connections (the subclass `http_protocol` makes sets the two numbers)."""

    header_timeout: float = 10.0
    max_connections: int = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_BUSY)
            transport.close()
            return
        self._expect_more()

    def connection_lost(self, exc: Exception | None) -> None:
        self._nothing_expected()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._expect_more()  # the body, if any: on_message_complete ends the wait at once if not

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._expect_more()  # a body that stops arriving is a slowloris too

    def on_message_complete(self) -> None:
        self._nothing_expected()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's head gets its own time, unless it is already here (pipelined).
        if not self.transport.is_closing() and not self.pipeline:
            self._expect_more()

    def _expect_more(self) -> None:
        self._nothing_expected()
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _nothing_expected(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(*, header_timeout: float, max_connections: int) -> type[BoundedHttpProtocol]:
    """The protocol class for uvicorn's `http=` with these limits."""
    return type(
        "BoundedHttpProtocol",
        (BoundedHttpProtocol,),
        {"header_timeout": header_timeout, "max_connections": max_connections},
    )


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard limit; returns the limit now in force (-1
    where the platform has no such limit)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not a Unix
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # a container may forbid it: keep what we have
            pass
    return soft


# Descriptors kept for the database files, the WAL, logs and the connections to PostgreSQL.
RESERVED_FILES = 64


def connection_cap(max_connections: int, open_files: int) -> int:
    """`max_connections`, or fewer if the open-files limit would run out first."""
    return max_connections if open_files < 0 else max(1, min(max_connections, open_files - RESERVED_FILES))
