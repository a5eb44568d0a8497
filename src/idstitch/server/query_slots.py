"""A pool of query slots: how many reads the server runs at once, and how many may wait.

Each read (the query API, the UI's lists and charts, the admin API's lookups) runs on one of
`size` threads of the pool's own, each with a read connection of its own, so `size` reads at
most hold memory (a connection's page cache, a breakdown's rows). Up to `queue` more wait for a
thread; a read past that is refused at once with `QueriesBusy` (503 and Retry-After), instead of
piling up threads and memory until every read times out.

Ingestion never takes a slot, so however many reads are sent it competes with at most `size` of
them for the CPU. (The slots' threads keep the process's priority: a thread of lower priority
holding the GIL would make the event loop wait for it.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from idstitch.errors import QueriesBusy
from idstitch.store.backends import Store
from idstitch.store.connection import Connection

T = TypeVar("T")


class QuerySlots:
    """`size` read threads with a connection each, and `queue` places to wait for one."""

    def __init__(self, store: Store, *, size: int, queue: int) -> None:
        self.store = store
        self.size = size
        self.queue = queue
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="idstitch-query")
        self._admitted = 0  # running or waiting; only the event loop's thread changes it
        self._local = threading.local()
        self._opened: list[Connection] = []
        self._opened_lock = threading.Lock()

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """`fn(conn)` on a slot's thread and read connection, once one is free."""
        if self._admitted >= self.size + self.queue:
            raise QueriesBusy(
                f"the server is running {self.size} queries and {self.queue} more are waiting; "
                "send this one again in a moment"
            )
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._on_this_threads_connection, fn)
        finally:
            self._admitted -= 1

    def _on_this_threads_connection(self, fn: Callable[[Connection], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.store.connect(read_only=True)
            with self._opened_lock:
                self._opened.append(conn)
        return fn(conn)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
